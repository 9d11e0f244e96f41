"""How much speech Silero VAD finds in real speech and in what is not speech: the measurement behind the
voice channel's minimum (``MIN_VOICE_SPEECH_S``), below which the voice model answers ``n/a``.

Speech: a sample of the real clips in ``../shared/data`` (RAVDESS sentences, TurEV-DB single Turkish words,
URDU talk-show speech, nEMO Polish, EMOVO Italian, the CREMA-D and CMU-MOSI clips). Not speech, made with
ffmpeg/numpy: sine tones, chords, sweeps, clicks, white and pink noise, hum, digital silence, and speech
cut to 0.1-0.5 s. For each: detected speech seconds
(:func:`dmd_pipeline.extractors.vad.speech_seconds`), printed as one JSON line per set with min / 5th
percentile / median / max, then the gap between the largest non-speech value and the smallest speech one.

Usage (reads ../shared in place, writes nothing)::

    .venv/bin/python benchmarks/voice_evidence.py [--per-set 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import numpy as np

from dmd_pipeline.extractors.vad import speech_seconds
from dmd_pipeline.media import load_audio
from dmd_pipeline.utils import REPO_ROOT

DATA = REPO_ROOT.parent / "shared" / "data"
SR = 16000


def speech_sets(per_set: int, rng: random.Random) -> dict[str, list[Path]]:
    sets: dict[str, list[Path]] = {}
    rav = DATA / "ravdess"
    with (rav / "labels.csv").open(newline="") as fh:
        files = [rav / r["file"] for r in csv.DictReader(fh)]
    sets["ravdess (sentences)"] = rng.sample(files, min(per_set, len(files)))
    with (DATA / "speech" / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for corpus in sorted({r["corpus"] for r in rows}):
        files = [DATA / "speech" / r["file"] for r in rows if r["corpus"] == corpus]
        sets[f"{corpus}"] = rng.sample(files, min(per_set, len(files)))
    sets["crema-d + mosi clips"] = sorted(
        p for p in (DATA / "clips").iterdir() if p.suffix in (".flv", ".mp4")
    )
    return sets


def synthetic(rng: np.random.Generator, speech: np.ndarray) -> dict[str, list[np.ndarray]]:
    t = np.arange(int(30 * SR)) / SR
    tones = [0.3 * np.sin(2 * np.pi * f * t) for f in (110, 220, 440, 1000, 3000)]
    chords = [
        0.1 * sum(np.sin(2 * np.pi * f * t) for f in fs) for fs in ((220, 277, 330), (196, 247, 294, 392))
    ]
    sweeps = [0.3 * np.sin(2 * np.pi * (100 + 2000 * t / 30) * t)]
    beeps = [0.3 * np.sin(2 * np.pi * 440 * t) * ((t % 1.0) < 0.3)]  # 0.3 s beeps, once a second
    clicks = [np.where((np.arange(t.size) % 1600) == 0, 0.8, 0.0)]
    white = [0.1 * rng.standard_normal(t.size)]
    pink = np.cumsum(rng.standard_normal(t.size))
    pink = [0.3 * (pink - np.convolve(pink, np.ones(801) / 801, "same")) / np.abs(pink).max()]
    hum = [0.2 * np.sin(2 * np.pi * 50 * t) + 0.05 * np.sin(2 * np.pi * 150 * t)]
    silence = [np.zeros(t.size), np.zeros(int(0.1 * SR))]
    cuts = {f"speech cut to {d} s": [speech[int(o * SR) : int((o + d) * SR)] for o in (0.8, 1.2, 1.6)]
            for d in (0.1, 0.2, 0.3, 0.5)}  # fmt: skip
    return {
        "tones (30 s)": tones,
        "chords (30 s)": chords,
        "sweep (30 s)": sweeps,
        "beeps (30 s)": beeps,
        "clicks (30 s)": clicks,
        "white noise (30 s)": white,
        "pink-ish noise (30 s)": pink,
        "mains hum (30 s)": hum,
        "digital silence": silence,
        **cuts,
    }


def _stats(name: str, values: list[float]) -> dict[str, object]:
    v = np.asarray(values)
    return {
        "set": name,
        "n": int(v.size),
        "min": round(float(v.min()), 3),
        "p5": round(float(np.percentile(v, 5)), 3),
        "median": round(float(np.median(v)), 3),
        "max": round(float(v.max()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-set", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    speech_min, other_max = float("inf"), 0.0
    first_speech = None
    for name, files in speech_sets(args.per_set, rng).items():
        values = []
        for f in files:
            audio = load_audio(f, sr=SR)
            if first_speech is None and name.startswith("ravdess"):
                first_speech = np.asarray(audio, dtype=np.float32)
            values.append(speech_seconds(audio))
        speech_min = min(speech_min, min(values))
        print(json.dumps({"kind": "speech", **_stats(name, values)}), flush=True)
    assert first_speech is not None
    for name, clips in synthetic(np.random.default_rng(args.seed), first_speech).items():
        values = [speech_seconds(np.asarray(c, dtype=np.float32)) for c in clips]
        other_max = max(other_max, max(values))
        print(json.dumps({"kind": "not speech", **_stats(name, values)}), flush=True)
    print(
        json.dumps(
            {"smallest speech": round(speech_min, 3), "largest not-speech": round(other_max, 3),
             "seconds": round(time.perf_counter() - t0, 1)}
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
