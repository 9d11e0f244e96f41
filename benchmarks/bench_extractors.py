"""Speed and memory of the extraction stages: decode audio, decode frames, acoustic, visual.

Reports seconds of work per second of media (real-time factor, RTF; lower is faster) per stage, warm
(extractors created and used once before timing, in this process) and cold (a fresh Python process per
clip: imports, model load, decode and extract), the peak RSS of each cold process, ms per frame of the
FaceLandmarker, and the machine load (``os.getloadavg``) before and after, since the cores may be shared.

Media: the real clips in ../shared/data/clips (when present) and a generated clip (astronaut face, gently
moving, with espeak-ng speech, 640x480, 25 fps; 60 s by default) made with tests/media_factory.py.

    .venv/bin/python benchmarks/bench_extractors.py [--fps 10] [--long 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM (reset by exec, unlike getrusage's ru_maxrss,
    which a child inherits from its parent on Linux), else resource.getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_stages(path: str, fps: float, acoustic=None, visual=None) -> dict:
    """Time each stage once on ``path``; returns seconds per stage and the media duration."""
    from dmd_pipeline.extractors.acoustic import AcousticExtractor
    from dmd_pipeline.extractors.visual import VisualExtractor
    from dmd_pipeline.media import iter_frames, load_audio, probe

    out: dict = {}
    t = time.perf_counter()
    acoustic = acoustic or AcousticExtractor()
    visual = visual or VisualExtractor()
    out["create_extractors_s"] = time.perf_counter() - t
    t = time.perf_counter()
    info = probe(path)
    out["probe_s"] = time.perf_counter() - t
    out["duration_s"] = info.duration
    t = time.perf_counter()
    audio = load_audio(path, info=info)
    out["decode_audio_s"] = time.perf_counter() - t
    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(path, fps=fps, info=info))
    out["decode_frames_s"] = time.perf_counter() - t
    out["n_frames"] = n
    t = time.perf_counter()
    acoustic.extract(audio, 16000)
    out["acoustic_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ff = visual.extract(iter_frames(path, fps=fps, info=info))
    out["visual_incl_decode_s"] = time.perf_counter() - t
    out["visual_s"] = max(out["visual_incl_decode_s"] - out["decode_frames_s"], 0.0)
    out["landmarker_ms_per_frame"] = ff.extras["ms_per_frame"]
    out["face_present"] = float(ff.column("face_present").mean()) if ff.n_frames else 0.0
    return out


def _cold_child(path: str, fps: float) -> None:
    """Entry point of the cold measurement: everything from imports on, in this fresh process."""
    t0 = time.perf_counter()
    import librosa  # noqa: F401
    import mediapipe  # noqa: F401

    res = {"imports_s": time.perf_counter() - t0}
    res.update(run_stages(path, fps))
    res["total_in_process_s"] = time.perf_counter() - t0
    res["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(res))


def cold(path: str, fps: float) -> dict:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--cold-child", path, "--fps", str(fps)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"cold run failed on {path}: {proc.stderr[-2000:]}")
    res = json.loads(line[0][7:])
    res["process_wall_s"] = wall
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", type=float, default=10.0, help="frame rate of the visual stage")
    ap.add_argument("--long", type=float, default=60.0, help="duration of the generated clip (s)")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    ap.add_argument("--cold-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold_child:
        _cold_child(args.cold_child, args.fps)
        return

    from media_factory import MediaFactory

    from dmd_pipeline.extractors.acoustic import AcousticExtractor
    from dmd_pipeline.extractors.visual import VisualExtractor
    from dmd_pipeline.utils import shared_dir

    report: dict = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "fps": args.fps,
        "load_before": os.getloadavg(),
    }
    tmp = tempfile.TemporaryDirectory(prefix="bench_media_")
    factory = MediaFactory(tmp.name)
    t = time.perf_counter()
    long_clip = factory.face_video(duration=args.long, size=(640, 480), fps=25)
    report["generate_long_clip_s"] = time.perf_counter() - t

    clips: list[str] = []
    sd = shared_dir()
    if sd is not None and (sd / "data" / "clips").is_dir():
        clips = sorted(str(p) for p in (sd / "data" / "clips").iterdir() if p.suffix in {".mp4", ".flv"})

    # Warm: one extractor pair, used once on a clip before anything is timed.
    acoustic, visual = AcousticExtractor(), VisualExtractor()
    run_stages(clips[0] if clips else str(long_clip), args.fps, acoustic, visual)
    warm = {c: run_stages(c, args.fps, acoustic, visual) for c in clips}
    warm[str(long_clip)] = run_stages(str(long_clip), args.fps, acoustic, visual)
    report["warm"] = warm
    report["warm_peak_rss_mb"] = _peak_rss_mb()
    visual.close()

    report["cold"] = {}
    for c in ([clips[0]] if clips else []) + [str(long_clip)]:
        report["cold"][c] = cold(c, args.fps)
    report["load_after"] = os.getloadavg()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def print_report(r: dict) -> None:
    stages = ["decode_audio_s", "decode_frames_s", "acoustic_s", "visual_s"]
    print(f"# {r['machine']}; {r['date']}; visual at {r['fps']:g} fps")
    print(f"load average before {tuple(round(x, 2) for x in r['load_before'])}, after "
          f"{tuple(round(x, 2) for x in r['load_after'])}")  # fmt: skip
    print("\n## warm (RTF = seconds per second of media)")
    print("| media | dur s | decode audio | decode frames | acoustic | visual | sum | landmarker ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    for path, w in r["warm"].items():
        d = w["duration_s"]
        rtf = [w[s] / d for s in stages]
        print(f"| {Path(path).name} | {d:.2f} | " + " | ".join(f"{x:.3f}" for x in rtf)
              + f" | {sum(rtf):.3f} | {w['landmarker_ms_per_frame']:.1f} |")  # fmt: skip
    print(f"warm process peak RSS {r['warm_peak_rss_mb']:.0f} MB")
    print("\n## cold (fresh process: imports + model load + all stages)")
    print("| media | dur s | process wall s | imports s | decode audio s | decode frames s | acoustic s (1st call) "
          "| visual s (incl. model load) | RTF (wall/dur) | peak RSS MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path, c in r["cold"].items():
        d = c["duration_s"]
        print(f"| {Path(path).name} | {d:.2f} | {c['process_wall_s']:.2f} | {c['imports_s']:.2f} | "
              f"{c['decode_audio_s']:.2f} | {c['decode_frames_s']:.2f} | {c['acoustic_s']:.2f} | "
              f"{c['visual_s']:.2f} | {c['process_wall_s'] / d:.3f} | {c['peak_rss_mb']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
