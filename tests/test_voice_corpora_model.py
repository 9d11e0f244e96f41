"""The bundled default voice model `voice-emotion-5corpora`: what it records (features, normalisation,
calibration, licence), that it is a default model, and that it analyses a real clip end to end with valid,
schema-conform output. No accuracy threshold (accuracy lives in MODEL_CARD.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.analysis.registry import MODELS_DIR, available_models, default_model_names, load_model
from dmd_pipeline.data.corpora import CLASSES

NAME = "voice-emotion-5corpora"


@pytest.fixture(scope="module")
def voice():
    return load_model(NAME)


def test_bundled_default_and_self_describing(voice) -> None:
    assert NAME in available_models() and NAME in default_model_names()
    assert "ravdess-voice-emotion" in available_models()  # still loadable by name for one version
    meta = json.loads((MODELS_DIR / NAME / "config.json").read_text())
    assert voice.task == "classification" and voice.class_names == list(CLASSES)
    assert voice.modalities == ["audio"] and voice.analysis_window_s == 4.0
    assert voice.acoustic_setting == "whisper-base-layers-s5" and voice.dims["audio"] == 3584
    assert voice.config.head == "stats" and voice.config.audio_layers == 7
    assert voice.aligned is False and tuple(voice.config.seq_lens) == (8, 40, 8)
    assert voice.audio_norm.mode in ("none", "clip")
    if voice.audio_norm.mode == "clip":
        assert voice.audio_norm.dim == 3584
    assert meta["weights_dtype"] == "float16" and "non-commercial" in meta["licence_note"]
    cal = meta["calibration"]
    assert "valid" in cal["fitted_on"]["split"] and voice.calibration.temperature == cal["temperature"]
    assert set(meta["metrics"]["valid_uar"]) == {"ravdess", "nemo", "emovo", "turev", "urdu"}
    w = voice.system.model.layer_weights()
    assert w is not None and w.shape == (7,) and float(w.sum()) == pytest.approx(1.0, abs=1e-5)


def test_the_model_extracts_the_setting_it_was_trained_on(voice) -> None:
    cfg = voice.extraction_config()
    assert cfg.acoustic == "whisper-base-layers-s5" and cfg.aligned is False


@pytest.mark.slow
def test_a_real_clip_end_to_end(voice, ravdess: Path) -> None:
    import jsonschema

    from dmd_pipeline import analyze
    from dmd_pipeline.analysis.result import load_schema

    rows = [r for r in csv.DictReader((ravdess / "labels.csv").open(encoding="utf-8")) if r["split"] == "valid"]
    r = next(r for r in rows if r["label"] == "angry")
    doc = analyze(ravdess / r["file"], model=[voice], transcript=r["transcript"]).to_dict()
    jsonschema.validate(doc, load_schema())
    probs = doc["overall"]["probabilities"]
    assert sorted(probs) == list(CLASSES)
    p = np.array(list(probs.values()))
    assert np.all((p >= 0) & (p <= 1)) and p.sum() == pytest.approx(1.0, abs=1e-4)
    assert doc["models"][0]["name"] == NAME and doc["models"][0]["modalities_used"] == ["audio"]
