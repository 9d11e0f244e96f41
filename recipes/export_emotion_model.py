"""Export a trained voice-emotion checkpoint as a bundled model and measure it (recipe step 4).

1. choose how many of the run's ensemble members to ship (``--members K``, or ``auto``: the K in 1..N with
   the best validation UAR of the first K members' mean probabilities, ties to the smaller K; valid only),
   then re-save them into ``--dest`` with float16 weights and no machine paths
   (:func:`dmd_pipeline.models.checkpoint.export_checkpoint`), with name, description and licence;
2. evaluate BOTH the float32 run and the float16 export on the media of the valid and test actors with the
   same code as ``dmd evaluate --labels`` (extraction from the model's own feature spec, through the cache);
3. write the float16 model's metrics into its config.json (weights and their sha256 untouched) and print a
   JSON summary (also written to ``--summary``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def choose_members(run: Path, labels: Path, members: str, max_members: int) -> dict:
    """Ensemble of the run's first K members (``run/members/<k>``), K fixed or chosen on valid UAR.

    Writes the chosen ensemble to ``run/ship_K`` and returns ``{"folder", "k", "valid_uar_by_k"}``.
    """
    import torch

    from dmd_pipeline.cli.evaluate import run_evaluation
    from dmd_pipeline.models.checkpoint import load_checkpoint, save_checkpoint
    from dmd_pipeline.models.ensemble import DMDEnsemble

    meta = read_meta(run)
    n = int(meta["ensemble_size"])
    systems = [load_checkpoint(run / "members" / str(k))[0] for k in range(n)]
    candidates = range(1, min(n, max_members) + 1) if members == "auto" else [int(members)]
    by_k: dict[int, float] = {}
    folders: dict[int, Path] = {}
    for k in candidates:
        ens = DMDEnsemble(systems[0].config, k, [s for s in systems[:k]])
        chosen = meta.get("ensemble_members", [])[:k]
        ens_meta = dict(meta, ensemble_size=k, ensemble_members=chosen)
        ens_meta.pop("calibration", None)  # fitted by dmd train for all N members; step 6 fits the shipped one
        ens_meta["training_time"] = {
            **(meta.get("training_time") or {}),
            "seconds": round(sum(float(m.get("seconds") or 0.0) for m in chosen), 1),
            "epochs_run": sum(int(m.get("epochs_run") or 0) for m in chosen),
        }
        ens_meta["best_epoch"] = [m.get("best_epoch") for m in chosen]
        ens_meta["epochs_run"] = [m.get("epochs_run") for m in chosen]
        folder = run / f"ship_{k}"
        with torch.no_grad():
            save_checkpoint(folder, ens, ens_meta)
        metrics, _ = run_evaluation(folder, None, "valid", labels=labels)
        by_k[k] = float(metrics["uar"])
        folders[k] = folder
        print(f"first {k} member(s): valid UAR {by_k[k]:.4f}", flush=True)
    best = max(by_k, key=lambda k: (round(by_k[k], 6), -k))
    return {"folder": folders[best], "k": best, "valid_uar_by_k": by_k}


def read_meta(run: Path) -> dict:
    """The run's config.json."""
    return json.loads((run / "config.json").read_text(encoding="utf-8"))


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="checkpoint folder written by dmd train")
    ap.add_argument("--dest", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True, help="the RAVDESS labels.csv (media + split)")
    ap.add_argument("--name", default="ravdess-voice-emotion")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--summary", type=Path, default=None)
    ap.add_argument("--members", default="auto", help="ensemble members to ship: K or auto (valid UAR)")
    ap.add_argument("--max-members", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from export_common import record_shipped_metrics, report_summary

    from dmd_pipeline.cli.evaluate import run_evaluation
    from dmd_pipeline.models.checkpoint import export_checkpoint, read_checkpoint_meta

    src = read_checkpoint_meta(args.run)
    cfg = src["config"]
    run = args.run
    choice = None
    if src.get("ensemble_size"):
        choice = choose_members(args.run, args.labels, args.members, args.max_members)
        run = choice.pop("folder")
    export_checkpoint(
        run,
        args.dest,
        weights_dtype=args.dtype,
        meta_updates={
            "name": args.name,
            "task": "classification",
            "role": "emotion",
            "description": (
                f"Categorical emotion ({cfg['num_classes']} RAVDESS classes) from the voice only: DMD "
                f"({cfg['name']} preset) over 384-d Whisper tiny.en encoder states (50 Hz, resampled to "
                f"{cfg['seq_lens'][1]} steps), trained on RAVDESS actors 1-16 (speech, English, acted); text "
                "and vision inputs are zeros. See MODEL_CARD.md."
            ),
            "licence_note": (
                "trained on RAVDESS (CC BY-NC-SA 4.0): these weights are for non-commercial use only and "
                "are shared under the same licence"
            ),
        },
    )
    results: dict[str, dict] = {}
    for tag, model in (("float32_run", run), (args.dtype, args.dest)):
        for split in ("valid", "test"):
            metrics, info = run_evaluation(model, None, split, labels=args.labels)
            results.setdefault(tag, {})[split] = {
                **{k: float(v) for k, v in metrics.items()},
                "confusion_matrix": (info.get("report") or {}).get("confusion_matrix"),
                "n": info["n"],
                "n_failed": info.get("n_failed", 0),
            }
    extra = {"ensemble_choice": choice} if choice is not None else {}
    record_shipped_metrics(
        args.dest,
        results[args.dtype],
        "dmd evaluate --labels ravdess/labels.csv (the shipped float16 weights)",
        **extra,
    )
    report_summary(args.dest, results, args.summary, ensemble_choice=choice)

if __name__ == "__main__":
    main()
