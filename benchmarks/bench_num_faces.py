"""What FaceLandmarker's ``num_faces`` costs on a one-face video, and which face the speaking-face rule picks.

    .venv/bin/python benchmarks/bench_num_faces.py [--fps 4] [--rounds 3] [--two-faces CLIP]

1. The generated 60 s one-face clip (``MediaFactory.face_video``), frames at ``--fps`` (4 = ``dmd
   analyze``'s default), one warm FaceLandmarker (VIDEO mode) per ``num_faces`` in 1..4, interleaved frame
   by frame (each frame to all four, the order rotating): the median time of one ``detect_for_video`` call
   per setting and its ratio to ``num_faces=1`` (ratio of medians), over ``--rounds`` passes after a
   warm-up pass.
2. With ``--two-faces CLIP...`` (videos with several faces and the speaker's audio, e.g. the one
   ``tests/test_face_speaking.py`` builds from ../shared): the extraction at 4 and 10 fps (transcript "Kids
   are talking by the door"), each segment's choice (track, rule, box, per-track scores). ``--rounds 0``
   skips part 1.

Prints JSON, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _cost(fps: float, rounds: int, duration: float) -> dict:
    """FaceLandmarker time per frame for each ``num_faces``, interleaved frame by frame: every frame goes to
    the four landmarkers in turn (the order rotating), so a load change hits all settings alike."""
    import mediapipe as mp
    from media_factory import MediaFactory

    from dmd_pipeline.extractors.visual import VisualExtractor
    from dmd_pipeline.media import iter_frames

    settings = (1, 2, 3, 4)
    with tempfile.TemporaryDirectory(prefix="bench_faces_") as tmp:
        clip = MediaFactory(tmp).face_video(duration=duration, size=(640, 480), fps=25)
        frames = [np.ascontiguousarray(f) for _, f in iter_frames(clip, fps=fps)]
    exs = {n: VisualExtractor(num_faces=n) for n in settings}
    lms = {n: e._get_landmarker() for n, e in exs.items()}
    ms: dict[int, list[float]] = {n: [] for n in settings}
    found: dict[int, list[int]] = {n: [] for n in settings}
    ts = 0
    for r in range(rounds + 1):  # round 0 warms the graphs up and is not counted
        for i, img in enumerate(frames):
            ts += int(1000 / fps)
            order = settings[i % 4 :] + settings[: i % 4]
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=img)
            for n in order:
                t0 = time.perf_counter()
                res = lms[n].detect_for_video(image, ts)
                dt = (time.perf_counter() - t0) * 1000.0
                if r:
                    ms[n].append(dt)
                    found[n].append(len(res.face_landmarks or []))
    for e in exs.values():
        e.close()
    med = {n: statistics.median(v) for n, v in ms.items()}
    return {
        "fps": fps,
        "frames_per_round": len(frames),
        "rounds": rounds,
        "median_ms_per_frame": {n: round(v, 2) for n, v in med.items()},
        "mean_ms_per_frame": {n: round(statistics.fmean(v), 2) for n, v in ms.items()},
        "ratio_of_medians_vs_1": {n: round(med[n] / med[1], 3) for n in settings},
        "faces_found_per_frame": {n: round(statistics.fmean(v), 3) for n, v in found.items()},
    }


def _choice(clip: Path) -> list[dict]:
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    out = []
    for fps in (4.0, 10.0):
        ex = Extractor(ExtractionConfig(fps=fps, asr="none"), concurrent=False)
        try:
            b = ex.extract_clip(clip, transcript="Kids are talking by the door")
        finally:
            ex.close()
        out.append({"fps": fps, "choices": b.visual.extras.get("face_choices")})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--two-faces", type=Path, nargs="*", default=[])
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    res: dict = {"cost": _cost(args.fps, args.rounds, args.duration)} if args.rounds > 0 else {}
    if args.two_faces:
        res["speaking_face"] = {str(p.name): _choice(p) for p in args.two_faces}
    res["load_before"] = [round(x, 2) for x in load_before]
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
