"""Speed of the speech stages: real-time factor (processing seconds per second of audio), warm models.

Measures Whisper tiny.en (VAD on/off), pocketsphinx ASR, forced alignment and MiniLM text encoding on the
shared real clips (../shared/data/clips, when present) and on ~60 s of synthesized speech (espeak-ng).
Prints the numbers; it writes nothing. Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_speech.py``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from dmd_pipeline.extractors.align import _decoder, align_transcript, align_words  # noqa: E402
from dmd_pipeline.extractors.text import TextEncoder  # noqa: E402
from dmd_pipeline.extractors.transcribe import Segment, Transcript, to_16k, transcribe  # noqa: E402
from dmd_pipeline.utils import shared_dir  # noqa: E402

SR = 16000
SENTENCES = [
    "i went to see the new movie last night with a few friends",
    "honestly the story was a little slow at the start",
    "but the second half was really exciting and the acting was great",
    "the music fit every scene and the pictures looked beautiful",
    "i did not like the ending because it felt rushed",
    "still i would recommend it to anyone who likes science fiction",
    "the main actor gave one of the best performances of his career",
    "some of the jokes did not work for me at all",
    "overall it is a solid film and worth the price of a ticket",
]


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def synth_long(folder: Path, target_s: float = 60.0) -> tuple[np.ndarray, list[str]]:
    """~60 s of espeak-ng speech: sentences separated by 0.6 s of silence."""
    parts, texts, n = [], [], 0
    k = 0
    while n < target_s * SR:
        text = SENTENCES[k % len(SENTENCES)]
        wav = folder / f"s{k}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
        a, sr = sf.read(wav, dtype="float32")
        a = to_16k(a, sr)
        parts += [a, np.zeros(int(0.6 * SR), np.float32)]
        texts.append(text)
        n += len(a) + int(0.6 * SR)
        k += 1
    return np.concatenate(parts), texts


def main() -> None:
    rows: list[tuple[str, str, float, float]] = []  # (stage, input, seconds, audio seconds)

    def add(stage: str, name: str, secs: float, dur: float) -> None:
        rows.append((stage, name, secs, dur))
        print(f"{stage:32s} {name:28s} {secs:7.3f} s  audio {dur:6.2f} s  RTF {secs / dur:.3f}", flush=True)

    # cold loads (once per process)
    silence = np.zeros(SR, np.float32)
    t, _ = timed(lambda: transcribe(silence, SR, "whisper"))
    print(f"whisper cold load + 1 s decode: {t:.2f} s")
    t, _ = timed(lambda: _decoder("asr"))
    print(f"pocketsphinx ASR decoder cold load: {t:.2f} s")
    t, _ = timed(lambda: align_words(silence, SR, "hello"))
    print(f"pocketsphinx aligner cold load: {t:.2f} s")
    t, enc = timed(lambda: TextEncoder())
    print(f"MiniLM cold load (incl. torch/transformers import): {t:.2f} s")

    shared = shared_dir()
    clips = shared / "data" / "clips" if shared else None
    if clips and clips.is_dir():
        from dmd_pipeline.media import load_audio

        with open(clips / "labels.csv", newline="") as fh:
            labels = {r["file"]: r["transcript"] for r in csv.DictReader(fh)}
        for name, text in labels.items():
            audio = load_audio(clips / name)
            dur = len(audio) / SR
            for vad in (False, True):
                t, tr = timed(lambda a=audio, v=vad: transcribe(a, SR, "whisper", vad=v), repeat=2)
                add(f"whisper tiny.en vad={vad}", name, t, dur)
            t, _ = timed(lambda a=audio: transcribe(a, SR, "pocketsphinx"), repeat=2)
            add("pocketsphinx ASR", name, t, dur)
            t, words = timed(lambda a=audio, x=text: align_words(a, SR, x), repeat=3)
            add(f"forced alignment ({words[0].source})", name, t, dur)

    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            audio, texts = synth_long(Path(tmp))
        dur = len(audio) / SR
        name = f"synth {dur:.0f} s"
        for vad in (False, True):
            t, tr = timed(lambda v=vad: transcribe(audio, SR, "whisper", vad=v))
            add(f"whisper tiny.en vad={vad}", name + f" ({len(tr.segments)} segs)", t, dur)
        t, tr_ps = timed(lambda: transcribe(audio, SR, "pocketsphinx"))
        add("pocketsphinx ASR", name + f" ({len(tr_ps.segments)} segs)", t, dur)
        t, al = timed(lambda: align_transcript(tr, audio, SR))
        forced = sum(w.source == "forced" for w in al.words)
        add("align_transcript (whisper segs)", name + f" ({forced}/{len(al.words)} forced)", t, dur)
        whole = Transcript([Segment(0.0, dur, " ".join(texts), [])], "given")
        t, al = timed(lambda: align_transcript(whole, audio, SR))
        add("forced alignment, one 60 s utt", name + f" ({al.words[0].source})", t, dur)

    # text encoder: single vs batched, MOSI transcripts when available
    utts = [s.split() for s in SENTENCES] * 50
    if shared and (shared / "data" / "mosi" / "label.csv").is_file():
        with open(shared / "data" / "mosi" / "label.csv", newline="") as fh:
            utts = [r["text"].split() for r in csv.DictReader(fh)][:500]
    t1, _ = timed(lambda: [enc.encode(u) for u in utts])
    t2, _ = timed(lambda: enc.encode_batch(utts, batch_size=64))
    print(
        f"MiniLM encode, {len(utts)} utterances: single {t1 * 1000 / len(utts):.1f} ms/utt, "
        f"batched(64) {t2 * 1000 / len(utts):.1f} ms/utt ({t1 / t2:.1f}x)"
    )

    print("\nmean RTF per stage:")
    stages = sorted({r[0] for r in rows})
    for s in stages:
        sel = [r for r in rows if r[0] == s]
        print(f"  {s:34s} clips+synth mean RTF {np.mean([r[2] / r[3] for r in sel]):.3f}  (n={len(sel)})")


if __name__ == "__main__":
    main()
