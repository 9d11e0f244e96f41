"""Acoustic settings: Whisper encoder states (384-d, 50 Hz), whisper+librosa, chunking, the cache hash,
and the real RAVDESS data (speaker-independent split, extraction of a few clips)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.extractors.whisper_encoder import (
    ACOUSTIC_SETTINGS,
    AcousticFeatureSet,
    WhisperEncoderExtractor,
    make_acoustic_extractor,
)
from dmd_pipeline.pipeline import ExtractionConfig, select_columns


@pytest.fixture(scope="module")
def whisper_set() -> AcousticFeatureSet:
    return AcousticFeatureSet("whisper+librosa")


def _tone(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def test_whisper_states_shape_rate_and_names(whisper_set: AcousticFeatureSet) -> None:
    w = whisper_set.whisper
    assert w is not None and w.dim == 384
    f = w.extract(_tone(3.3), 16000)
    assert f.values.shape == (165, 384)  # ceil(3.3 / 0.02)
    assert np.isfinite(f.values).all() and f.values.std() > 0.1
    assert np.allclose(np.diff(f.times), 0.02) and f.times[0] == pytest.approx(0.01)
    assert f.names[0] == "whisper_0" and f.names[-1] == "whisper_383"


def test_combined_setting_is_whisper_then_pooled_librosa(whisper_set: AcousticFeatureSet) -> None:
    y = _tone(2.0)
    both = whisper_set.extract(y, 16000)
    assert both.dim == 409 and whisper_set.dim == 409 and whisper_set.hop_s == 0.02
    only_w = whisper_set.whisper.extract(y, 16000)
    assert np.array_equal(both.values[:, :384], only_w.values)
    lib = whisper_set.librosa.extract(y, 16000)
    f0 = lib.names.index("rms_db")
    # column 384 + k of frame t is the mean of librosa frames 2t and 2t+1
    assert both.values[10, 384 + f0] == pytest.approx(0.5 * (lib.values[20, f0] + lib.values[21, f0]), abs=1e-4)
    # a model trained on whisper alone takes its columns back out of the combined frames
    sel = select_columns(both, only_w.names)
    assert np.array_equal(sel.values, only_w.values)


def test_chunks_cover_the_signal_and_stay_under_30s(whisper_set: AcousticFeatureSet) -> None:
    w: WhisperEncoderExtractor = whisper_set.whisper
    for seconds in (0.01, 0.5, 3.7, 5.9, 6.1, 61.0, 200.0):
        n = int(seconds * 16000)
        ch = w.chunks(n)
        assert ch[0][0] == 0 and ch[-1][1] == n
        assert all(b > a for a, b in ch) and all(ch[i][1] == ch[i + 1][0] for i in range(len(ch) - 1))
        assert max(b - a for a, b in ch) <= 30 * 16000
        assert all(a % 320 == 0 for a, _ in ch)  # chunk starts on the 20 ms grid
    assert len(w.chunks(int(3.7 * 16000))) == 1  # a RAVDESS-length clip is one chunk
    long = w.extract(_tone(9.0), 16000)  # 2 chunks: frames still tile the time axis
    assert long.n_frames == 450 and np.isfinite(long.values).all()


def test_empty_and_tiny_audio(whisper_set: AcousticFeatureSet) -> None:
    assert whisper_set.whisper.extract(np.zeros(0, np.float32), 16000).n_frames == 0
    tiny = whisper_set.extract(np.zeros(100, np.float32), 16000)
    assert tiny.n_frames == 1 and np.isfinite(tiny.values).all()


def test_settings_and_feature_hash() -> None:
    assert ACOUSTIC_SETTINGS[:3] == ("librosa", "whisper", "whisper+librosa")
    base = ExtractionConfig()
    assert base.acoustic == "librosa"
    assert base.feature_hash() == ExtractionConfig(acoustic="librosa").feature_hash()
    hashes = {s: ExtractionConfig(acoustic=s).feature_hash() for s in ACOUSTIC_SETTINGS}
    assert len(set(hashes.values())) == len(ACOUSTIC_SETTINGS)  # the setting is part of the cache key
    with pytest.raises(ValueError, match="unknown acoustic setting"):
        ExtractionConfig(acoustic="mfcc")
    assert type(make_acoustic_extractor("librosa")).__name__ == "AcousticExtractor"


# ---- real data ------------------------------------------------------------------------------------------
def test_ravdess_split_is_speaker_independent(ravdess: Path) -> None:
    rows = list(csv.DictReader((ravdess / "labels.csv").open(encoding="utf-8")))
    actors_by_split: dict[str, set[str]] = {}
    for r in rows:
        actors_by_split.setdefault(r["split"], set()).add(r["actor"])
    splits = sorted(actors_by_split)
    assert splits == ["test", "train", "valid"]
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not actors_by_split[a] & actors_by_split[b], f"an actor is in both {a} and {b}"
    assert {int(a) for a in actors_by_split["test"]} == {19, 20, 21}
    assert len({r["label"] for r in rows}) == 8


def test_ravdess_clips_extract_to_documented_dims(ravdess: Path, tmp_path: Path) -> None:
    from dmd_pipeline.pipeline import Extractor

    rows = list(csv.DictReader((ravdess / "labels.csv").open(encoding="utf-8")))
    picks = [r for r in rows if r["split"] == "test"][:3]
    ex = Extractor(ExtractionConfig(acoustic="whisper+librosa", asr="none"), cache=tmp_path / "cache")
    for r in picks:
        b = ex.extract_clip(ravdess / r["file"], transcript=r["transcript"])
        assert b.acoustic.dim == 409 and b.acoustic.names[:384] == [f"whisper_{i}" for i in range(384)]
        dur = b.metadata["source"]["duration"]
        assert abs(b.acoustic.n_frames - dur / 0.02) <= 2
        assert np.isfinite(b.acoustic.values).all()
        assert b.visual is None  # audio-only FLAC
        assert b.text is not None and b.text.features.shape[1] == 384
    assert ex.calls["acoustic"] == 3
    again = ex.extract_clip(ravdess / picks[0]["file"], transcript=picks[0]["transcript"])
    assert again.metadata["cache"]["hit"] and ex.calls["acoustic"] == 3
