"""Small validation sweep for the voice-emotion DMD model (actors 17-18 only; test actors are never read).

Uses the frame cache of ``recipes/emotion_feature_choice.py`` (``runs/ravdess_frames.npz``) so that each
configuration costs only training time. Every run: DMD classification (8 classes) with the audio input
resampled to ``--audio-len`` steps (the unaligned setting, MMSA padding/average pooling), text and vision
zero-filled (the model's modalities: audio only), selection by validation UAR. Prints one line per run.
The chosen configuration is then trained through the product path (``dmd extract`` + ``dmd train``) by
``recipes/train_emotion_model.sh``; this script only explores.

    python recipes/emotion_dmd_sweep.py --runs 'dst=32,lr=5e-4' 'dst=50,lr=2e-4,text_zero=1'
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def build_split(feats, y, cols, audio_len, text_len, vision_len, text_dim, vision_dim):
    from dmd_pipeline.extractors.base import FrameFeatures
    from dmd_pipeline.features import resample_to_length

    n = len(feats)
    audio = np.zeros((n, audio_len, cols.stop - cols.start), np.float32)
    for i, f in enumerate(feats):
        ff = FrameFeatures(f[:, cols], np.arange(len(f)) * 0.02, [str(k) for k in range(cols.stop - cols.start)])
        audio[i], _ = resample_to_length(ff, audio_len)
    text = np.zeros((n, text_len, text_dim), np.float32)
    vision = np.zeros((n, vision_len, vision_dim), np.float32)
    return text, audio, vision, np.asarray(y, np.int64)


def parse(spec: str) -> dict:
    out = {}
    for part in filter(None, spec.split(",")):
        k, v = part.split("=")
        out[k] = float(v) if any(c in v for c in ".e") else int(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("runs/ravdess_frames.npz"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    ap.add_argument("--setting", default="whisper", choices=["whisper", "whisper+librosa"])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", nargs="+", default=[""])
    ap.add_argument("--early-stop", type=int, default=12)
    ap.add_argument("--ensemble", action="store_true", help="also print the UAR of the mean probabilities")
    args = ap.parse_args()

    import csv

    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.data.datasets import dataset_from_arrays
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    rows = list(csv.DictReader((args.data / "labels.csv").open(encoding="utf-8")))
    z = np.load(args.cache, allow_pickle=False)
    feats = [z[f"f{i}"] for i in range(len(rows))]
    names = sorted({r["label"] for r in rows})
    cols = slice(0, 384) if args.setting == "whisper" else slice(0, 409)
    members: list = []
    for spec in args.runs:
        p = {"dst": 50, "heads": 10, "levels": 4, "lr": 1e-4, "bs": 16, "alen": 100, "tlen": 8, "vlen": 8,
             "ka": 5, "drop": 0.5, "seed": 1111, "wd": 0.0, "mask": 0.0, "noise": 0.0, "std": 0,
             **parse(spec)}
        splits = {}
        for s in ("train", "valid"):
            idx = [i for i, r in enumerate(rows) if r["split"] == s]
            splits[s] = build_split([feats[i] for i in idx], [names.index(rows[i]["label"]) for i in idx],
                                    cols, p["alen"], p["tlen"], p["vlen"], 384, 66)
        if p["std"]:  # standardise audio dims with train statistics over real (non-padded) frames
            tr = splits["train"][1]
            real = np.abs(tr).sum(-1) > 0
            mu, sd = tr[real].mean(0), tr[real].std(0) + 1e-5
            for s_ in splits:
                a_ = splits[s_][1]
                r_ = np.abs(a_).sum(-1) > 0
                a_[r_] = (a_[r_] - mu) / sd
        cfg = get_preset(
            "mosi_unaligned",
            feature_dims=(384, cols.stop - cols.start, 66),
            seq_lens=(p["tlen"], p["alen"], p["vlen"]),
            num_classes=8,
            dst_feature_dim=p["dst"],
            nheads=p["heads"],
            nlevels=p["levels"],
            conv1d_kernel_size=(1, p["ka"], 1),
            output_dropout=p["drop"],
        )
        ds = {s: dataset_from_arrays(cfg, *splits[s], where=s) for s in splits}
        if p["mask"] or p["noise"]:
            from dmd_pipeline.data.datasets import AudioAugment

            ds["train"].augment = AudioAugment(time_mask=p["mask"], noise=p["noise"])
        torch.manual_seed(p["seed"])
        system = DMDSystem(cfg)
        tcfg = TrainConfig.from_model_config(
            cfg, max_epochs=args.epochs, seed=p["seed"], device="cpu", batch_size=p["bs"], learning_rate=p["lr"],
            update_epochs=1, early_stop=args.early_stop, quiet=True,
        )
        tcfg.key_eval = "UAR"
        tcfg.apply_weight_decay = p["wd"] > 0
        tcfg.weight_decay = p["wd"]
        t0 = time.perf_counter()
        def show(rec, spec=spec):
            print(f"  [{spec}] epoch {rec.epoch}: train loss {rec.train_loss:.3f} valid UAR "
                  f"{rec.valid_metrics['UAR']:.3f} loss {rec.valid_loss:.3f} ({rec.seconds:.1f} s)", flush=True)

        res = Trainer(system, tcfg).fit(ds["train"], ds["valid"], on_epoch_end=show)
        dt = time.perf_counter() - t0
        hist = " ".join(f"{h.valid_metrics['UAR']:.2f}" for h in res.history)
        print(f"{spec or 'default':40s} best ep {res.best_epoch:2d} valid UAR {res.best_metrics['UAR']:.3f} "
              f"acc {res.best_metrics['Acc_8']:.3f} loss {res.best_metrics['Loss']:.3f} | "
              f"{dt / res.epochs_run:.1f} s/epoch, {sum(p.numel() for p in system.parameters()):,} params | {hist}",
              flush=True)
        if args.ensemble:
            from dmd_pipeline.training.metrics import classification_report
            from dmd_pipeline.training.trainer import predict_dataset

            pred, true, _ = predict_dataset(system, ds["valid"], 64, torch.device("cpu"))
            probs = torch.softmax(torch.as_tensor(pred), -1).numpy()
            members.append(probs)
            mean = np.mean(members, axis=0)
            rep = classification_report(np.asarray(true), mean.argmax(1), 8)
            print(f"  ensemble of {len(members)}: valid UAR {rep['uar']:.3f} acc {rep['accuracy']:.3f}", flush=True)


if __name__ == "__main__":
    main()
