"""How short can Whisper base's language-identification pass be? Each valid clip identified four ways: the
speech's own log-mel frames only, padded to 5 s, padded to 10 s, and Whisper's 30 s window (what
faster-whisper's ``detect_language`` does), then the cascade ``extractors/language.detect`` uses (5 s, kept
when p >= a threshold, else 30 s) for several thresholds, computed from the same answers. Numbers for
BENCHMARKS.md, "Language identification in one short pass".

Clips as ``bench_languages.py --parts langid`` (fixed seeds): 40 nEMO (Polish) and 40 EMOVO (Italian) valid
clips, the 8 real English clips and 40 RAVDESS valid clips; speech found by Silero VAD, its first 30 s.

    .venv/bin/python benchmarks/bench_langid_passes.py [--per-corpus 40] [--out passes.json]
"""

from __future__ import annotations

import argparse
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
PASSES = {"own": None, "pad5s": 500, "pad10s": 1000, "pad30s": 3000}  # log-mel frames (100 a second)
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def main() -> None:
    from bench_languages import DATA, _rows, english_clips
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    from dmd_pipeline import media
    from dmd_pipeline.extractors.language import _identify
    from dmd_pipeline.extractors.transcribe import whisper_base_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-corpus", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    model = whisper_base_model()
    rows = _rows(DATA / "speech" / "labels.csv")
    sets: dict[str, list[tuple[Path, str]]] = {}
    for corpus in ("nemo", "emovo"):
        valid = [r for r in rows if r["corpus"] == corpus and r["split"] == "valid"]
        random.Random(0).shuffle(valid)
        sets[corpus] = [(DATA / "speech" / r["file"], r["language"]) for r in valid[: args.per_corpus]]
    sets["english"] = [(p, "en") for p, _ in english_clips(40)]
    answers = []
    for name, items in sets.items():
        for path, truth in items:
            audio = media.load_audio(path)
            stamps = get_speech_timestamps(audio)
            if stamps:
                audio = np.concatenate(collect_chunks(audio, stamps)[0])
            feats = model.feature_extractor(audio[: 30 * 16000])[..., :3000]
            n = feats.shape[-1]
            rec = {"set": name, "truth": truth, "frames": n}
            for label, frames in PASSES.items():
                t0 = time.perf_counter()
                code, prob = _identify(model, feats, max(frames or 0, n + n % 2))
                rec[label] = [code, round(prob, 4), round(time.perf_counter() - t0, 4)]
            answers.append(rec)
    out: dict = {"load": os.getloadavg(), "passes": {}, "cascade": {}}
    for name in sets:
        mine = [r for r in answers if r["set"] == name]
        out["passes"][name] = {
            label: {
                "accuracy": sum(r[label][0] == r["truth"] for r in mine) / len(mine),
                "median_s": statistics.median(r[label][2] for r in mine),
            }
            for label in PASSES
        }
        for th in THRESHOLDS:
            hits, cost = 0, 0.0
            for r in mine:
                quick = r["pad5s"]
                code, secs = (
                    (quick[0], quick[2]) if quick[1] >= th else (r["pad30s"][0], quick[2] + r["pad30s"][2])
                )
                hits += code == r["truth"]
                cost += secs
            out["cascade"].setdefault(name, {})[str(th)] = {
                "accuracy": hits / len(mine),
                "mean_s": cost / len(mine),
            }
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
