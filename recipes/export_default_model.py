"""Export a trained text-only checkpoint as the bundled default model and measure it (recipe step 3).

1. re-save the checkpoint from ``--run`` into ``--dest`` with float16 weights, no machine paths
   (:func:`dmd_pipeline.models.checkpoint.export_checkpoint`);
2. evaluate BOTH the float32 run and the float16 export on the valid and test splits of the label CSV with
   the same code as ``dmd evaluate --labels`` (so float16 storage is shown not to change the metrics);
3. write the float16 model's metrics into its config.json (the weights, and their recorded sha256, stay
   untouched) and print a JSON summary (also written to ``--summary``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="checkpoint folder written by dmd train")
    ap.add_argument(
        "--dest", type=Path, required=True, help="e.g. dmd_pipeline/assets/models/mosi-text-minilm"
    )
    ap.add_argument("--labels", type=Path, required=True, help="the label CSV the model was trained on")
    ap.add_argument("--name", default="mosi-text-minilm")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--summary", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from export_common import record_shipped_metrics, report_summary

    from dmd_pipeline.cli.evaluate import run_evaluation
    from dmd_pipeline.models.checkpoint import export_checkpoint, read_checkpoint_meta
    from dmd_pipeline.utils import quiet_transformers

    quiet_transformers()
    src_meta = read_checkpoint_meta(args.run)
    cfg = src_meta["config"]
    if cfg.get("use_bert"):
        k = (src_meta.get("text_encoder_base") or {}).get("finetune_layers")
        how = f"with the top {k} layer(s) of the bundled all-MiniLM-L6-v2 fine-tuned inside DMD"
    else:
        how = "over frozen token features of the bundled all-MiniLM-L6-v2 (384-d, last hidden layer)"
    export_checkpoint(
        args.run,
        args.dest,
        weights_dtype=args.dtype,
        meta_updates={
            "name": args.name,
            "task": "regression",
            "description": (
                f"Sentiment intensity in [-3, 3] from the transcript only: DMD ({cfg['name']} preset) {how}, "
                "trained on the CMU-MOSI train split; audio and vision inputs are zeros. See MODEL_CARD.md."
            ),
            "licence_note": "trained on CMU-MOSI (research use only, as the dataset)",
        },
    )
    results: dict[str, dict] = {}
    for tag, model in (("float32_run", args.run), (args.dtype, args.dest)):
        for split in ("valid", "test"):
            metrics, info = run_evaluation(model, None, split, labels=args.labels)
            results.setdefault(tag, {})[split] = {k: float(v) for k, v in metrics.items()}
            results[tag][f"n_{split}"] = info["n"]
    record_shipped_metrics(
        args.dest, results[args.dtype], "dmd evaluate --labels label.csv (the shipped float16 weights)"
    )
    report_summary(args.dest, results, args.summary)

if __name__ == "__main__":
    main()
