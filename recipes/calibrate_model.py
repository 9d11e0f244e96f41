"""Calibrate a bundled classifier on its own validation data (recipe step 6 of train_emotion_model.sh).

1. score the media of the validation split (``--split valid``: RAVDESS actors 17-18) with the model as
   shipped, extracted exactly as ``dmd evaluate --labels`` does (the model's own feature spec, through the
   feature cache), keeping the raw logits (before any temperature the model already has);
2. fit a temperature on them by minimum NLL (:func:`dmd_pipeline.calibration.fit_calibration`) and write it
   into the model's ``config.json`` as its ``calibration`` block (the weights, and the ``weights_sha256``
   recorded for them, are untouched: a temperature is one number beside them); the file is read back and
   validated as any load would;
3. with ``--measure-split test`` (once, for the model card), score that split the same way and record its
   ECE before and after the fitted temperature under ``calibration.measured_on``; nothing is fitted on it.

Prints a JSON summary (also written to ``--summary``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def raw_outputs(model: Any, labels: Path, split: str) -> tuple[Any, Any, int]:
    """(raw logits, class indices, failed items) of one split of a media label file."""
    from dmd_pipeline.evaluation import evaluate_media, select_media_items
    from dmd_pipeline.features import FeatureCache, default_cache_dir
    from dmd_pipeline.pipeline import Extractor

    sel = select_media_items(labels, model, split)
    extractor = Extractor(model.extraction_config(), cache=FeatureCache(default_cache_dir()))
    try:
        res = evaluate_media(model, sel.items, sel.targets, extractor)
    finally:
        extractor.close()
    print(f"{split}: {len(res.ids)} items scored, {len(res.failures)} failed", flush=True)
    return res.outputs, res.targets.astype("int64"), len(res.failures)


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the model folder to calibrate (in place)")
    ap.add_argument("--labels", type=Path, required=True, help="media label file with a split column")
    ap.add_argument("--split", default="valid", help="the split the temperature is fitted on")
    ap.add_argument("--measure-split", default=None, help="a held-out split to measure ECE on (e.g. test)")
    ap.add_argument("--summary", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from export_common import record_calibration

    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.calibration import calibration_figures, fit_calibration
    from dmd_pipeline.utils import sha256_file

    model = load_model(args.model)
    if model.task != "classification":
        raise SystemExit(f"{args.model}: a regression model has no class probabilities to calibrate")
    logits, targets, failed = raw_outputs(model, args.labels, args.split)
    fitted_on = {"split": args.split, "data": args.labels.name, "data_sha256": sha256_file(args.labels)}
    if failed:
        fitted_on["n_failed"] = failed
    cal = fit_calibration(logits, targets, fitted_on)
    block = cal.to_meta()
    summary: dict[str, Any] = {"model": str(args.model), "calibration": dict(block)}
    if args.measure_split:
        x, y, failed = raw_outputs(model, args.labels, args.measure_split)
        fig = calibration_figures(x, y, cal)
        measured = {
            "split": args.measure_split,
            "n": fig["n"],
            **{k: round(float(fig[k]), 6) for k in ("ece_before", "ece_after", "nll_before", "nll_after")},
            **{
                k: round(float(fig[k]), 6)
                for k in ("mean_confidence_before", "mean_confidence_after", "accuracy")
            },
        }
        if failed:
            measured["n_failed"] = failed
        block["measured_on"] = measured
        summary["measured_on"] = measured
    record_calibration(args.model, block)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        args.summary.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
