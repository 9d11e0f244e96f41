"""Word-level pooling, unaligned resampling, bundle save/load and the feature cache."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from dmd_pipeline.errors import DataError
from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.extractors.transcribe import Segment, Word
from dmd_pipeline.features import (
    FeatureBundle,
    FeatureCache,
    default_cache_dir,
    pad_or_truncate,
    pool_to_words,
    resample_to_length,
    word_source_counts,
    word_vectors,
)


def _frames(n: int, hop: float = 0.01, dim: int = 3, seed: int = 0) -> FrameFeatures:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, dim)).astype(np.float32)
    return FrameFeatures(values, np.arange(n) * hop, [f"f{i}" for i in range(dim)])


def test_word_vector_is_mean_over_half_open_span() -> None:
    fr = _frames(100)  # 0.00 .. 0.99 s
    words = [Word("a", 0.10, 0.20, "forced"), Word("b", 0.20, 0.50, "forced")]
    vecs = word_vectors(fr, words)
    np.testing.assert_allclose(vecs[0], fr.values[10:20].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vecs[1], fr.values[20:50].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_empty_span_takes_nearest_frame_never_nan() -> None:
    fr = _frames(10, hop=0.1)  # frames at 0.0, 0.1, ..., 0.9
    words = [
        Word("short", 0.31, 0.33, "forced"),  # no frame inside -> nearest to 0.32 is 0.3 (index 3)
        Word("zero", 0.52, 0.52, "proportional"),  # zero-length -> nearest to 0.52 is 0.5
        Word("after", 5.0, 6.0, "asr"),  # past the end -> last frame
    ]
    vecs = word_vectors(fr, words)
    assert not np.isnan(vecs).any()
    np.testing.assert_array_equal(vecs[0], fr.values[3])
    np.testing.assert_array_equal(vecs[1], fr.values[5])
    np.testing.assert_array_equal(vecs[2], fr.values[9])


def test_pool_repeats_subtokens_and_zeros_special_tokens() -> None:
    fr = _frames(100)
    words = [Word("hello", 0.0, 0.3, "forced"), Word("unbelievable", 0.3, 0.9, "forced")]
    # [CLS] hello un ##believ ##able [SEP] pad pad
    word_index = np.array([-1, 0, 1, 1, 1, -1, -1, -1])
    out = pool_to_words(fr, words, word_index, max_len=10)
    assert out.shape == (10, 3) and out.dtype == np.float32
    assert not out[0].any() and not out[5:].any()  # [CLS], [SEP], padding, beyond word_index
    np.testing.assert_allclose(out[1], fr.values[0:30].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[2], out[3])
    np.testing.assert_array_equal(out[3], out[4])
    np.testing.assert_allclose(out[2], fr.values[30:90].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_pool_truncates_to_max_len() -> None:
    fr = _frames(700)
    words = [Word(f"w{i}", i * 0.1, (i + 1) * 0.1, "forced") for i in range(70)]
    word_index = np.array([-1, *range(70), -1])
    out = pool_to_words(fr, words, word_index, max_len=50)
    assert out.shape == (50, 3)
    assert not out[0].any()
    # token 49 is word 48 (a real word, the [SEP] was cut away with the overflow)
    np.testing.assert_allclose(out[49], fr.values[480:490].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.isfinite(out).all()


def test_pool_with_no_frames_gives_zeros() -> None:
    fr = FrameFeatures(np.zeros((0, 4), np.float32), np.zeros(0), list("abcd"))
    out = pool_to_words(fr, [Word("a", 0, 1, "forced")], np.array([-1, 0, -1]), max_len=5)
    assert out.shape == (5, 4) and not out.any()


def test_resample_pads_short_sequence_and_keeps_true_length() -> None:
    fr = _frames(30)
    out, n = resample_to_length(fr, 50)
    assert n == 30 and out.shape == (50, 3)
    np.testing.assert_array_equal(out[:30], fr.values)
    assert not out[30:].any()


def test_resample_average_pools_long_sequence() -> None:
    fr = _frames(1000)
    out, n = resample_to_length(fr, 375)
    assert n == 375 and out.shape == (375, 3)
    edges = np.floor(np.arange(376) * 1000 / 375).astype(int)
    np.testing.assert_allclose(out[7], fr.values[edges[7] : edges[8]].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=0), fr.values.mean(axis=0), atol=0.02)
    exact, m = resample_to_length(fr, 1000)
    assert m == 1000
    np.testing.assert_array_equal(exact, fr.values)


def test_pad_or_truncate_axis() -> None:
    x = np.ones((3, 7), dtype=np.int64)
    assert pad_or_truncate(x, 10, axis=1).shape == (3, 10)
    assert pad_or_truncate(x, 4, axis=1).shape == (3, 4)
    assert pad_or_truncate(x, 5).sum() == 21


def test_word_source_counts() -> None:
    words = [Word("a", 0, 1, "forced"), Word("b", 1, 2, "forced"), Word("c", 2, 3, "proportional")]
    assert word_source_counts(words) == {"forced": 2, "proportional": 1}


# ------------------------------------------------------------------------------------ bundle round trip


def _text_features():
    from dmd_pipeline.extractors.text import TextFeatures

    fields = {
        "features": np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32),
        "input_ids": np.array([101, 7, 8, 9, 102, 0]),
        "attention_mask": np.array([1, 1, 1, 1, 1, 0]),
        "token_type_ids": np.zeros(6, dtype=np.int64),
        "word_index": np.array([-1, 0, 1, 1, -1, -1]),
    }
    import dataclasses

    names = {f.name for f in dataclasses.fields(TextFeatures)}
    extra = {f.name: (["[CLS]", "a", "b", "##c", "[SEP]", "[PAD]"] if f.name == "tokens" else None) for f in
             dataclasses.fields(TextFeatures) if f.name not in fields and f.default is dataclasses.MISSING and
             f.default_factory is dataclasses.MISSING}  # fmt: skip
    return TextFeatures(**{k: v for k, v in fields.items() if k in names}, **extra)


def _bundle() -> FeatureBundle:
    words = [Word("a", 0.0, 0.4, "forced"), Word("bc", 0.4, 0.9, "proportional")]
    vis = _frames(10, hop=0.1, dim=4)
    vis.extras = {"boxes": np.ones((10, 4), np.float32), "tracker": "largest"}
    return FeatureBundle(
        text=_text_features(),
        acoustic=_frames(100),
        visual=vis,
        words=words,
        segments=[Segment(0.0, 0.9, "A bc.", list(words))],
        metadata={"timings": {"probe": 0.01}, "shape": (1, 2), "sha": np.str_("x")},
    )


def test_bundle_save_load_roundtrip_without_pickle(tmp_path) -> None:
    pytest.importorskip("dmd_pipeline.extractors.text")
    b = _bundle()
    json_path = b.save(tmp_path / "clip")
    assert json_path.suffix == ".json" and (tmp_path / "clip.npz").is_file()
    meta = json.loads(json_path.read_text())
    assert meta["words"][1]["source"] == "proportional"
    with np.load(tmp_path / "clip.npz", allow_pickle=False) as z:  # loadable without pickle
        assert "visual.extras.boxes" in z.files
    back = FeatureBundle.load(tmp_path / "clip.npz")
    np.testing.assert_array_equal(back.acoustic.values, b.acoustic.values)
    np.testing.assert_array_equal(back.visual.extras["boxes"], b.visual.extras["boxes"])
    assert back.visual.extras["tracker"] == "largest"
    np.testing.assert_array_equal(back.text.word_index, b.text.word_index)
    assert back.words == b.words and back.segments[0].words == b.words
    assert back.metadata["shape"] == [1, 2]
    assert back.modalities == ["text", "audio", "vision"]
    assert back.raw_text == "A bc."


def test_bundle_missing_modalities_roundtrip(tmp_path) -> None:
    b = FeatureBundle(text=None, acoustic=_frames(5), visual=None)
    back = FeatureBundle.load(b.save(tmp_path / "x"))
    assert back.text is None and back.visual is None and back.modalities == ["audio"]


def test_bundle_load_malformed_raises_data_error(tmp_path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad"):
        FeatureBundle.load(tmp_path / "bad")


def test_cache_roundtrip_and_key(tmp_path) -> None:
    cache = FeatureCache(tmp_path / "c")
    k1 = FeatureCache.key("a" * 64, "cfg1")
    assert k1 != FeatureCache.key("a" * 64, "cfg2")
    assert k1 != FeatureCache.key("a" * 64, "cfg1", start=1.0, end=2.0)
    assert k1 != FeatureCache.key("a" * 64, "cfg1", transcript="hello")
    assert cache.get(k1) is None and k1 not in cache
    b = FeatureBundle(text=None, acoustic=_frames(5), visual=None, metadata={"x": 1})
    cache.put(k1, b)
    assert k1 in cache
    got = cache.get(k1)
    assert got is not None and got.metadata["x"] == 1
    # an orphan npz (writer killed before the JSON) is a miss, not an error
    k2 = FeatureCache.key("b" * 64, "cfg1")
    cache.path(k2).parent.mkdir(parents=True, exist_ok=True)
    cache.path(k2).with_suffix(".npz").write_bytes(b"partial")
    assert cache.get(k2) is None
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_default_cache_dir_env(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DMD_CACHE_DIR", str(tmp_path / "cc"))
    assert default_cache_dir() == tmp_path / "cc"
    monkeypatch.delenv("DMD_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "dmd-pipeline")


@dataclass
class _Dummy:
    values: np.ndarray
    times: np.ndarray


def test_pool_accepts_any_frame_like_object() -> None:
    fr = _Dummy(np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10) * 0.1)
    out = pool_to_words(fr, [Word("a", 0.0, 0.2, "forced")], np.array([-1, 0, -1]), max_len=3)
    np.testing.assert_allclose(out[1], [1.0, 2.0])
