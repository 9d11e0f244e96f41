"""Choose the acoustic setting of the voice-emotion model on the validation actors, and measure the baseline.

For every RAVDESS clip (``../shared/data/ravdess/labels.csv``) the frame features of ``whisper+librosa``
are computed once (the other settings are column subsets of it: ``whisper`` = the first 384 columns,
``librosa`` = the last 25, here at 50 Hz), mean+std pooled over time, and a standardised multinomial
logistic regression is fitted on actors 1-16 with C chosen on actors 17-18 (valid). The script prints the
valid metrics of every (setting, C), picks the setting by valid UAR, and reports test (actors 19-21) once,
for the chosen setting only: the baseline that MODEL_CARD.md compares the DMD model with.

    python recipes/emotion_feature_choice.py [--data ../shared/data/ravdess] [--cache runs/ravdess_frames.npz]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def frame_features(data: Path, cache: Path) -> tuple[list[np.ndarray], list[str], list[str], list[str]]:
    """Per clip (T, 409) whisper+librosa frames, labels, splits, actors (computed once, kept in ``cache``)."""
    import csv

    rows = list(csv.DictReader((data / "labels.csv").open(encoding="utf-8")))
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        feats = [z[f"f{i}"] for i in range(len(rows))]
    else:
        from dmd_pipeline import media
        from dmd_pipeline.extractors.whisper_encoder import AcousticFeatureSet

        ext = AcousticFeatureSet("whisper+librosa")
        feats = []
        t0 = time.perf_counter()
        for i, r in enumerate(rows):
            audio = media.load_audio(data / r["file"], sr=16000)
            feats.append(ext.extract(audio, 16000).values)
            if i % 200 == 0:
                print(f"  {i}/{len(rows)} clips, {time.perf_counter() - t0:.0f} s", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{f"f{i}": f for i, f in enumerate(feats)})
    return feats, [r["label"] for r in rows], [r["split"] for r in rows], [r["actor"] for r in rows]


def pooled(feats: list[np.ndarray], cols: slice) -> np.ndarray:
    """Mean and std over time of the selected columns."""
    return np.stack([np.concatenate([f[:, cols].mean(0), f[:, cols].std(0)]) for f in feats])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    ap.add_argument("--cache", type=Path, default=Path("runs/ravdess_frames.npz"))
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dmd_pipeline.training.metrics import classification_report

    feats, labels, splits, _actors = frame_features(args.data, args.cache)
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    sp = np.array(splits)
    settings = {"whisper": slice(0, 384), "librosa": slice(384, 409), "whisper+librosa": slice(0, 409)}
    results: dict = {"valid": {}, "class_names": names}
    best = None
    for setting, cols in settings.items():
        x = pooled(feats, cols)
        for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
            clf.fit(x[sp == "train"], y[sp == "train"])
            rep = classification_report(y[sp == "valid"], clf.predict(x[sp == "valid"]), len(names))
            results["valid"][f"{setting} C={c}"] = rep
            print(f"valid {setting:16s} C={c:<6} acc {rep['accuracy']:.3f} UAR {rep['uar']:.3f}", flush=True)
            if best is None or rep["uar"] > best[0]:
                best = (rep["uar"], setting, c)
    assert best is not None
    _, setting, c = best
    x = pooled(feats, settings[setting])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
    clf.fit(x[sp == "train"], y[sp == "train"])
    test = classification_report(y[sp == "test"], clf.predict(x[sp == "test"]), len(names))
    results["chosen"] = {"setting": setting, "C": c, "test": test}
    print(f"chosen on valid: {setting} C={c}; TEST acc {test['accuracy']:.3f} UAR {test['uar']:.3f} "
          f"macro-F1 {test['macro_f1']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
