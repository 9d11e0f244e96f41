"""How much worse the bundled text-only model scores on ASR transcripts than on manual ones (proxy).

CMU-MOSI's media are not available here, so speech is synthesised: every transcript of one split of a
label CSV (MMSA / CMU-MOSI layout) is spoken by espeak-ng (voice en-us, default speed, resampled to a
16 kHz wav in a temporary folder), transcribed with the project's ASR path
(:func:`dmd_pipeline.extractors.transcribe.transcribe`, ``engine="whisper"``, ``--language en``: English by
``--asr-model``, Whisper base by default, or the bundled tiny.en) and
normalised to MOSI style (:func:`~dmd_pipeline.extractors.transcribe.normalize_text` with ``mosi=True``).
``mosi-text-minilm`` then scores (a) the manual transcripts and (b) the ASR transcripts; the metrics are
those of :func:`dmd_pipeline.training.metrics.regression_metrics`. The word error rate of (b) against (a)
is a word-level Levenshtein distance summed over the split and divided by the number of reference words.

An ASR transcript with no words cannot be scored by the model; it gets the prediction 0.0 (neutral) and is
counted in ``asr_empty``. Synthesised speech is far cleaner than webcam reviews: the drop measured here is
a lower bound of the real one.

Usage (writes nothing into the repository; prints a JSON summary)::

    .venv/bin/python benchmarks/asr_effect_mosi.py [--labels ../shared/data/mosi/label.csv] [--split test]
        [--limit N] [--threads 1] [--asr-model base|tiny.en]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LABELS = REPO.parent / "shared" / "data" / "mosi" / "label.csv"
MODEL = "mosi-text-minilm"
KEYS = ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Mult_acc_7", "MAE", "Corr")


def word_edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists (substitutions, insertions, deletions cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    """Word error rate over a corpus: total word edits / total reference words."""
    edits = sum(word_edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True))
    words = sum(len(r.split()) for r in refs)
    return edits / words if words else float("nan")


def synthesize(text: str, wav: Path) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng (en-us, default speed) into a 16 kHz mono wav; return its samples."""
    from scipy.io import wavfile

    raw = wav.with_suffix(".raw.wav")
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-w", str(raw), "--stdin"],
        input=text.encode("utf-8"),
        check=True,
        capture_output=True,
    )
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    raw.unlink()
    sr, data = wavfile.read(wav)
    return data.astype(np.float32) / 32768.0, int(sr)


def asr_texts(texts: list[str], tmp: Path, asr_model: str = "base") -> list[str]:
    """MOSI-style Whisper transcripts of the synthesised ``texts`` (English, by ``asr_model``)."""
    from dmd_pipeline.extractors.transcribe import normalize_text, transcribe

    out = []
    for i, text in enumerate(texts):
        wav = tmp / f"{i:05d}.wav"
        audio, sr = synthesize(text, wav)
        wav.unlink()
        tr = transcribe(audio, sr, engine="whisper", language="en", asr_model=asr_model)
        out.append(normalize_text(tr.text, mosi=True))
    return out


def scores(system, meta: dict, texts: list[str]) -> np.ndarray:
    """Model predictions (N,) for transcripts; empty ones get 0.0 (the model needs at least one word)."""
    from dmd_pipeline.data.text_only import predict_texts

    pred = np.zeros(len(texts), dtype=np.float64)
    idx = [i for i, t in enumerate(texts) if t.split()]
    if idx:
        pred[idx] = predict_texts(system, meta, [texts[i] for i in idx]).reshape(len(idx), -1)[:, 0]
    return pred


def pick(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 4) for k in KEYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    ap.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ap.add_argument("--limit", type=int, default=None, help="first N rows of the split (default all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--asr-model", default="base", choices=["base", "tiny.en"], help="the English Whisper model")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by CTranslate2 (Whisper) when it loads
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")

    import torch

    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.data.text_only import read_label_csv
    from dmd_pipeline.extractors.transcribe import normalize_text
    from dmd_pipeline.training.metrics import regression_metrics

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = read_label_csv(args.labels).get(args.split, [])
    if args.limit is not None:
        rows = rows[: args.limit]
    if not rows:
        raise SystemExit(f"{args.labels}: no rows in split {args.split!r}")
    manual = [normalize_text(r["text"], mosi=True) for r in rows]
    labels = np.array([r["label"] for r in rows], dtype=np.float64)

    with tempfile.TemporaryDirectory(prefix="asr_effect_") as tmp:
        t_asr = time.perf_counter()
        asr = asr_texts(manual, Path(tmp), args.asr_model)
        t_asr = time.perf_counter() - t_asr

    model = load_model(MODEL)
    pred_a = scores(model.system, model.meta, manual)
    pred_b = scores(model.system, model.meta, asr)
    ma, mb = pick(regression_metrics(pred_a, labels)), pick(regression_metrics(pred_b, labels))
    summary = {
        "model": MODEL,
        "labels": str(args.labels),
        "split": args.split,
        "n": len(rows),
        "asr": f"espeak-ng en-us 16 kHz -> Whisper {args.asr_model} (transcribe engine='whisper', language='en')",
        "WER": round(corpus_wer(manual, asr), 4),
        "asr_exact": sum(a == m for a, m in zip(asr, manual, strict=True)),
        "asr_empty": sum(not a.split() for a in asr),
        "sign_agreement": round(float(np.mean((pred_a > 0) == (pred_b > 0))), 4),
        "metrics_manual": ma,
        "metrics_asr": mb,
        "delta_asr_minus_manual": {k: round(mb[k] - ma[k], 4) for k in KEYS},
        "threads": args.threads,
        "seconds_asr": round(t_asr, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
