"""Word error rate and speed of the Whisper decoding options (issue 11), to choose the default from a table.

Speech with known transcripts:

- ``proxy``: CMU-MOSI test transcripts (../shared/data/mosi/label.csv) spoken by espeak-ng and joined, with
  0.7 s pauses, into ~60 s files (the length ``dmd analyze`` meets in a streaming window);
- ``real``: the real clips in ../shared/data/clips with their transcripts (labels.csv).

Each setting decodes every file with the bundled Whisper tiny.en (CTranslate2 int8, warm model), in
interleaved rounds (setting A, B, C, ... then again) so that machine noise hits all alike; reported are the
median over rounds of the total decode time, its ratio to the current default, and the corpus WER (word
edits / reference words, MOSI-normalised text) of each set. The common options of every setting are those
of ``transcribe._transcribe_whisper``: English, temperature 0, no conditioning on previous text.

    .venv/bin/python benchmarks/bench_asr_options.py [--files 3] [--rounds 3] [--threads 1 2] [--settings 1,2,6]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

# name -> (keyword arguments of WhisperModel.transcribe, batched pipeline?)
SETTINGS: dict[str, tuple[dict, bool]] = {
    "beam 5, word times, VAD (before)": (
        {"beam_size": 5, "word_timestamps": True, "vad_filter": True},
        False,
    ),
    "greedy, word times, VAD": ({"beam_size": 1, "word_timestamps": True, "vad_filter": True}, False),
    "beam 5, no word times, VAD": ({"beam_size": 5, "word_timestamps": False, "vad_filter": True}, False),
    "greedy, no word times, VAD": ({"beam_size": 1, "word_timestamps": False, "vad_filter": True}, False),
    "greedy, without_timestamps, VAD": (
        {"beam_size": 1, "word_timestamps": False, "without_timestamps": True, "vad_filter": True},
        False,
    ),
    "greedy, word times, no VAD": ({"beam_size": 1, "word_timestamps": True, "vad_filter": False}, False),
    "batched VAD x8, greedy, word times": ({"beam_size": 1, "word_timestamps": True, "batch_size": 8}, True),
}
COMMON = {"language": "en", "temperature": 0.0, "condition_on_previous_text": False}


def proxy_files(labels: Path, n_files: int, tmp: Path) -> list[tuple[str, np.ndarray, str]]:
    """~60 s files of espeak-ng speech made of consecutive MOSI test transcripts, 0.7 s apart."""
    from asr_effect_mosi import synthesize

    with open(labels, newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh) if r["mode"] == "test" and len(r["text"].split()) >= 4]
    out, k = [], 0
    pause = np.zeros(int(0.7 * 16000), np.float32)
    for f in range(n_files):
        parts, words, dur = [], [], 0.0
        while dur < 60.0 and k < len(texts):
            audio, sr = synthesize(texts[k], tmp / f"s{k}.wav")
            parts += [audio, pause]
            words.append(texts[k])
            dur += len(audio) / sr + 0.7
            k += 1
        out.append((f"proxy_{f}", np.concatenate(parts), " ".join(words)))
    return out


def real_files(folder: Path) -> list[tuple[str, np.ndarray, str]]:
    """The real clips and their transcripts."""
    from dmd_pipeline import media

    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [(r["file"], media.load_audio(folder / r["file"]), r["transcript"]) for r in rows]


def decode(model, batched, audio: np.ndarray, kw: dict, is_batched: bool) -> str:
    from dmd_pipeline.extractors.transcribe import normalize_text

    runner = batched if is_batched else model
    segments, _ = runner.transcribe(audio, **COMMON, **kw)
    return normalize_text(" ".join(s.text for s in segments), mosi=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3, help="number of ~60 s proxy files")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CTranslate2 threads to compare")
    ap.add_argument("--labels", default=str(REPO.parent / "shared" / "data" / "mosi" / "label.csv"))
    ap.add_argument(
        "--settings", default="", help="comma list of setting numbers (1-based, in the order above); default all"
    )
    args = ap.parse_args()
    names = list(SETTINGS)
    chosen = [names[int(k) - 1] for k in args.settings.split(",") if k.strip()] or names
    from asr_effect_mosi import corpus_wer
    from faster_whisper import BatchedInferencePipeline

    from dmd_pipeline.extractors.transcribe import normalize_text, whisper_model

    tmp = tempfile.TemporaryDirectory()
    sets = {"proxy": proxy_files(Path(args.labels), args.files, Path(tmp.name))}
    clips = REPO.parent / "shared" / "data" / "clips"
    if (clips / "labels.csv").is_file():
        sets["real"] = real_files(clips)
    seconds = {name: sum(len(a) for _, a, _ in files) / 16000 for name, files in sets.items()}
    print(f"date {time.strftime('%Y-%m-%d %H:%M')}  load {os.getloadavg()}  cpus {os.cpu_count()}")
    print("audio: " + ", ".join(f"{n} {len(f)} files {seconds[n]:.0f} s" for n, f in sets.items()))
    runs = [(name, thr) for thr in args.threads for name in chosen]
    times: dict[tuple[str, int], dict[str, list[float]]] = {r: {s: [] for s in sets} for r in runs}
    wer: dict[tuple[str, int], dict[str, float]] = {}
    models = {}
    for thr in args.threads:
        m = whisper_model(None, cpu_threads=thr)
        models[thr] = (m, BatchedInferencePipeline(m))
        decode(m, None, sets["proxy"][0][1][: 16000 * 5], {"beam_size": 1}, False)  # warm-up
    for rnd in range(args.rounds):
        for run in runs:
            name, thr = run
            kw, is_batched = SETTINGS[name]
            model, batched = models[thr]
            for set_name, files in sets.items():
                t0 = time.perf_counter()
                hyps = [decode(model, batched, a, kw, is_batched) for _, a, _ in files]
                times[run][set_name].append(time.perf_counter() - t0)
                if rnd == 0:
                    refs = [normalize_text(t, mosi=True) for _, _, t in files]
                    wer.setdefault(run, {})[set_name] = corpus_wer(refs, hyps)
        print(f"round {rnd + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    base = runs[0]
    print()
    head = "| setting | threads | " + " | ".join(f"{s} WER % | {s} RTF | {s} time vs before" for s in sets)
    print(head + " |")
    print("|" + "---|" * (2 + 3 * len(sets)))
    for run in runs:
        cells = []
        for s in sets:
            med = statistics.median(times[run][s])
            ref = statistics.median(times[base][s])
            cells += [f"{100 * wer[run][s]:.1f}", f"{med / seconds[s]:.3f}", f"{med / ref:.2f}x"]
        print(f"| {run[0]} | {run[1]} | " + " | ".join(cells) + " |")
    print(f"\nload after {os.getloadavg()}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
