"""Training a voice model from a corpus feature store (data/store_inputs.py), the frame normalisation a model
declares (data/feature_norm.FrameNorm) and that the model object applies it, and the ``whisper-base-layers-s5``
setting equal to what the store keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.data.corpora import Clip, CorpusTable
from dmd_pipeline.data.corpus_features import ClipFeatures, _encode_one, _write_shard
from dmd_pipeline.data.feature_norm import PRIOR_CLIPS, FrameNorm
from dmd_pipeline.data.store_inputs import (
    StoreDataset,
    audio_input,
    join_stores,
    layer_major,
    prior_stats,
)
from dmd_pipeline.utils import atomic_write_json


def _feats(lengths: list[int], n_layers: int = 3, d: int = 4, seed: int = 0) -> ClipFeatures:
    rng = np.random.default_rng(seed)
    frames = [rng.normal(i, 1 + i, (n_layers, t, d)).astype(np.float16) for i, t in enumerate(lengths)]
    mean = np.stack([f.astype(np.float32).mean(1) for f in frames])
    std = np.stack([f.astype(np.float32).std(1) for f in frames])
    return ClipFeatures(mean, std, frames, np.array(lengths) * 5, np.ones(len(lengths), bool))


def test_layer_major_matches_the_settings_column_order() -> None:
    f = np.arange(2 * 3 * 4, dtype=np.float16).reshape(2, 3, 4)  # (L, T, D)
    x = layer_major(f)
    assert x.shape == (3, 8) and x.dtype == np.float32
    assert np.array_equal(x.reshape(3, 2, 4), f.transpose(1, 0, 2))  # values.reshape(T, L, D)
    assert x[1, 4 + 2] == f[1, 1, 2]  # column D * l + i
    with pytest.raises(ValueError, match="expected"):
        layer_major(np.zeros((3, 4), np.float16))


def test_audio_input_pads_and_pools_like_the_model_input() -> None:
    from dmd_pipeline.extractors.base import FrameFeatures
    from dmd_pipeline.features import resample_to_length

    feats = _feats([3, 11])
    short = audio_input(feats.frames[0], FrameNorm(), 6)
    assert short.shape == (6, 12) and np.all(short[3:] == 0)
    assert np.allclose(short[:3], layer_major(feats.frames[0]))
    long = audio_input(feats.frames[1], FrameNorm(), 4)
    x = layer_major(feats.frames[1])
    ref, n = resample_to_length(FrameFeatures(x, np.arange(len(x)) * 0.1, [str(i) for i in range(12)]), 4)
    assert n == 4 and np.allclose(long, ref)


def test_frame_norm_clip_blends_the_clips_statistics_with_the_prior() -> None:
    rng = np.random.default_rng(1)
    prior_mu, prior_sd = rng.normal(0, 1, 5), rng.uniform(0.5, 2, 5)
    x = rng.normal(3, 2, (40, 5)).astype(np.float32)
    out = FrameNorm("clip", prior_mu, prior_sd).apply(x)
    w = PRIOR_CLIPS
    mu = (w * prior_mu + x.mean(0)) / (w + 1)
    second = (w * (prior_sd**2 + prior_mu**2) + (x.astype(np.float64) ** 2).mean(0)) / (w + 1)
    sd = np.sqrt(second - mu**2)
    assert np.allclose(out, (x - mu) / sd, atol=1e-3)
    assert FrameNorm().apply(x) is not None and np.array_equal(FrameNorm().apply(x), x)
    assert FrameNorm("clip", prior_mu, prior_sd).apply(np.zeros((0, 5))).shape == (0, 5)
    with pytest.raises(ValueError, match="columns"):
        FrameNorm("clip", prior_mu, prior_sd).apply(np.zeros((3, 4)))


def test_frame_norm_meta_round_trip_and_bad_blocks() -> None:
    norm = FrameNorm("clip", np.array([0.5, -1.25]), np.array([1.0, 2.0]))
    back = FrameNorm.from_meta(norm.to_meta())
    assert back.mode == "clip" and np.allclose(back.mean, norm.mean) and back.prior_clips == PRIOR_CLIPS
    assert FrameNorm.from_meta(None).mode == "none" and FrameNorm.from_meta({"mode": "none"}).dim is None
    with pytest.raises(ValueError, match="unknown frame normalisation"):
        FrameNorm.from_meta({"mode": "speaker"})
    with pytest.raises(ValueError, match="prior"):
        FrameNorm.from_meta({"mode": "clip", "mean": [0.0], "std": [0.0]})
    with pytest.raises(ValueError, match="prior"):
        FrameNorm.from_meta({"mode": "clip", "mean": [0.0, 1.0]})


def test_prior_stats_are_the_frames_statistics() -> None:
    feats = _feats([3, 7, 5])
    mu, sd = prior_stats(feats, np.array([0, 2]))
    allx = np.concatenate([layer_major(feats.frames[0]), layer_major(feats.frames[2])]).astype(np.float64)
    assert np.allclose(mu, allx.mean(0)) and np.allclose(sd, allx.std(0), atol=1e-3)


def _store(folder: Path, feats: ClipFeatures) -> None:
    folder.mkdir(parents=True)
    recs = [
        {
            "mean": feats.mean[i],
            "std": feats.std[i],
            "frames": feats.frames[i],
            "n_frames": int(feats.n_frames[i]),
        }
        for i in range(len(feats.ok))
    ]
    _write_shard(folder / "shard_0000.npz", recs, {}, feats.mean.shape[1:])
    atomic_write_json(folder / "meta.json", {"n": len(recs), "shard": 256})


def _table(names: list[str]) -> CorpusTable:
    corpus = {"a": "ravdess", "b": "ravdess", "c": "emovo"}
    return CorpusTable(
        [
            Clip(Path(f"/x/{n}.wav"), "angry" if n != "b" else "sad", corpus[n], "en", f"s{n}", "train")
            for n in names
        ]
    )


def test_join_stores_puts_rows_in_table_order(tmp_path: Path) -> None:
    table = _table(["a", "b", "c"])
    one, two = _feats([2, 3], seed=1), _feats([4], seed=2)
    _store(tmp_path / "one", one)
    _store(tmp_path / "two", two)
    # the first store holds clips c and a (in that order), the second b
    joined = join_stores(
        table,
        [(tmp_path / "one", [Path("/x/c.wav"), Path("/x/a.wav")]), (tmp_path / "two", [Path("/x/b.wav")])],
    )
    assert np.array_equal(joined.frames[0], one.frames[1]) and np.array_equal(joined.frames[2], one.frames[0])
    assert np.array_equal(joined.frames[1], two.frames[0]) and np.allclose(joined.mean[1], two.mean[0])
    light = join_stores(
        table,
        [(tmp_path / "one", [Path("/x/c.wav"), Path("/x/a.wav")]), (tmp_path / "two", [Path("/x/b.wav")])],
        frames=False,
    )
    assert light.frames == [] and np.allclose(light.mean, joined.mean)
    with pytest.raises(ValueError, match="b.wav: in none of the stores"):
        join_stores(table, [(tmp_path / "one", [Path("/x/c.wav"), Path("/x/a.wav")])])
    with pytest.raises(ValueError, match="file list"):
        join_stores(table, [(tmp_path / "two", [Path("/x/b.wav"), Path("/x/a.wav")])])


def test_store_dataset_rows() -> None:
    feats = _feats([3, 9], n_layers=2, d=3)
    norm = FrameNorm("clip", np.zeros(6), np.ones(6))
    ds = StoreDataset(
        feats,
        np.array([1, 0]),
        np.array([6, 0]),
        np.eye(8, dtype=bool)[[6, 0]],
        None,
        norm,
        (2, 5, 3),
        (7, 6, 4),
    )
    text, audio, vision, y, mask, w = ds[0]
    assert text.shape == (2, 7) and not text.any() and vision.shape == (3, 4) and not vision.any()
    assert np.allclose(audio, audio_input(feats.frames[1], norm, 5)) and y == 6 and mask[6] and w == 1.0
    assert len(ds) == 2
    ds.augment = lambda a: a + 1.0  # a training set's augmentation is applied to the normalised input
    assert np.allclose(ds[0][1], audio_input(feats.frames[1], norm, 5) + 1.0)
    bad = StoreDataset(
        feats, np.array([0]), np.array([0]), np.ones((1, 8), bool), None, FrameNorm(), (2, 5, 3), (7, 9, 4)
    )
    with pytest.raises(ValueError, match="columns"):
        bad[0]


def test_the_model_object_applies_its_declared_normalisation() -> None:
    """LoadedModel.inputs (whole clip and span) feeds the frames normalised as its config.json declares."""
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.extractors.base import FrameFeatures
    from dmd_pipeline.extractors.words import Segment
    from dmd_pipeline.features import FeatureBundle
    from dmd_pipeline.model import LoadedModel
    from dmd_pipeline.models.dmd import DMDSystem

    torch.manual_seed(0)
    cfg = get_preset("voice_emotion", feature_dims=(384, 6, 66), seq_lens=(8, 10, 8))
    rng = np.random.default_rng(0)
    mu, sd = rng.normal(0, 1, 6), rng.uniform(0.5, 2, 6)
    norm = FrameNorm("clip", mu, sd)
    meta = {"audio_norm": norm.to_meta(), "modalities": ["audio"], "aligned": False}
    model = LoadedModel(DMDSystem(cfg), meta, "m", Path("/x"), ["audio"], "classification", None)
    assert model.audio_norm.mode == "clip"
    values = rng.normal(2, 3, (8, 6)).astype(np.float32)
    frames = FrameFeatures(values, np.arange(8) * 0.1 + 0.05, [f"c{i}" for i in range(6)])
    bundle = FeatureBundle(text=None, acoustic=frames, visual=None, words=[], segments=[], metadata={})
    whole = model.inputs(bundle)
    assert np.allclose(whole["audio"][:8], norm.apply(values), atol=1e-5) and not whole["audio"][8:].any()
    span = model.inputs(bundle, Segment(0.2, 0.6, "", []), ext=object(), present=["audio"])
    assert np.allclose(span["audio"][:4], norm.apply(values[2:6]), atol=1e-5)  # the span's own statistics
    plain = LoadedModel(
        DMDSystem(cfg), {"aligned": False}, "m", Path("/x"), ["audio"], "classification", None
    )
    assert np.allclose(plain.inputs(bundle)["audio"][:8], values)
    from dmd_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="audio_norm"):
        LoadedModel(
            DMDSystem(cfg),
            {"audio_norm": {"mode": "clip", "mean": [0.0], "std": [1.0]}},
            "m",
            Path("/x"),
            ["audio"],
            "classification",
            None,
        )


@pytest.mark.slow
def test_whisper_base_layers_s5_equals_the_store_features(shared: Path) -> None:
    """The analyze setting gives what the corpus feature store kept for a clip (float16 there), except the
    last 100 ms frame when the clip's 20 ms frames are not a multiple of 5 (the store pads that group with
    its last frame, the setting averages the frames there are)."""
    from dmd_pipeline.data.corpus_features import read_audio16
    from dmd_pipeline.extractors.whisper_encoder import AcousticFeatureSet
    from dmd_pipeline.extractors.whisper_layers import WhisperLayersExtractor

    clip = shared / "data" / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.flac"
    if not clip.is_file():
        pytest.skip(f"{clip} is absent")
    audio = read_audio16(clip)
    rec = _encode_one(WhisperLayersExtractor(), clip, None, 0, pool=5)
    setting = AcousticFeatureSet("whisper-base-layers-s5")
    got = setting.extract(audio, 16000)
    stored = layer_major(rec["frames"])
    n_t = int(rec["n_frames"])
    assert got.values.shape == stored.shape == (-(-n_t // 5), 3584)
    whole = n_t // 5
    scale = np.abs(got.values[:whole]).max()
    assert np.allclose(got.values[:whole], stored[:whole], atol=2e-3 * scale, rtol=1e-3)
    assert setting.hop_s == pytest.approx(0.1) and got.times[0] == pytest.approx(0.05)
