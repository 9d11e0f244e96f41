"""Calibrate a face-expression model on FER2013 valid (the face counterpart of ``calibrate_model.py``).

1. score the images of the validation split (``--split valid``: FER2013 PublicTest, 3,589 images) with the
   model as shipped, through the same image path as ``dmd evaluate`` (the largest face, eye-aligned; an image
   that already is a face crop used whole), keeping the raw probabilities: each crop averaged with its
   mirror image, before any temperature the model already has;
2. measure what a temperature fitted on held-out data does, by two-fold cross-fitting: the split is cut in
   two halves by a fixed seeded shuffle, a temperature is fitted (minimum NLL of ``softmax(log p / T)``) on
   each half and its ECE/NLL measured on the other; the means are recorded under
   ``calibration.cross_fit`` (no image measures a temperature fitted on itself);
3. fit the shipped temperature on the whole split and write it into the model's ``config.json`` as its
   ``calibration`` block (the weights, and their ``weights_sha256``, are untouched); the file is read back
   and loaded as any load would.

FER2013's third part (PrivateTest) is kept back for acceptance and never read here.

    .venv/bin/python recipes/calibrate_face_model.py \\
        --model dmd_pipeline/assets/face_models/fer-face-expression \\
        --labels ../shared/data/fer2013/labels.csv --summary runs/face_calibration.json

Prints a JSON summary (also written to ``--summary``), with the accuracy, UAR and confusion matrix of the
image path (``image_path``: what ``dmd evaluate`` gives on the same images).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def cross_fit(logp: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """ECE/NLL on each half of (``logp``, ``y``) before and after a temperature fitted on the other half."""
    from dmd_pipeline.calibration import Calibration, calibration_figures, fit_temperature

    order = np.random.default_rng(seed).permutation(len(y))
    halves = [order[: len(y) // 2], order[len(y) // 2 :]]
    folds = []
    for k in range(2):
        fit, held = halves[1 - k], halves[k]
        t = fit_temperature(logp[fit], y[fit])
        fig = calibration_figures(logp[held], y[held], Calibration(t))
        folds.append(
            {
                "temperature": round(float(t), 4),
                "n": int(fig["n"]),
                **{
                    k2: round(float(fig[k2]), 6)
                    for k2 in ("ece_before", "ece_after", "nll_before", "nll_after")
                },
                **{
                    k2: round(float(fig[k2]), 6)
                    for k2 in ("mean_confidence_before", "mean_confidence_after", "accuracy")
                },
            }
        )
    mean = {
        k: round(float(np.mean([f[k] for f in folds])), 6) for k in folds[0] if k not in ("n", "temperature")
    }
    return {"seed": seed, "folds": folds, "mean": mean}


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the face model folder to calibrate (in place)")
    ap.add_argument("--labels", type=Path, required=True, help="FER2013 labels.csv (file,label,split)")
    ap.add_argument("--split", default="valid", help="the split the temperature is fitted on")
    ap.add_argument("--summary", type=Path, default=None)
    args = ap.parse_args()

    from dmd_pipeline.calibration import fit_calibration, log_probabilities
    from dmd_pipeline.face.evaluate import evaluate_images
    from dmd_pipeline.face.folder import read_face_config
    from dmd_pipeline.face.model import FaceExpressionModel
    from dmd_pipeline.utils import atomic_write_json, sha256_file

    model = FaceExpressionModel.load(args.model)
    t0 = time.perf_counter()
    done = [0]

    def tick(item: Any, failure: str | None) -> None:
        done[0] += 1
        if done[0] % 500 == 0:
            print(f"{done[0]} images ({time.perf_counter() - t0:.0f} s)", flush=True)

    res = evaluate_images(model, args.labels, args.split, on_item=tick)
    if res.raw_probs is None:
        raise SystemExit(f"{args.labels}: no image of split {args.split!r} could be scored")
    classes = list(model.classes)
    y = np.array([classes.index(t) for t in res.targets], dtype=np.int64)
    logp = log_probabilities(res.raw_probs)
    print(
        f"{args.split}: {len(y)} images scored, {len(res.failed)} failed ({time.perf_counter() - t0:.0f} s)"
    )
    fitted_on = {
        "split": args.split,
        "data": args.labels.name,
        "data_sha256": sha256_file(args.labels),
        "scored_as": "dmd evaluate's image path (face crop, or the whole image), mirror-averaged",
        "applied_to": "log of the mirror-averaged probabilities: softmax(log p / T)",
    }
    if res.failed:
        fitted_on["n_failed"] = len(res.failed)
    block = fit_calibration(logp, y, fitted_on).to_meta()
    block["cross_fit"] = cross_fit(logp, y)
    cfg_path = args.model / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["calibration"] = block
    atomic_write_json(cfg_path, cfg)
    read_face_config(cfg_path)
    back = FaceExpressionModel.load(args.model)  # refuses a block the loader would refuse
    assert back.calibration is not None
    rep = res.report or {}
    image_path = {  # what `dmd evaluate --model M --labels L --split S` reports on the same images
        **{k: round(float(rep[k]), 6) for k in ("accuracy", "uar", "macro_f1", "weighted_f1") if k in rep},
        "n": len(y),
        "faces_found": res.faces_found,
        "used_whole": res.used_whole,
        "confusion_matrix": rep.get("confusion_matrix"),
    }
    summary = {
        "model": str(args.model),
        "seconds": round(time.perf_counter() - t0, 1),
        "image_path": image_path,
        "calibration": block,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
