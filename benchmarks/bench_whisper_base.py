"""Whisper base encoder: torch (every layer) vs CTranslate2 ``encode`` (final state only), time per second of
audio and agreement, on RAVDESS clips (``../shared``) or, without them, on generated voiced tones.

Per clip, interleaved in rounds: the log-mel once, then (a) the torch encoder (all 8 states), (b) CTranslate2
float32 encode, (c) CTranslate2 int8 encode, (d) Whisper tiny.en int8 encode (today's ``whisper`` setting),
and the full extractor of the ``whisper-base-layers`` setting (mel + chunks + layer stacking). Medians of
seconds per second of audio; agreement of the final state with CTranslate2 float32 (max |diff|, RMS diff, RMS
of the reference). One thread each (``--threads``).

    .venv/bin/python benchmarks/bench_whisper_base.py [--clips 20] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time

import numpy as np


def _clips(n: int) -> list[tuple[str, np.ndarray]]:
    from dmd_pipeline.utils import shared_dir

    root = shared_dir()
    lab = root / "data" / "ravdess" / "labels.csv" if root else None
    if lab is None or not lab.is_file():
        rng = np.random.default_rng(0)
        out = []
        for i in range(n):
            d = 2.5 + 2.0 * rng.random()
            t = np.arange(int(d * 16000)) / 16000
            y = 0.2 * np.sin(2 * np.pi * (140 + 30 * i % 60) * t) + 0.01 * rng.standard_normal(t.size)
            out.append((f"tone{i}", y.astype(np.float32)))
        return out
    import soundfile as sf

    from dmd_pipeline.extractors.transcribe import to_16k

    rows = list(csv.DictReader(lab.open(encoding="utf-8")))
    picks = rows[:: max(1, len(rows) // n)][:n]
    out = []
    for r in picks:
        y, sr = sf.read(lab.parent / r["file"], dtype="float32")
        y = y.mean(axis=1) if y.ndim == 2 else y
        out.append((r["file"], to_16k(y, sr) if sr != 16000 else y))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import ctranslate2
    import torch

    from dmd_pipeline.extractors.whisper_layers import WhisperLayersExtractor, load_torch_encoder, log_mel
    from dmd_pipeline.model_files import whisper_base_dir, whisper_model_dir

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    enc = load_torch_encoder()
    load_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    ct_f32 = ctranslate2.models.Whisper(
        str(whisper_base_dir()), device="cpu", compute_type="float32", intra_threads=args.threads
    )
    load_ct2 = time.perf_counter() - t0
    ct_i8 = ctranslate2.models.Whisper(
        str(whisper_base_dir()), device="cpu", compute_type="int8", intra_threads=args.threads
    )
    tiny = ctranslate2.models.Whisper(
        str(whisper_model_dir()), device="cpu", compute_type="int8", intra_threads=args.threads
    )
    layers = WhisperLayersExtractor()
    clips = _clips(args.clips)
    total_s = sum(len(y) for _, y in clips) / 16000
    print(
        f"{len(clips)} clips, {total_s:.1f} s of audio; load: torch encoder {load_torch:.2f} s, CT2 f32 {load_ct2:.2f} s"
    )
    print(f"load average before: {os.getloadavg()}")

    def ct(model, mel: np.ndarray) -> np.ndarray:
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
        return np.asarray(model.encode(sv, to_cpu=True), dtype=np.float32)[0]

    times: dict[str, list[float]] = {
        k: [] for k in ("torch", "ct2_f32", "ct2_i8", "tiny_i8", "setting_layers", "mel")
    }
    agree = {
        "torch_vs_f32_max": 0.0,
        "torch_vs_f32_rms": [],
        "i8_vs_f32_rms": [],
        "i8_vs_f32_max": 0.0,
        "ref_rms": [],
    }
    for rnd in range(args.rounds):
        for _, y in clips:
            dur = len(y) / 16000
            t = time.perf_counter()
            mel = log_mel(y)
            times["mel"].append((time.perf_counter() - t) / dur)
            jobs = {
                "torch": lambda mel=mel: enc(mel)[-1][0].numpy(),
                "ct2_f32": lambda mel=mel: ct(ct_f32, mel),
                "ct2_i8": lambda mel=mel: ct(ct_i8, mel),
                "tiny_i8": lambda mel=mel: ct(tiny, mel),
                "setting_layers": lambda y=y: layers.hidden_states(y),
            }
            order = list(jobs) if rnd % 2 == 0 else list(reversed(jobs))  # interleaved, alternating order
            outs = {}
            for k in order:
                t = time.perf_counter()
                outs[k] = jobs[k]()
                times[k].append((time.perf_counter() - t) / dur)
            if rnd == 0:
                ref = outs["ct2_f32"]
                d = outs["torch"] - ref
                agree["torch_vs_f32_max"] = max(agree["torch_vs_f32_max"], float(np.abs(d).max()))
                agree["torch_vs_f32_rms"].append(float(np.sqrt(np.mean(d**2))))
                d8 = outs["ct2_i8"] - ref
                agree["i8_vs_f32_max"] = max(agree["i8_vs_f32_max"], float(np.abs(d8).max()))
                agree["i8_vs_f32_rms"].append(float(np.sqrt(np.mean(d8**2))))
                agree["ref_rms"].append(float(np.sqrt(np.mean(ref**2))))
    print(f"load average after: {os.getloadavg()}")
    print("median seconds of work per second of audio (ms/s):")
    for k, v in times.items():
        print(f"  {k:15s} {1000 * statistics.median(v):8.1f}")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"ratio torch / ct2_f32: {med['torch'] / med['ct2_f32']:.2f}; torch / ct2_i8: {med['torch'] / med['ct2_i8']:.2f}"
    )
    print(
        f"agreement with CT2 float32 (final state): torch max |d| {agree['torch_vs_f32_max']:.2e}, "
        f"RMS d median {statistics.median(agree['torch_vs_f32_rms']):.2e}; int8 max |d| {agree['i8_vs_f32_max']:.2f}, "
        f"RMS d median {statistics.median(agree['i8_vs_f32_rms']):.3f}; reference RMS {statistics.median(agree['ref_rms']):.3f}"
    )


if __name__ == "__main__":
    main()
