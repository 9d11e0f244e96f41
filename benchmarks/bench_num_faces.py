"""What FaceLandmarker's ``num_faces`` costs on a one-face video, and which face the speaking-face rule picks.

    .venv/bin/python benchmarks/bench_num_faces.py [--fps 4] [--rounds 3] [--two-faces CLIP]

1. The generated 60 s one-face clip (``MediaFactory.face_video``), frames streamed at ``--fps`` (4 =
   ``dmd analyze``'s default), one warm ``VisualExtractor`` per ``num_faces`` in 1..4, interleaved rounds:
   per setting the median landmarker time per frame (``extras["ms_per_frame"]``) and the median wall time
   of the whole stage, and their ratio to ``num_faces=1``.
2. With ``--two-faces`` (a video with several faces and the speaker's audio, e.g. the one
   ``tests/test_face_speaking.py`` builds from ../shared): the extraction at 4 and 10 fps, each segment's
   choice (track, rule, box, per-track scores).

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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _cost(fps: float, rounds: int, duration: float) -> dict:
    from media_factory import MediaFactory

    from dmd_pipeline.extractors.visual import VisualExtractor
    from dmd_pipeline.media import iter_frames

    settings = (1, 2, 3, 4)
    with tempfile.TemporaryDirectory(prefix="bench_faces_") as tmp:
        clip = MediaFactory(tmp).face_video(duration=duration, size=(640, 480), fps=25)
        exs = {n: VisualExtractor(num_faces=n) for n in settings}
        ms: dict[int, list[float]] = {n: [] for n in settings}
        wall: dict[int, list[float]] = {n: [] for n in settings}
        for n in settings:  # warm-up: graph creation and first frames
            exs[n].extract(iter_frames(clip, fps=fps))
        for r in range(rounds):
            order = settings if r % 2 == 0 else settings[::-1]
            for n in order:
                t0 = time.perf_counter()
                ff = exs[n].extract(iter_frames(clip, fps=fps))
                wall[n].append(time.perf_counter() - t0)
                ms[n].append(float(ff.extras["ms_per_frame"]))
        for e in exs.values():
            e.close()
    med_ms = {n: statistics.median(v) for n, v in ms.items()}
    med_wall = {n: statistics.median(v) for n, v in wall.items()}
    return {
        "fps": fps,
        "frames": int(duration * fps),
        "rounds": rounds,
        "ms_per_frame": {n: [round(x, 2) for x in v] for n, v in ms.items()},
        "median_ms_per_frame": {n: round(v, 2) for n, v in med_ms.items()},
        "ratio_ms_per_frame_vs_1": {n: round(med_ms[n] / med_ms[1], 3) for n in settings},
        "median_stage_s": {n: round(v, 3) for n, v in med_wall.items()},
        "ratio_stage_vs_1": {n: round(med_wall[n] / med_wall[1], 3) for n in settings},
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
    ap.add_argument("--two-faces", type=Path, default=None)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    res: dict = {"cost": _cost(args.fps, args.rounds, args.duration)}
    if args.two_faces is not None:
        res["speaking_face"] = _choice(args.two_faces)
    res["load_before"] = [round(x, 2) for x in load_before]
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
