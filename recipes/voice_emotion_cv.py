"""Cross-validate voice-emotion heads over the five corpora: speaker-independent valid and leave-one-corpus-out.

Reads a feature store written by ``recipes/voice_corpora_features.py`` and, for every feature normalisation
(:mod:`dmd_pipeline.data.feature_norm`) and head, prints and writes:

* **speaker-valid**: trained on the train speakers of all corpora, UAR on each corpus's valid speakers
  (RAVDESS actors 17-18, ...), each on its own classes, with the argmax over all 8 classes;
* **LOCO**: per corpus, trained on the other four (train + valid speakers), UAR on the held-out corpus.

Heads: ``lr`` (the baseline: standardised mean+std pooled features, sklearn multinomial logistic regression,
C chosen on speaker-valid) and ``masked`` (the same features, a linear softmax layer trained with the partial-
label loss and class-balanced sample weights, :mod:`dmd_pipeline.training.partial_labels`; weight decay
chosen on speaker-valid). Hyper-parameters are chosen on the mean speaker-valid UAR over corpora and then
reused unchanged in the LOCO folds. RAVDESS's test actors (19-21) are never read here.

    python recipes/voice_emotion_cv.py --store <store folder>[:corpora] [--store ...] [--norms none,speaker,running:1]
        [--heads lr,masked] [--layers 0,1] [--json runs/voice_cv.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dmd_pipeline.data.corpora import CLASSES, CorpusTable, Fold, read_corpora
from dmd_pipeline.data.corpus_features import load_store
from dmd_pipeline.data.feature_norm import normalise_stats, pooled_from_stats
from dmd_pipeline.training.partial_labels import balanced_sample_weights, per_corpus_reports

C_GRID = (0.01, 0.1)
WD_GRID = (1e-3, 1e-2)


def fit_lr(x: np.ndarray, y: np.ndarray, c: float):
    """Standardised multinomial logistic regression (the baseline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(x, y)


class MaskedLinear:
    """Standardise, then a linear softmax layer trained with the partial-label loss (full-batch L-BFGS)."""

    def __init__(self, weight_decay: float) -> None:
        self.wd = weight_decay

    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, w: np.ndarray) -> MaskedLinear:
        import torch

        from dmd_pipeline.training.partial_labels import masked_cross_entropy

        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        xt = torch.tensor((x - self.mu) / self.sd, dtype=torch.float32)
        yt, mt, wt = torch.tensor(y), torch.tensor(mask), torch.tensor(w)
        torch.manual_seed(0)
        lin = torch.nn.Linear(x.shape[1], len(CLASSES))
        opt = torch.optim.LBFGS(
            lin.parameters(), lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe"
        )

        def closure():
            opt.zero_grad()
            loss = masked_cross_entropy(lin(xt), yt, mt, wt) + self.wd * (lin.weight**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.lin = lin
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.lin(torch.tensor((x - self.mu) / self.sd, dtype=torch.float32)).numpy()


def fold_features(
    stats: tuple[np.ndarray, np.ndarray], table: CorpusTable, norm: str, fold: Fold
) -> np.ndarray:
    """Pooled features of every row, normalised with global statistics of the fold's training rows."""
    m, s = normalise_stats(stats[0], stats[1], table.speaker, norm, fold.train)
    return pooled_from_stats(m, s).astype(np.float32)


def run_fold(head: str, hp: float, x: np.ndarray, table: CorpusTable, fold: Fold) -> dict:
    """Train on ``fold.train``, per-corpus reports on ``fold.valid``."""
    tr, va = fold.train, fold.valid
    if head == "lr":
        model = fit_lr(x[tr], table.y[tr], hp)
        scores = np.full((len(va), len(CLASSES)), -1e4)
        scores[:, model.classes_] = model.decision_function(x[va])
    else:
        w = balanced_sample_weights(table.y[tr], table.corpus[tr])
        model = MaskedLinear(hp).fit(x[tr], table.y[tr], table.class_mask(tr), w)
        scores = model.decision_function(x[va])
    reps = per_corpus_reports(table.y[va], scores, table.corpus[va], table.corpus_masks())
    only_own = per_corpus_reports(table.y[va], scores, table.corpus[va], table.corpus_masks(), restrict=True)
    for k, r in reps.items():  # the UAR when the argmax is taken over the corpus's own classes only
        r["uar_restricted"] = only_own[k]["uar"]
    return reps


def mean_uar(reps: dict) -> float:
    return float(np.mean([r["uar"] for r in reps.values()])) if reps else float("nan")


def markdown(paths: list[Path]) -> str:
    """One markdown table (valid UAR per corpus, LOCO UAR per corpus, means) of the runs in result files."""
    rows, corpora = [], None
    for p in paths:
        res = json.loads(p.read_text())
        for r in res.get("runs", []):
            corpora = corpora or list(r["valid_uar"])
            rows.append((res.get("layers"), res.get("train_on", "all"), r))
    if not rows:
        return "(no runs)"
    head = ["layers", "trained on", "norm", "head", "hp"] + [f"valid {k}" for k in corpora] + ["valid mean"]
    head += [f"LOCO {k}" for k in corpora] + ["LOCO mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layers, train_on, r in rows:
        v = [r["valid_uar"].get(k) for k in corpora]
        lo = [r["loco_uar"].get(k) for k in corpora]
        cells = [",".join(map(str, layers or [])), train_on, r["norm"], r["head"], str(r["hp"])]
        cells += ["" if x is None else f"{100 * x:.1f}" for x in v] + [
            f"{100 * np.mean([x for x in v if x is not None]):.1f}"
        ]
        cells += ["" if x is None else f"{100 * x:.1f}" for x in lo]
        cells += [
            f"{100 * np.mean([x for x in lo if x is not None]):.1f}" if any(x is not None for x in lo) else ""
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    import sys

    if len(sys.argv) > 2 and sys.argv[1] == "--table":  # python voice_emotion_cv.py --table runs/*.json
        print(markdown([Path(a) for a in sys.argv[2:]]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--store",
        action="append",
        required=True,
        help="a store folder, or FOLDER:corpus,corpus for a store over some corpora (repeatable: joined)",
    )
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--norms", default="none,speaker,running:1,running:8")
    ap.add_argument("--heads", default="lr,masked")
    ap.add_argument("--layers", default=None, help="comma list of layer indices (default: all)")
    ap.add_argument(
        "--train-on", default=None, help="comma list of corpora to train on (default: all available)"
    )
    ap.add_argument("--corpora", default=None, help="the corpora of the store (default: all five)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-loco", action="store_true", help="speaker-valid only (a quicker first look)")
    ap.add_argument(
        "--test",
        default=None,
        metavar="NORM:HEAD",
        help="instead of the search: train NORM:HEAD (hyper-parameter chosen on valid as above) on "
        "the train speakers and score RAVDESS's test actors 19-21; run it once, at the end",
    )
    args = ap.parse_args()

    table = read_corpora(args.data, **({"corpora": tuple(args.corpora.split(","))} if args.corpora else {}))
    if len(args.store) == 1 and ":" not in args.store[0]:
        feats = load_store(args.store[0], frames=False)
    else:
        from dmd_pipeline.data.store_inputs import join_stores

        parts = []
        for spec in args.store:
            folder, corpora = spec.rsplit(":", 1)
            sub = read_corpora(args.data, corpora=tuple(corpora.split(",")))
            parts.append((folder, [c.path for c in sub.clips]))
        feats = join_stores(table, parts, frames=False)
    if len(feats.ok) != len(table):
        raise SystemExit(f"store has {len(feats.ok)} clips, the table {len(table)}")
    layers = [int(v) for v in args.layers.split(",")] if args.layers else list(range(feats.mean.shape[1]))
    stats = (feats.mean[:, layers], feats.std[:, layers])
    keep = feats.ok.copy()
    # with --train-on, rows of other corpora are never trained on (they are still measured)
    train_ok = keep & np.isin(table.corpus, args.train_on.split(",")) if args.train_on else keep
    print(f"{len(table)} clips ({(~keep).sum()} failed to decode), layers {layers}", flush=True)
    results: dict = {
        "store": [str(s) for s in args.store],
        "layers": layers,
        "train_on": args.train_on or "all",
        "runs": [],
    }
    sv = table.speaker_valid_fold()
    sv = Fold(sv.name, sv.train[train_ok[sv.train]], sv.valid[keep[sv.valid]], sv.held_out)
    if args.test:
        norm, head = args.test.rsplit(":", 1)
        x = fold_features(stats, table, norm, sv)
        grid = C_GRID if head == "lr" else WD_GRID
        hp = max(grid, key=lambda h: mean_uar(run_fold(head, h, x, table, sv)))
        test = table.rows("test")
        rep = run_fold(head, hp, x, table, Fold("test", sv.train, test[keep[test]], "test"))["ravdess"]
        print(
            f"TEST RAVDESS actors 19-21 ({norm}, {head}, hp={hp}): n {rep['n']} acc {rep['accuracy']:.3f} "
            f"UAR {rep['uar']:.3f} macro-F1 {rep['macro_f1']:.3f}\nconfusion (rows true, {', '.join(CLASSES)}): "
            f"{rep['confusion_matrix']}"
        )
        if args.json:
            args.json.write_text(json.dumps({"norm": norm, "head": head, "hp": hp, "test": rep}, indent=1))
        return
    for norm in args.norms.split(","):
        for head in args.heads.split(","):
            t0 = time.perf_counter()
            x = fold_features(stats, table, norm, sv)
            grid = C_GRID if head == "lr" else WD_GRID
            tried = {hp: run_fold(head, hp, x, table, sv) for hp in grid}
            hp = max(tried, key=lambda h: mean_uar(tried[h]))
            valid = tried[hp]
            loco = {}
            for fold in [] if args.no_loco else table.loco_folds():
                fold = Fold(
                    fold.name, fold.train[train_ok[fold.train]], fold.valid[keep[fold.valid]], fold.held_out
                )
                if len(fold.train) == 0:
                    continue
                xf = fold_features(stats, table, norm, fold)
                loco[fold.held_out] = run_fold(head, hp, xf, table, fold)[fold.held_out]
            run = {
                "norm": norm,
                "head": head,
                "hp": hp,
                "seconds": round(time.perf_counter() - t0, 1),
                "valid_uar": {k: r["uar"] for k, r in valid.items()},
                "valid_uar_by_hp": {str(h): mean_uar(r) for h, r in tried.items()},
                "loco_uar": {k: r["uar"] for k, r in loco.items()},
                "valid_uar_restricted": {k: r["uar_restricted"] for k, r in valid.items()},
                "loco_uar_restricted": {k: r["uar_restricted"] for k, r in loco.items()},
                "valid": valid,
                "loco": loco,
            }
            results["runs"].append(run)
            print(
                f"{norm:11s} {head:6s} hp={hp:<6} valid "
                + " ".join(f"{k} {v:.3f}" for k, v in run["valid_uar"].items())
                + f" | mean {mean_uar(valid):.3f} || LOCO "
                + " ".join(f"{k} {v:.3f}" for k, v in run["loco_uar"].items())
                + f" | mean {mean_uar(loco):.3f}  ({run['seconds']} s)",
                flush=True,
            )
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
