"""Speech in other languages (issue 21): language identification, WER by language, tiny.en vs base on English,
and what Whisper's translation to English costs and gives. Numbers for BENCHMARKS.md, "Speech in other
languages".

Data (``../shared/data``): the valid speakers of the four corpora in ``speech/labels.csv`` (nEMO Polish with
transcripts, EMOVO Italian, TurEV-DB Turkish, URDU Urdu), and the English clips with transcripts: the real
clips of ``clips/labels.csv`` (2 CMU-MOSI, 6 CREMA-D) and RAVDESS's valid actors (``ravdess/labels.csv``).
Clips are drawn at random with fixed seeds. Every decode is the project's own (``transcribe`` options:
greedy, temperature 0, VAD, word times; CTranslate2 int8, one thread, warm models).

Parts (``--parts``, all by default):

- ``langid``: :func:`dmd_pipeline.extractors.language.detect` (Whisper base, VAD) per clip: accuracy per
  corpus and on the English clips, median probability, seconds per clip, the wrong answers;
- ``polish``: Whisper base WER on nEMO valid (``language="pl"``), normalised by
  :func:`~dmd_pipeline.extractors.words.normalize_text` (lower case, no punctuation);
- ``english``: tiny.en and base (``language="en"``) on the English clips, in interleaved rounds
  (tiny.en, base, then again): corpus WER and the median over rounds of the seconds per clip;
- ``translate``: nEMO valid sentences (3 speakers' renditions each) decoded by Whisper base with the
  ``transcribe`` and the ``translate`` task: seconds of each, and the sentiment ``mosi-text-minilm`` gives
  the translation: its spread within renditions of one sentence against its spread over all.

    .venv/bin/python benchmarks/bench_languages.py [--per-corpus 40] [--polish 150] [--english-ravdess 40]
        [--rounds 2] [--sentences 10] [--parts langid,polish,english,translate] [--out result.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
DATA = REPO.parent / "shared" / "data"
OPTIONS = {"beam_size": 1, "temperature": 0.0, "condition_on_previous_text": False, "vad_filter": True}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def english_clips(n_ravdess: int) -> list[tuple[Path, str]]:
    """(path, transcript) of the real English clips and ``n_ravdess`` random RAVDESS valid clips."""
    out = [(DATA / "clips" / r["file"], r["transcript"]) for r in _rows(DATA / "clips" / "labels.csv")]
    rav = [r for r in _rows(DATA / "ravdess" / "labels.csv") if r["split"] == "valid"]
    random.Random(3).shuffle(rav)
    return out + [(DATA / "ravdess" / r["file"], r["transcript"]) for r in rav[:n_ravdess]]


def decode(model, audio: np.ndarray, language: str, task: str = "transcribe") -> tuple[str, float]:
    """(text, seconds) of one decode."""
    t0 = time.perf_counter()
    segments, _ = model.transcribe(audio, language=language, task=task, word_timestamps=True, **OPTIONS)
    text = " ".join(s.text.strip() for s in segments)
    return text, time.perf_counter() - t0


def part_langid(per_corpus: int, english: list[tuple[Path, str]]) -> dict:
    from dmd_pipeline import media
    from dmd_pipeline.extractors.language import detect
    from dmd_pipeline.extractors.transcribe import whisper_base_model

    model = whisper_base_model()
    rows = _rows(DATA / "speech" / "labels.csv")
    sets: dict[str, list[tuple[Path, str]]] = {}
    for corpus in ("nemo", "emovo", "turev", "urdu"):
        valid = [r for r in rows if r["corpus"] == corpus and r["split"] == "valid"]
        random.Random(0).shuffle(valid)
        sets[corpus] = [(DATA / "speech" / r["file"], r["language"]) for r in valid[:per_corpus]]
    sets["english"] = [(p, "en") for p, _ in english]
    out = {}
    for name, items in sets.items():
        hits, probs, secs, wrong = 0, [], [], {}
        for path, truth in items:
            audio = media.load_audio(path)
            t0 = time.perf_counter()
            found = detect(audio, model)
            secs.append(time.perf_counter() - t0)
            probs.append(found["probability"])
            if found["code"] == truth:
                hits += 1
            else:
                wrong[found["code"]] = wrong.get(found["code"], 0) + 1
        out[name] = {
            "n": len(items),
            "accuracy": hits / len(items),
            "median_probability": statistics.median(probs),
            "median_s_per_clip": statistics.median(secs),
            "wrong": dict(sorted(wrong.items(), key=lambda kv: -kv[1])),
        }
        print(name, out[name], flush=True)
    return out


def part_polish(n: int) -> dict:
    from asr_effect_mosi import corpus_wer

    from dmd_pipeline import media
    from dmd_pipeline.extractors.transcribe import whisper_base_model
    from dmd_pipeline.extractors.words import normalize_text

    model = whisper_base_model()
    valid = [r for r in _rows(DATA / "speech" / "labels.csv") if r["corpus"] == "nemo" and r["split"] == "valid"]
    random.Random(1).shuffle(valid)
    refs, hyps, secs, durs = [], [], [], []
    for r in valid[:n]:
        audio = media.load_audio(DATA / "speech" / r["file"])
        text, s = decode(model, audio, "pl")
        refs.append(normalize_text(r["transcript"]))
        hyps.append(normalize_text(text))
        secs.append(s)
        durs.append(len(audio) / 16000)
    out = {
        "n": len(refs),
        "of": len(valid),
        "wer": corpus_wer(refs, hyps),
        "median_s_per_clip": statistics.median(secs),
        "median_clip_s": statistics.median(durs),
        "examples": [{"ref": a, "hyp": b} for a, b in list(zip(refs, hyps, strict=True))[:5]],
    }
    print("polish", out, flush=True)
    return out


def part_english(english: list[tuple[Path, str]], rounds: int) -> dict:
    from asr_effect_mosi import corpus_wer

    from dmd_pipeline import media
    from dmd_pipeline.extractors.transcribe import whisper_base_model, whisper_model
    from dmd_pipeline.extractors.words import normalize_text

    models = {"tiny.en": whisper_model(None), "base": whisper_base_model()}
    audio = [media.load_audio(p) for p, _ in english]
    refs = [normalize_text(t, mosi=True) for _, t in english]
    totals: dict[str, list[float]] = {k: [] for k in models}
    hyps: dict[str, list[str]] = {}
    for _ in range(rounds):
        for name, model in models.items():  # interleaved: tiny.en, base, tiny.en, base ...
            texts, t0 = [], time.perf_counter()
            for a in audio:
                texts.append(normalize_text(decode(model, a, "en")[0], mosi=True))
            totals[name].append(time.perf_counter() - t0)
            hyps[name] = texts
    n_real = sum(1 for p, _ in english if p.parent.name == "clips")
    out = {}
    for name in models:
        out[name] = {
            "wer_all": corpus_wer(refs, hyps[name]),
            "wer_real_clips": corpus_wer(refs[:n_real], hyps[name][:n_real]),
            "wer_ravdess": corpus_wer(refs[n_real:], hyps[name][n_real:]) if len(refs) > n_real else None,
            "median_s_per_clip": statistics.median(totals[name]) / len(audio),
        }
    out["base_over_tiny_time"] = statistics.median(totals["base"]) / statistics.median(totals["tiny.en"])
    out["n"] = {"real_clips": n_real, "ravdess_valid": len(english) - n_real, "rounds": rounds}
    print("english", out, flush=True)
    return out


def part_translate(n_sentences: int) -> dict:
    from dmd_pipeline import media
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.data.text_only import predict_texts
    from dmd_pipeline.extractors.transcribe import whisper_base_model

    model = whisper_base_model()
    text_model = load_model("mosi-text-minilm")
    valid = [r for r in _rows(DATA / "speech" / "labels.csv") if r["corpus"] == "nemo" and r["split"] == "valid"]
    random.Random(2).shuffle(valid)
    by: dict[str, list[dict[str, str]]] = {}
    for r in valid:
        by.setdefault(r["transcript"], []).append(r)
    sentences = [s for s, rs in by.items() if len(rs) >= 3][:n_sentences]
    recs = []
    for s in sentences:
        for r in by[s][:3]:
            audio = media.load_audio(DATA / "speech" / r["file"])
            polish, t_pl = decode(model, audio, "pl")
            english, t_en = decode(model, audio, "pl", task="translate")
            recs.append({"sentence": s, "label": r["label"], "polish": polish, "translation": english,
                         "s_transcribe": t_pl, "s_translate": t_en})  # fmt: skip
    scores = predict_texts(text_model.system, text_model.meta, [r["translation"] or "." for r in recs])[:, 0]
    for r, sc in zip(recs, scores, strict=True):
        r["score"] = round(float(sc), 3)
    groups: dict[str, list[float]] = {}
    for r in recs:
        groups.setdefault(r["sentence"], []).append(r["score"])
    out = {
        "n": len(recs),
        "median_s_transcribe": statistics.median(r["s_transcribe"] for r in recs),
        "median_s_translate": statistics.median(r["s_translate"] for r in recs),
        "score_sd_within_sentence": statistics.mean(statistics.pstdev(v) for v in groups.values()),
        "score_sd_overall": statistics.pstdev([r["score"] for r in recs]),
        "examples": recs[:: max(1, len(recs) // 8)],
    }
    print("translate", {k: v for k, v in out.items() if k != "examples"}, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-corpus", type=int, default=40)
    ap.add_argument("--polish", type=int, default=150)
    ap.add_argument("--english-ravdess", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=10)
    ap.add_argument("--parts", default="langid,polish,english,translate")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not (DATA / "speech" / "labels.csv").is_file():
        sys.exit(f"{DATA / 'speech'} is absent: nothing to measure")
    english = english_clips(args.english_ravdess)
    parts = args.parts.split(",")
    out: dict = {"load_before": os.getloadavg()}
    if "langid" in parts:
        out["langid"] = part_langid(args.per_corpus, english)
    if "polish" in parts:
        out["polish"] = part_polish(args.polish)
    if "english" in parts:
        out["english"] = part_english(english, args.rounds)
    if "translate" in parts:
        out["translate"] = part_translate(args.sentences)
    out["load_after"] = os.getloadavg()
    text = json.dumps(out, indent=1, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
