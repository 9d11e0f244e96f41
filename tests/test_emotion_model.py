"""The bundled voice-emotion model `ravdess-voice-emotion`: what it records, valid predictions on real
test-actor clips, indifference to the words, and a clear result for a video without a voice.

No accuracy threshold here (a retrain could move it by noise): accuracy lives in MODEL_CARD.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.analysis.registry import MODELS_DIR, available_models, load_model

NAME = "ravdess-voice-emotion"
CLASSES = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]


@pytest.fixture(scope="module")
def emotion():
    return load_model(NAME)


def test_bundled_and_self_describing(emotion) -> None:
    assert NAME in available_models()
    meta = json.loads((MODELS_DIR / NAME / "config.json").read_text())
    assert emotion.task == "classification" and sorted(emotion.class_names) == CLASSES
    assert emotion.modalities == ["audio"] and meta["analysis_window_s"] == 4.0
    spec = emotion.extraction
    assert spec["config"]["acoustic"] == "whisper" and spec["dims"]["audio"] == 384
    assert emotion.feature_names("audio") == [f"whisper_{i}" for i in range(384)]
    assert "non-commercial" in meta["licence_note"] and meta["weights_dtype"] == "float16"
    assert (MODELS_DIR / NAME / "model.safetensors").stat().st_size < 8_000_000
    assert set(meta["metrics"]) >= {"valid", "test"}
    cal = meta["calibration"]  # fitted on the validation actors by recipes/calibrate_model.py, never on test
    assert cal["fitted_on"]["split"] == "valid" and cal["fitted_on"]["n"] == 120
    assert emotion.calibration is not None and emotion.calibration.temperature == cal["temperature"]


def test_real_test_actor_clips_get_valid_probabilities(emotion, ravdess: Path) -> None:
    import jsonschema

    from dmd_pipeline import analyze
    from dmd_pipeline.analysis.result import load_schema

    rows = [r for r in csv.DictReader((ravdess / "labels.csv").open(encoding="utf-8")) if r["split"] == "test"]
    picks = [next(r for r in rows if r["label"] == lab) for lab in ("angry", "sad", "happy")]
    schema = load_schema()
    for r in picks:
        res = analyze(ravdess / r["file"], model=[emotion], transcript=r["transcript"])
        doc = res.to_dict()
        jsonschema.validate(doc, schema)
        probs = doc["overall"]["probabilities"]
        assert sorted(probs) == CLASSES
        p = np.array(list(probs.values()))
        assert np.all((p >= 0) & (p <= 1)) and p.sum() == pytest.approx(1.0, abs=1e-4)
        assert doc["overall"]["predicted_class"] == max(probs, key=probs.get)
        assert doc["models"][0]["modalities_used"] == ["audio"]
        assert doc["headline"].split(" | ")[-1].startswith("voice: ")  # after the fused answer


def test_the_words_do_not_change_the_emotion(emotion, ravdess: Path) -> None:
    from dmd_pipeline import analyze

    clip = ravdess / "Actor_19" / sorted(p.name for p in (ravdess / "Actor_19").iterdir())[0]
    a = analyze(clip, model=[emotion], transcript="Kids are talking by the door")
    b = analyze(clip, model=[emotion], transcript="I hate this awful, terrible day")
    pa, pb = a.to_dict()["overall"]["probabilities"], b.to_dict()["overall"]["probabilities"]
    assert pa == pytest.approx(pb, abs=1e-6)
