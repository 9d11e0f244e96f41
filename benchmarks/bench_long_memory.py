"""Peak memory of ``dmd analyze`` against the length of the file: streaming keeps it flat (issue 11).

Makes the generated 60 s clip (astronaut face, espeak-ng speech, 640x480, 25 fps; tests/media_factory.py),
loops it losslessly (``ffmpeg -stream_loop``, codecs copied) into longer files, and analyses each in a
fresh process with the bundled default models (as a user runs it; Whisper ASR). Prints per file: wall
time, real-time factor, segments, streaming windows, peak RSS (VmHWM of the analysing process) and the
ratio of each peak to the 60 s file's.

    .venv/bin/python benchmarks/bench_long_memory.py [--minutes 1 10 60] [--window 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

CHILD = r"""
import json, sys, time
from dmd_pipeline import analyze
t = time.perf_counter()
r = analyze(sys.argv[1], stream_window_s=float(sys.argv[2])).to_dict()
wall = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
streamed = [w for w in r["warnings"] if "streaming windows" in w]
print(json.dumps({"wall_s": wall, "peak_mb": int(hwm) / 1024.0, "segments": len(r["segments"]),
                  "words": r["transcript"]["n_words"], "duration": r["duration"], "headline": r["headline"],
                  "streamed": streamed[0] if streamed else ""}))
"""


def looped(src: Path, minutes: float, folder: Path) -> Path:
    """``src`` (60 s) repeated to ``minutes`` minutes, codecs copied (seconds to make, no re-encoding)."""
    if minutes <= 1:
        return src
    out = folder / f"long_{minutes:g}min.mp4"
    if not out.exists():
        loops = int(round(minutes)) - 1
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-stream_loop",
                str(loops),
                "-i",
                str(src),
                "-c",
                "copy",
                str(out),
            ],
            check=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--window", type=float, default=60.0, help="stream_window_s (0: analyse whole)")
    ap.add_argument("--keep", default=None, help="folder for the generated files (default: a temp folder)")
    args = ap.parse_args()
    from bench_pipeline import long_clip

    tmp = None
    if args.keep:
        folder = Path(args.keep)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        folder = Path(tmp.name)
    src, _text = long_clip(str(folder), 60.0)
    print(f"date {time.strftime('%Y-%m-%d %H:%M')}  load {os.getloadavg()}  window {args.window:g} s")
    base = None
    for minutes in args.minutes:
        path = looped(Path(src), minutes, folder)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(args.window)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"{minutes:g} min: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        base = base or r["peak_mb"]
        print(
            f"{minutes:>5g} min  wall {r['wall_s']:7.1f} s  RTF {r['wall_s'] / r['duration']:.3f}  "
            f"segments {r['segments']:5d}  words {r['words']:6d}  peak RSS {r['peak_mb']:7.0f} MB  "
            f"x{r['peak_mb'] / base:.3f} of the first  {r['streamed'] or 'not streamed'}",
            flush=True,
        )
    print(f"load after {os.getloadavg()}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
