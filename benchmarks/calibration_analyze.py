"""Calibration of a classifier as `dmd analyze` reports it: the 15-bin ECE of each file's overall class
probabilities against the file's label, as analysed (the model's temperature applied) and as they were before
it (each window's raw softmax recovered from its calibrated probabilities: ``softmax(T * log p)``, exact for a
temperature; a file's raw overall is the duration-weighted mean of its windows' raw probabilities, as
analysis averages them).

    dmd analyze ravdess/Actor_19 ravdess/Actor_20 ravdess/Actor_21 --model ravdess-voice-emotion \\
        --out runs/analyze_test --format json
    python benchmarks/calibration_analyze.py --results runs/analyze_test --labels ravdess/labels.csv

Files are matched to label rows by file name. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from dmd_pipeline.calibration import expected_calibration_error, softmax


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, required=True, help="folder of dmd analyze JSON results")
    ap.add_argument("--labels", type=Path, required=True, help="label CSV with file,label columns")
    ap.add_argument("--model", default="ravdess-voice-emotion")
    args = ap.parse_args()

    labels = {Path(r["file"]).stem: r["label"] for r in csv.DictReader(args.labels.open(encoding="utf-8"))}
    raw, cal, ys, n_windows, skipped, gaps = [], [], [], [], [], []
    names: list[str] | None = None
    temperature = None
    for path in sorted(args.results.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        stem = Path(doc["file"]).stem
        model = next((m for m in doc.get("models", []) if m["name"] == args.model), None)
        if stem not in labels or model is None or not model["overall"].get("probabilities"):
            skipped.append(stem)
            continue
        names = names or list(model["class_names"])
        if temperature is None:
            from dmd_pipeline.analysis.registry import load_model

            loaded = load_model(args.model)
            temperature = loaded.calibration.temperature if loaded.calibration else 1.0
        wins = model.get("windows") or []
        p_win = np.array([[w["prediction"]["probabilities"][c] for c in names] for w in wins])
        dur = np.array([max(w["end"] - w["start"], 1e-3) for w in wins])
        r_win = softmax(temperature * np.log(np.clip(p_win, 1e-300, None)))
        raw.append((dur / dur.sum()) @ r_win)
        cal.append([model["overall"]["probabilities"][c] for c in names])
        gaps.append(float(np.abs((dur / dur.sum()) @ p_win - np.array(cal[-1])).max()))  # the same weighting?
        ys.append(names.index(labels[stem]))
        n_windows.append(len(wins))
    y = np.array(ys)
    raw_a, cal_a = np.array(raw), np.array(cal)
    out = {
        "n_files": len(ys),
        "skipped": skipped,
        "windows_per_file": {
            str(k): int(v) for k, v in zip(*np.unique(n_windows, return_counts=True), strict=True)
        },
        "temperature": temperature,
        "max_gap_window_mean_vs_overall": max(gaps, default=0.0),
        "accuracy": float((cal_a.argmax(1) == y).mean()),
        "accuracy_raw": float((raw_a.argmax(1) == y).mean()),
        "ece_raw": expected_calibration_error(raw_a, y),
        "ece_calibrated": expected_calibration_error(cal_a, y),
        "mean_top_raw": float(raw_a.max(1).mean()),
        "mean_top_calibrated": float(cal_a.max(1).mean()),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
