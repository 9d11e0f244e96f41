"""The face model on real videos: the 18 RAVDESS videos and the 6 CREMA-D clips of ``../shared/data``.

For each clip: frames at ``--fps`` through the visual extractor (FaceLandmarker, tracked face, aligned
crop), the face model on every frame with a face, the clip's duration-weighted mean probabilities
(:func:`dmd_pipeline.face.channel.summarise_span`), its top class next to the label, and the fraction of
frames with a face. RAVDESS labels come from the file names (emotion code, 3rd field); ``calm`` is no FER
class, so those clips are listed but not counted. n is tiny: this is a sanity check, not an accuracy.
Prints a markdown table and a JSON line with the totals.

With ``--results DIR`` the clips are not re-extracted: their ``dmd analyze`` results in DIR (``<stem>.json``,
e.g. an ``--out`` folder or ``tests/golden/analyze``) are read instead, and the table gives the result's
face channel (``face`` over the whole file: label, probability, visible fraction) next to the label: what a
user of ``dmd analyze`` sees, at its frame rate and with the model's calibration.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
    "07": "disgust", "08": "surprised",
}  # fmt: skip
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def clips(shared: Path) -> list[tuple[Path, str]]:
    out = [
        (p, RAVDESS_EMOTIONS[p.name.split("-")[2]])
        for p in sorted((shared / "ravdess" / "video").glob("*.mp4"))
    ]
    with open(shared / "clips" / "labels.csv", newline="", encoding="utf-8") as f:
        out += [
            (shared / "clips" / r["file"], r["label"]) for r in csv.DictReader(f) if r["dataset"] == "CREMA-D"
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from dmd_pipeline.extractors.visual import VisualExtractor
    from dmd_pipeline.face.channel import frame_probabilities, summarise_span
    from dmd_pipeline.face.evaluate import _class_of
    from dmd_pipeline.face.model import FaceExpressionModel
    from dmd_pipeline.media import iter_frames

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--results", type=Path, default=None, help="read dmd analyze results from this folder")
    args = ap.parse_args(argv)
    if args.results is not None:
        return from_results(args.results, args.shared)
    torch.set_num_threads(1)
    model = FaceExpressionModel.load(args.model)
    rows, right, counted, face_frac, ms_net = [], 0, 0, [], []
    print("| clip | label | face says (p) | 2nd | frames with a face |")
    print("|---|---|---|---|---|")
    with VisualExtractor(face_crop=model.template) as ex:
        for path, label in clips(args.shared):
            ff = ex.extract(iter_frames(path, fps=args.fps))
            present = ff.values[:, ff.names.index("face_present")]
            t0 = time.perf_counter()
            probs = frame_probabilities(model, ff.extras["face_crops"], present)
            ms_net.append((time.perf_counter() - t0) / max(int(present.sum()), 1) * 1000)
            step = float(np.median(np.diff(ff.times))) if len(ff.times) > 1 else 0.1
            span = summarise_span(
                probs, ff.times, model.classes, float(ff.times[0]), float(ff.times[-1]) + step
            )
            want = _class_of(label, model.classes)
            ranked = sorted(span.probs.items(), key=lambda kv: -kv[1]) if span.probs else []
            top = ranked[0][0] if ranked else None
            if want is not None and top is not None:
                counted += 1
                right += int(top == want)
            face_frac.append(float(present.mean()))
            mark = "" if want is None else (" ✓" if top == want else "")
            said = f"{ranked[0][0]} ({ranked[0][1]:.2f}){mark}" if ranked else "n/a (no face)"
            second = f"{ranked[1][0]} ({ranked[1][1]:.2f})" if len(ranked) > 1 else ""
            print(f"| {path.name} | {label} | {said} | {second} | {present.mean():.0%} |", flush=True)
            rows.append(
                {"clip": path.name, "label": label, "top": top, "frames_with_face": float(present.mean())}
            )
    total = {
        "right": right, "counted": counted, "clips": len(rows), "min_frames_with_face": min(face_frac),
        "median_net_ms_per_face_batched": float(np.median(ms_net)), "fps": args.fps,
    }  # fmt: skip
    print(json.dumps(total))
    return 0


def from_results(folder: Path, shared: Path) -> int:
    """The table and totals from the ``dmd analyze`` results of the clips in ``folder`` (``--results``)."""
    from dmd_pipeline.face.evaluate import _class_of

    right = counted = 0
    fracs: list[float] = []
    print("| clip | label | face says (p) | 2nd | face visible | voice says |")
    print("|---|---|---|---|---|---|")
    for path, label in clips(shared):
        jp = folder / f"{path.stem}.json"
        if not jp.is_file():
            print(f"| {path.name} | {label} | (no result in {folder}) | | | |")
            continue
        doc = json.loads(jp.read_text(encoding="utf-8"))
        face = doc.get("face") or {}
        probs = face.get("probabilities") or {}
        ranked = sorted(probs.items(), key=lambda kv: -kv[1])
        want = _class_of(label, list(probs)) if probs else None
        top = ranked[0][0] if ranked else None
        if want is not None and top is not None:
            counted += 1
            right += int(top == want)
        mark = "" if want is None else (" ✓" if top == want else "")
        said = f"{top} ({ranked[0][1]:.2f}){mark}" if ranked else str(face.get("note") or "n/a")
        second = f"{ranked[1][0]} ({ranked[1][1]:.2f})" if len(ranked) > 1 else ""
        voice = next((m for m in doc.get("models") or [] if m.get("role") == "emotion"), None)
        vp = (voice or {}).get("overall", {}).get("probabilities") or {}
        vsaid = f"{max(vp, key=vp.get)} ({max(vp.values()):.2f})" if vp else "n/a"
        frac = float(face.get("visible_fraction") or 0.0)
        fracs.append(frac)
        print(f"| {path.name} | {label} | {said} | {second} | {frac:.0%} | {vsaid} |", flush=True)
    print(json.dumps({"right": right, "counted": counted, "clips": len(fracs),
                      "min_visible_fraction": min(fracs) if fracs else None}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
