"""What the face channel adds to the visual stage of ``dmd analyze`` on the generated 60 s clip.

    .venv/bin/python benchmarks/bench_face_overhead.py [--fps 4] [--rounds 3] [--model DIR] [--face-fps 2]

Interleaved rounds on one warm process (one torch thread): the visual stage as today
(``VisualExtractor().extract`` over the streamed frames at ``--fps``, 4 = ``dmd analyze``'s default) against
the same stage keeping each frame's aligned face crop (``face_crop=model.template``) plus the face model on
every crop (``face.channel.frame_probabilities``, batched, mirrored). Prints the medians, the added seconds
and their ratio, and the load average before and after, as JSON.

With ``--analyze`` the whole warm ``dmd analyze`` of the clip is timed instead (``analyze_clip`` with the
bundled default models, loaded once, against the same models plus the bundled face model: the face channel
in the result), in interleaved rounds (each round: without, then with; the ratio of the medians and each
round's own ratio); ``--asr`` as for ``dmd analyze`` (default whisper); ``--face-fps``
as for ``dmd analyze`` (face frames the face model reads per second; 0: every frame).
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


def main(argv: list[str] | None = None) -> int:
    import torch
    from media_factory import MediaFactory

    from dmd_pipeline.extractors.visual import VisualExtractor
    from dmd_pipeline.face.channel import frame_probabilities
    from dmd_pipeline.face.model import FaceExpressionModel
    from dmd_pipeline.media import iter_frames

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--analyze", action="store_true", help="time the whole warm analyze, with and without")
    ap.add_argument("--asr", default="whisper")
    ap.add_argument("--face-fps", type=float, default=None, help="as dmd analyze's (default: its default)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.analyze:
        return analyze_rounds(args)
    model = FaceExpressionModel.load(args.model)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_face_") as tmp:
        clip = MediaFactory(tmp).face_video(duration=args.duration, size=(640, 480), fps=25)
        plain, face = VisualExtractor(), VisualExtractor(face_crop=model.template)

        def run_plain() -> float:
            t0 = time.perf_counter()
            plain.extract(iter_frames(clip, fps=args.fps))
            return time.perf_counter() - t0

        net_s: list[float] = []

        def run_face() -> float:
            t0 = time.perf_counter()
            ff = face.extract(iter_frames(clip, fps=args.fps))
            t1 = time.perf_counter()
            present = ff.values[:, ff.names.index("face_present")]
            frame_probabilities(model, ff.extras["face_crops"], present)
            net_s.append(time.perf_counter() - t1)
            return time.perf_counter() - t0

        run_plain(), run_face()  # warm-up
        net_s.clear()
        a, b = [], []
        for _ in range(args.rounds):
            a.append(run_plain())
            b.append(run_face())
        n_frames = int(args.duration * args.fps)
        plain.close(), face.close()
    ma, mb = statistics.median(a), statistics.median(b)
    print(json.dumps({
        "fps": args.fps, "frames": n_frames, "rounds": args.rounds,
        "visual_s": [round(x, 3) for x in a], "visual_plus_face_s": [round(x, 3) for x in b],
        "median_visual_s": round(ma, 3), "median_visual_plus_face_s": round(mb, 3),
        "added_s": round(mb - ma, 3), "ratio": round(mb / ma, 3),
        "face_model_s_median": round(statistics.median(net_s), 3),
        "face_model_ms_per_frame": round(statistics.median(net_s) / n_frames * 1000, 3),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }, indent=1))  # fmt: skip
    return 0


def analyze_rounds(args: argparse.Namespace) -> int:
    """``--analyze``: interleaved warm ``analyze_clip`` rounds without and with the face channel."""
    from media_factory import MediaFactory

    from dmd_pipeline.analysis.analysis_options import DEFAULT_FACE_FPS
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip
    from dmd_pipeline.analysis.registry import default_model_names, load_face_model, load_models

    dmd = load_models(default_model_names())
    face = load_face_model(args.model)
    face_fps = DEFAULT_FACE_FPS if args.face_fps is None else args.face_fps
    opts = AnalyzeOptions(asr=args.asr, face_fps=face_fps)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_face_") as tmp:
        clip = MediaFactory(tmp).face_video(duration=args.duration, size=(640, 480), fps=25)
        stages: dict[str, list[float]] = {"without": [], "with": []}

        def run(models: list) -> float:
            t0 = time.perf_counter()
            r = analyze_clip(clip, models, opts)
            key = "with" if len(models) > len(dmd) else "without"
            stages[key].append(r.timings.get("face_model", 0.0) + r.timings.get("face_channel", 0.0))
            return time.perf_counter() - t0

        run(dmd), run([*dmd, face])  # warm-up: models, extractors, caches
        stages = {"without": [], "with": []}
        a, b = [], []
        for _ in range(args.rounds):
            a.append(run(dmd))
            b.append(run([*dmd, face]))
    ma, mb = statistics.median(a), statistics.median(b)
    print(json.dumps({
        "mode": "analyze", "asr": args.asr, "face_fps": face_fps, "duration_s": args.duration, "rounds": args.rounds,
        "without_face_s": [round(x, 3) for x in a], "with_face_s": [round(x, 3) for x in b],
        "median_without_s": round(ma, 3), "median_with_s": round(mb, 3),
        "added_s": round(mb - ma, 3), "ratio_of_medians": round(mb / ma, 3),
        "pair_ratios": [round(y / x, 3) for x, y in zip(a, b, strict=True)],
        "median_pair_ratio": round(statistics.median(y / x for x, y in zip(a, b, strict=True)), 3),
        "face_model_and_channel_s_median": round(statistics.median(stages["with"]), 3),
        "face_model_and_channel_s": [round(x, 3) for x in stages["with"]],
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
