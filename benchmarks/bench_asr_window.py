"""Whisper's fitted encoder window (``transcribe.fitted_windows``, ``dmd live --asr-window fit``) against the
30 s window: word error rate and time of tiny.en on real utterances (issue 20).

Takes ``--clips`` RAVDESS audio clips (``../shared/data/ravdess``, a fixed random sample over all actors:
"Kids are talking by the door" / "Dogs are sitting by the door", every emotion), cuts each with the live
:class:`~dmd_pipeline.live.cutter.UtteranceCutter`, and transcribes stretches of ``--join`` 1, 2 and 3
utterances (1.5-3.3 s, 3.3-5 s, 5-7 s: what the live scorer sees alone and when it joins a backlog) both ways,
interleaved, with the settings speech recognition uses (greedy, English, word times). WER = word edits /
reference words (lower case, punctuation dropped). Prints one JSON object.

    .venv/bin/python benchmarks/bench_asr_window.py [--clips 40] [--seed 0] [--out bench_asr_window.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _words(s: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", s.lower()).split()


def _edits(ref: list[str], hyp: list[str]) -> int:
    d = np.arange(len(hyp) + 1)
    for i in range(1, len(ref) + 1):
        prev = d.copy()
        d[0] = i
        for j in range(1, len(hyp) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
    return int(d[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from dmd_pipeline import media
    from dmd_pipeline.extractors import transcribe as tx
    from dmd_pipeline.live.cutter import UtteranceCutter

    root = REPO.parent / "shared" / "data" / "ravdess"
    if not (root / "labels.csv").is_file():
        sys.exit(f"{root} is absent: the benchmark transcribes real clips")
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    sample = random.Random(args.seed).sample(rows, args.clips)
    utts: list[tuple[str, np.ndarray]] = []
    for r in sample:
        audio = media.load_audio(root / r["file"], sr=16000)
        cutter = UtteranceCutter(16000)
        got = cutter.push(audio) + cutter.flush()
        utts.append((r["transcript"], np.concatenate([u.audio for u in got]) if got else audio))
    tx.whisper_model()  # loaded before timing
    out: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "rows": [],
    }
    for join in (1, 2, 3):
        stretches = [
            (" ".join(t for t, _ in utts[i : i + join]), np.concatenate([a for _, a in utts[i : i + join]]))
            for i in range(0, len(utts) - join + 1, join)
        ]
        stats = {w: {"edits": 0, "words": 0, "s": [], "loops": 0} for w in ("full", "fit")}
        for ref, audio in stretches:
            for window in ("full", "fit"):  # interleaved
                t0 = time.perf_counter()
                if window == "fit":
                    with tx.fitted_windows():
                        text = tx.transcribe(audio, 16000, language="en").text
                else:
                    text = tx.transcribe(audio, 16000, language="en").text
                st = stats[window]
                st["s"].append(time.perf_counter() - t0)
                r, h = _words(ref), _words(text)
                st["edits"] += _edits(r, h)
                st["words"] += len(r)
                st["loops"] += int(len(h) > 1.5 * len(r))
        lengths = [len(a) / 16000 for _, a in stretches]
        row = {
            "join": join, "stretches": len(stretches),
            "seconds": [round(min(lengths), 2), round(max(lengths), 2)],
            "load_1min": round(os.getloadavg()[0], 2),
        }  # fmt: skip
        for w, st in stats.items():
            row[w] = {
                "wer_pct": round(100.0 * st["edits"] / max(1, st["words"]), 1), "words": st["words"],
                "median_s": round(float(np.median(st["s"])), 3), "looped": st["loops"],
            }  # fmt: skip
        row["ratio_of_medians"] = round(row["fit"]["median_s"] / row["full"]["median_s"], 3)
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
