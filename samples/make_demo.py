"""Make the demo clip ``samples/out/demo.mp4`` with the project's own means (no downloads).

A still face (scikit-image's astronaut photo) with speech synthesized by espeak-ng from a short review that
turns from negative to positive, muxed by ffmpeg into an H.264/AAC mp4 (about 12 s). By default no
transcript sidecar is written, so ``dmd analyze`` shows speech recognition; ``--with-sidecar`` adds
``demo.txt`` (the exact text). Idempotent: an up-to-date clip is left alone. Prints the clip's path.

    python samples/make_demo.py [--out samples/out/demo.mp4] [--with-sidecar] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REVIEW = (
    "I expected a lot from this film, but the first hour was dull, slow and honestly painful to sit through. "
    "Then the story finally came alive. The ending was wonderful, and I left the theater smiling."
)
VOICE, SPEED = "en-us", 150
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "demo.mp4"


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        sys.exit(f"make_demo: {tool} is not installed (Debian: apt-get install {tool})")
    return exe


def _stamp() -> str:
    """Hash of everything that shapes the clip, so a changed recipe rebuilds it."""
    recipe = {"text": REVIEW, "voice": VOICE, "speed": SPEED, "image": "astronaut-512", "v": 1}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def make_demo(out: Path = DEFAULT_OUT, with_sidecar: bool = False, force: bool = False) -> Path:
    """Build the demo clip at ``out`` (and ``demo.txt`` when ``with_sidecar``); returns its path."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp_file = out.with_name(f".{out.name}.stamp")
    sidecar = out.with_suffix(".txt")
    if with_sidecar:
        sidecar.write_text(REVIEW + "\n", encoding="utf-8")
    elif sidecar.exists():
        sidecar.unlink()  # a stale sidecar would hide the ASR path
    if (
        not force
        and out.is_file()
        and out.stat().st_size > 0
        and stamp_file.is_file()
        and stamp_file.read_text().strip() == _stamp()
    ):
        return out

    espeak, ffmpeg = _need("espeak-ng"), _need("ffmpeg")
    import numpy as np
    from skimage import data, io, transform

    with tempfile.TemporaryDirectory(prefix="dmd_demo_") as td:
        tmp = Path(td)
        img = data.astronaut()
        img = (transform.resize(img, (512, 512), anti_aliasing=True) * 255).astype(np.uint8)
        face = tmp / "face.png"
        io.imsave(str(face), img, check_contrast=False)
        speech = tmp / "speech.wav"
        subprocess.run([espeak, "-v", VOICE, "-s", str(SPEED), "-w", str(speech), REVIEW], check=True)
        partial = tmp / "demo.mp4"
        cmd = [
            ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-loop", "1", "-framerate", "25", "-i", str(face), "-i", str(speech),
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "96k", "-ar", "44100", "-shortest", "-movflags", "+faststart",
            str(partial),
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
        shutil.move(str(partial), str(out.with_name(f".{out.name}.partial")))
        os.replace(out.with_name(f".{out.name}.partial"), out)  # atomic: never a half-written demo.mp4
    stamp_file.write_text(_stamp() + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output mp4 (default: samples/out/demo.mp4)"
    )
    ap.add_argument("--with-sidecar", action="store_true", help="also write the transcript as <out>.txt")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    print(make_demo(args.out, args.with_sidecar, args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
