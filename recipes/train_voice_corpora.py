"""Train the audio-only DMD voice-emotion model on the five corpora, straight from the feature stores.

    nice -n 10 python recipes/train_voice_corpora.py --store <dir>:ravdess,emovo,turev,urdu --store <dir>:nemo \\
        --fold valid|loco|final --norm none|clip [--epochs 8] [--out runs/voice_dmd] [--json runs/x.json]

* Model: DMD (``voice_emotion`` network, d = 50, 2 layers per encoder) on the ``whisper-base-layers-s5``
  columns (Whisper base's 7 states at 10 Hz, 3,584 layer-major columns), ``audio_layers = 7`` (per-layer
  LayerNorm then a learned softmax layer mix), ``head = stats`` (mean and std over the real positions),
  audio length 40 steps (4 s analysis windows; longer clips average-pooled into 40 bins), text and vision
  zeros.
* Input normalisation (``--norm``, :class:`dmd_pipeline.data.feature_norm.FrameNorm`): ``none``, or ``clip``
  (each clip's own frame statistics blended with the training frames' through a prior worth 2 clips: what
  the model can do with one short file). The chosen one is recorded in the model (``audio_norm``) and applied
  by the model object at analysis time. With ``clip``, valid is also measured with each speaker's statistics
  (``speaker``: what a long file of one voice would give).
* Loss: the DMD loss with every task term replaced by a class-balanced cross-entropy (classes balanced within
  a corpus, corpora weighted by sqrt of their size): by default the partial-label one (softmax over the
  classes the clip's corpus has, :mod:`dmd_pipeline.training.partial_labels`); with ``--full-softmax`` over
  all 8 classes (a corpus's missing classes are negatives: what the shipped model uses, 6-8 points better on
  valid, MODEL_CARD.md). ``--augment`` adds the preset's time masking and feature noise; ``--lr``,
  ``--weight-decay`` (AdamW) and ``--cosine`` (one-cycle schedule) set the optimiser.
* ``--fold valid``: train on the train speakers of all corpora, UAR per corpus on the valid speakers after
  every epoch (argmax over all 8 classes), the best epoch's weights kept (``--out``). ``--fold loco``: per
  corpus, train on the other four (train + valid speakers) for ``--epochs`` epochs (the last epoch: no valid
  speakers to choose by) and measure the held-out corpus. ``--fold final``: train on train speakers, select on valid (as
  ``valid``) and save the checkpoint to ship. RAVDESS test actors 19-21 are never read here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dmd_pipeline.data.corpora import CorpusTable, read_corpora
from dmd_pipeline.data.feature_norm import FrameNorm
from dmd_pipeline.data.store_inputs import StoreDataset, join_stores, layer_major, prior_stats
from dmd_pipeline.features import resample_to_length
from dmd_pipeline.training.partial_labels import balanced_sample_weights, per_corpus_reports

SEQ_LENS = (8, 40, 8)
DIMS = (384, 3584, 66)
WINDOW_S = 4.0
SETTING = "whisper-base-layers-s5"


def make_config(seed: int):
    from dmd_pipeline.config import DMDConfig, get_preset

    d = get_preset(
        "voice_emotion", feature_dims=DIMS, seq_lens=SEQ_LENS, head="stats", audio_layers=7
    ).to_dict()
    d["name"] = "voice_emotion_corpora"
    return DMDConfig.from_dict(d)


def load_table_and_feats(args) -> tuple[CorpusTable, object]:
    table = read_corpora(args.data)
    parts = []
    for spec in args.store:
        folder, corpora = spec.rsplit(":", 1)
        files = [c.path for c in read_corpora(args.data, corpora=tuple(corpora.split(","))).clips]
        parts.append((folder, files))
    return table, join_stores(table, parts)


def task_loss(out: dict, labels, masks, weights):
    """Sum of the partial-label, class-balanced cross-entropies of every task head of the DMD output."""
    from dmd_pipeline.training.partial_labels import masked_cross_entropy

    keys = ["output_logit", "logits_c"] + [f"logits_{m}_{k}" for m in "lva" for k in ("homo", "hetero")]
    return sum(masked_cross_entropy(out[k], labels, masks, weights) for k in keys)


def predict(system, feats, rows, norm: FrameNorm | None, speaker_stats: dict | None = None, speakers=None):
    """Raw logits (n, 8) of ``rows``: inputs normalised by ``norm`` or, with ``speaker_stats``, by each row's
    speaker's (mu, sd)."""
    import torch

    system.eval()
    logits = []
    with torch.no_grad():
        for a in range(0, len(rows), 64):
            batch = []
            for i in rows[a : a + 64]:
                if speaker_stats is not None:
                    mu, sd = speaker_stats[speakers[i]]
                    x = ((layer_major(feats.frames[i]) - mu) / sd).astype(np.float32)
                else:
                    x = norm.apply(layer_major(feats.frames[i]))
                batch.append(resample_to_length(_F(x), SEQ_LENS[1])[0])
            audio = torch.from_numpy(np.stack(batch))
            b = len(batch)
            text = torch.zeros(b, SEQ_LENS[0], DIMS[0])
            vision = torch.zeros(b, SEQ_LENS[2], DIMS[2])
            logits.append(system.predict(text, audio, vision).numpy())
    return np.concatenate(logits)


class _F:
    def __init__(self, v):
        self.values = v


def train(
    table: CorpusTable,
    feats,
    train_rows: np.ndarray,
    norm: FrameNorm,
    epochs: int,
    seed: int,
    valid_rows: np.ndarray | None = None,
    cap: int = 1000,
    log=print,
    augment: bool = False,
    lr: float = 5e-4,
    weight_decay: float = 0.0,
    cosine: bool = False,
    full_softmax: bool = False,
):
    """Train one model; with ``valid_rows`` keep the epoch of the best mean per-corpus valid UAR."""
    import torch

    from dmd_pipeline.models.dmd import DMDSystem

    torch.manual_seed(seed)
    np.random.seed(seed)
    cfg = make_config(seed)
    system = DMDSystem(cfg)
    w = balanced_sample_weights(table.y[train_rows], table.corpus[train_rows])
    # full_softmax: every clip's loss is over all 8 classes (the classes its corpus lacks are negatives, as in the
    # logistic-regression baseline) instead of the partial-label loss over its corpus's classes only
    class_mask = table.class_mask(train_rows)
    if full_softmax:
        class_mask = np.ones_like(class_mask)
    ds = StoreDataset(feats, train_rows, table.y[train_rows], class_mask, w, norm, SEQ_LENS, DIMS)
    if augment:  # the preset's SpecAugment-style time masking and feature noise (dmd train uses the same)
        from dmd_pipeline.data.datasets import AudioAugment

        ds.augment = AudioAugment(
            time_mask=float(cfg.train["augment_time_mask"]), noise=float(cfg.train["augment_noise"])
        )
    rng = np.random.default_rng(seed)
    corp = table.corpus[train_rows]
    opt = torch.optim.AdamW(system.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-sum(min(cap, int((corp == k).sum())) for k in np.unique(corp)) // 32)
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1, anneal_strategy="cos"
        )
        if cosine
        else None
    )
    best, best_state, best_epoch, history = -1.0, None, 0, []
    masks = table.corpus_masks()
    for ep in range(1, epochs + 1):
        system.train()
        t0, tot, nb = time.perf_counter(), 0.0, 0
        # at most `cap` clips of each corpus per epoch, drawn afresh every epoch (nEMO's 3,775 train clips
        # would otherwise make an epoch 2.5x longer; the sample weights balance the corpora either way)
        pick = np.concatenate([rng.permutation(np.flatnonzero(corp == k))[:cap] for k in np.unique(corp)])
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds, rng.permutation(pick).tolist()), batch_size=32, shuffle=False
        )
        for text, audio, vision, y, m, wt in loader:
            out = system(text, audio, vision)
            lo = system.losses(out, y)
            loss = lo["total"] - lo["task"] + task_loss(out, y, m, wt)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(system.parameters(), 0.6)
            opt.step()
            if sched is not None:
                sched.step()
            tot += float(loss.detach())
            nb += 1
        rec = {
            "epoch": ep,
            "clips": int(len(pick)),
            "loss": tot / max(nb, 1),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if valid_rows is not None:
            logits = predict(system, feats, valid_rows, norm)
            reps = per_corpus_reports(table.y[valid_rows], logits, table.corpus[valid_rows], masks)
            rec["valid_uar"] = {k: r["uar"] for k, r in reps.items()}
            rec["valid_mean"] = float(np.mean(list(rec["valid_uar"].values())))
            if rec["valid_mean"] > best:
                best, best_epoch = rec["valid_mean"], ep
                best_state = {k: v.detach().clone() for k, v in system.state_dict().items()}
        history.append(rec)
        log(json.dumps(rec), flush=True)
    if best_state is not None:
        system.load_state_dict(best_state)
    return system, {"best_epoch": best_epoch or epochs, "history": history}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", action="append", required=True, help="FOLDER:corpus,corpus (repeatable)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--fold", choices=("valid", "loco", "final"), default="valid")
    ap.add_argument("--norm", choices=("none", "clip"), default="none")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1111)
    ap.add_argument("--corpora", default=None, help="LOCO: only these held-out corpora (comma list)")
    ap.add_argument("--out", type=Path, default=None, help="checkpoint folder (valid/final)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cap", type=int, default=1000, help="at most this many clips per corpus per epoch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--augment", action="store_true", help="the preset's time masking and feature noise")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's decoupled weight decay")
    ap.add_argument("--cosine", action="store_true", help="one-cycle schedule: 10 %% warm-up, cosine decay")
    ap.add_argument(
        "--full-softmax",
        action="store_true",
        help="cross-entropy over all 8 classes for every clip (default: over its corpus's classes only)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    table, feats = load_table_and_feats(args)
    ok = feats.ok
    print(f"{len(table)} clips, {(~ok).sum()} failed in the store", flush=True)
    # the training options of train(), recorded in the result JSON beside the run's other settings
    opts = {
        "augment": args.augment,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "cosine": args.cosine,
        "full_softmax": args.full_softmax,
    }
    result: dict = {"norm": args.norm, "fold": args.fold, "epochs": args.epochs, "seed": args.seed, **opts}

    def norm_for(train_rows: np.ndarray) -> FrameNorm:
        if args.norm == "none":
            return FrameNorm()
        mu, sd = prior_stats(feats, train_rows)
        # rounded as the model's config records it, so training and analysis use the same numbers
        return FrameNorm.from_meta(FrameNorm("clip", mu, sd).to_meta())

    masks = table.corpus_masks()
    if args.fold in ("valid", "final"):
        sv = table.speaker_valid_fold()
        tr, va = sv.train[ok[sv.train]], sv.valid[ok[sv.valid]]
        norm = norm_for(tr)
        system, info = train(
            table, feats, tr, norm, args.epochs, args.seed, valid_rows=va, cap=args.cap, **opts
        )
        logits = predict(system, feats, va, norm)
        reps = per_corpus_reports(table.y[va], logits, table.corpus[va], masks)
        result.update(info)
        result["valid"] = reps
        result["valid_uar"] = {k: r["uar"] for k, r in reps.items()}
        if args.norm == "clip":  # the other case: a speaker's statistics are known (a long file of one voice)
            spk = {}
            for s in np.unique(table.speaker[va]):
                rows = va[table.speaker[va] == s]
                spk[s] = prior_stats(feats, rows)
            lg = predict(system, feats, va, None, spk, table.speaker)
            r2 = per_corpus_reports(table.y[va], lg, table.corpus[va], masks)
            result["valid_uar_speaker_stats"] = {k: r["uar"] for k, r in r2.items()}
        if args.out:
            from dmd_pipeline.models.checkpoint import save_checkpoint

            save_checkpoint(
                args.out,
                system,
                {"audio_norm": norm.to_meta(), "train_rows": int(len(tr)), "best_epoch": info["best_epoch"]},
            )
    else:
        result["loco"] = {}
        for fold in table.loco_folds(args.corpora.split(",") if args.corpora else None):
            tr, va = fold.train[ok[fold.train]], fold.valid[ok[fold.valid]]
            t0 = time.perf_counter()
            norm = norm_for(tr)
            system, info = train(table, feats, tr, norm, args.epochs, args.seed, cap=args.cap, **opts)
            logits = predict(system, feats, va, norm)
            rep = per_corpus_reports(table.y[va], logits, table.corpus[va], masks)[fold.held_out]
            result["loco"][fold.held_out] = rep
            print(
                f"LOCO {fold.held_out}: UAR {rep['uar']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True
            )
            if args.json:
                args.json.write_text(json.dumps(result, indent=1))
        result["loco_uar"] = {k: r["uar"] for k, r in result["loco"].items()}
    result["cap"] = args.cap
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    print(
        json.dumps({k: v for k, v in result.items() if k.endswith("uar") or k.endswith("stats")}), flush=True
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
