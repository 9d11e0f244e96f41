"""Whisper base in torch (extractors/whisper_layers.py): CTranslate2 weights read from model.bin, the final
state equal to CTranslate2's ``encode`` within tolerance, every intermediate state, chunking and pooling,
and the ``whisper-base*`` acoustic settings (layout, rate, cache key, serving several models)."""

from __future__ import annotations

import csv
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dmd_pipeline.extractors.whisper_encoder import (
    ACOUSTIC_SETTINGS,
    AcousticFeatureSet,
    acoustic_rate_hz,
    encoder_part,
)
from dmd_pipeline.extractors.whisper_layers import (
    WhisperLayersExtractor,
    WhisperTorchEncoder,
    load_torch_encoder,
    log_mel,
    pool_time,
    read_ct2_variables,
)
from dmd_pipeline.model_files import whisper_base_dir, whisper_model_dir

# CTranslate2 computes the float16-stored weights in float32 on CPU (compute_type="float32"); the torch
# encoder does the same in another order of operations. Documented tolerance of the final state (values up
# to ~20, RMS ~1.3): max |diff| <= 1e-2 and RMS diff <= 5e-5 (measured over 20 RAVDESS clips: up to 3.9e-3, RMS 4e-6).
MAX_ABS_TOL = 1e-2
RMS_TOL = 5e-5


def _voice(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced, amplitude-modulated tone with a gliding pitch plus a little noise (speech-like spectrum)."""
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    y = 0.2 * y + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return y.astype(np.float32)


def _ct2_encode(folder: Path, mel: np.ndarray) -> np.ndarray:
    import ctranslate2

    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32", intra_threads=1)
    out = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
    return np.asarray(out, dtype=np.float32)[0]


def _assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    diff = ours - ref
    assert np.abs(diff).max() <= MAX_ABS_TOL, np.abs(diff).max()
    assert float(np.sqrt(np.mean(diff**2))) <= RMS_TOL, float(np.sqrt(np.mean(diff**2)))


@pytest.fixture(scope="module")
def base() -> WhisperLayersExtractor:
    return WhisperLayersExtractor()


def test_reads_the_encoder_variables_of_model_bin() -> None:
    v = read_ct2_variables(whisper_base_dir() / "model.bin")
    assert all(k.startswith("encoder/") for k in v)
    assert v["encoder/conv1/weight"].shape == (512, 80, 3) and v["encoder/conv1/weight"].dtype == np.float16
    assert v["encoder/conv2/weight"].shape == (512, 512, 3)
    assert v["encoder/position_encodings/encodings"].shape == (1500, 512)
    assert int(v["encoder/num_heads"]) == 8
    blocks = {k.split("/")[1] for k in v if k.split("/")[1].removeprefix("layer_").isdigit()}
    assert blocks == {f"layer_{i}" for i in range(6)}
    dec = read_ct2_variables(whisper_base_dir() / "model.bin", prefix="decoder/embeddings/")
    assert list(dec) == ["decoder/embeddings/weight"] and dec["decoder/embeddings/weight"].shape[1] == 512


def test_reader_refuses_truncated_and_unknown_files(tmp_path: Path) -> None:
    src = (whisper_base_dir() / "model.bin").read_bytes()[:5000]
    cut = tmp_path / "cut.bin"
    cut.write_bytes(src)
    with pytest.raises(ValueError, match="truncated"):
        read_ct2_variables(cut)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(struct.pack("<I", 99) + src[4:])
    with pytest.raises(ValueError, match="version 99"):
        read_ct2_variables(odd)


@pytest.mark.slow
def test_final_state_equals_ctranslate2_encode_and_all_states_are_returned() -> None:
    enc = load_torch_encoder()
    assert (enc.dim, enc.n_blocks, enc.n_heads, enc.n_mels) == (512, 6, 8, 80)
    mel = log_mel(_voice(3.3))
    assert mel.shape == (80, 330)
    states = enc(mel)
    assert len(states) == 8 and all(s.shape == (1, 165, 512) for s in states)
    _assert_close(states[-1][0].numpy(), _ct2_encode(whisper_base_dir(), mel))
    # the states are different layers, not copies; the last block's raw output is not the normalised one
    flat = [s[0].numpy() for s in states]
    assert all(not np.allclose(flat[i], flat[i + 1], atol=1e-3) for i in range(7))
    assert np.allclose(flat[7].mean(-1), 0, atol=0.3)  # LayerNorm output, centred per frame (before beta)
    with pytest.raises(ValueError, match="position table"):
        enc(np.zeros((80, 3002), np.float32))


@pytest.mark.slow
def test_the_same_code_runs_the_bundled_tiny_en() -> None:
    folder = whisper_model_dir()
    enc = WhisperTorchEncoder(read_ct2_variables(folder / "model.bin"))
    assert (enc.dim, enc.n_blocks) == (384, 4)
    mel = log_mel(_voice(2.0, seed=1))
    _assert_close(enc(mel)[-1][0].numpy(), _ct2_encode(folder, mel))


@pytest.mark.slow
def test_hidden_states_chunks_stride_and_edges(base: WhisperLayersExtractor) -> None:
    assert base.layer_states() == [0, 1, 2, 3, 4, 5, 7]
    y = _voice(9.0)  # two chunks of 4.5 s: their frames tile the time axis
    hs = base.hidden_states(y)
    assert hs.shape == (7, 450, 512) and hs.dtype == np.float32 and np.isfinite(hs).all()
    first = base.hidden_states(y[:72000])  # the first chunk alone gives the same first 225 frames
    assert np.allclose(hs[:, :225], first, atol=1e-4)
    s4 = base.hidden_states(y, stride=4)
    assert s4.shape == (7, 113, 512)
    assert np.allclose(s4[:, 0], hs[:, :4].mean(1), atol=1e-5)
    assert np.allclose(s4[:, -1], hs[:, 448:].mean(1), atol=1e-5)  # the last run has 2 frames
    assert base.hidden_states(np.zeros(0, np.float32)).shape == (7, 0, 512)
    assert np.array_equal(base.encode(y[:8000]), base.hidden_states(y[:8000]))  # corpus_features' interface
    assert base.identity["states"] == [0, 1, 2, 3, 4, 5, 7] and len(base.identity["model"]) == 64
    tiny = base.hidden_states(np.full(100, np.nan, np.float32), states=[7])
    assert tiny.shape == (1, 1, 512) and np.isfinite(tiny).all()


def test_pool_time_means_runs() -> None:
    x = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)
    p = pool_time(x, 3)
    assert p.shape == (2, 3, 3)
    assert np.allclose(p[:, 1], x[:, 3:6].mean(1)) and np.allclose(p[:, 2], x[:, 6])
    assert pool_time(x, 1) is x


# ---- the acoustic settings ------------------------------------------------------------------------
def test_setting_names_rates_and_cache_keys() -> None:
    from dmd_pipeline.pipeline import ExtractionConfig

    assert ACOUSTIC_SETTINGS[:3] == ("librosa", "whisper", "whisper+librosa")
    assert {"whisper-base", "whisper-base-layers", "whisper-base-layers-s2+librosa"} <= set(ACOUSTIC_SETTINGS)
    assert encoder_part("whisper-base-layers-s4+librosa") == "whisper-base-layers-s4"
    assert encoder_part("librosa") is None
    rates = {
        s: acoustic_rate_hz(s)
        for s in ("librosa", "whisper", "whisper-base-layers-s2", "whisper-base-layers-s4+librosa")
    }
    assert rates == {
        "librosa": 100.0,
        "whisper": 50.0,
        "whisper-base-layers-s2": 25.0,
        "whisper-base-layers-s4+librosa": 12.5,
    }
    hashes = {ExtractionConfig(acoustic=s).feature_hash() for s in ACOUSTIC_SETTINGS}
    assert len(hashes) == len(ACOUSTIC_SETTINGS)  # every setting is its own cache key
    with pytest.raises(ValueError, match="unknown acoustic setting"):
        encoder_part("whisper-large")


@pytest.mark.slow
def test_settings_layout_layer_major_and_pooled_librosa() -> None:
    y = _voice(2.5)
    last = AcousticFeatureSet("whisper-base").extract(y, 16000)
    assert last.values.shape == (125, 512) and last.names[0] == "whisper_base_0"
    layers = AcousticFeatureSet("whisper-base-layers")
    f = layers.extract(y, 16000)
    assert layers.dim == 3584 and f.values.shape == (125, 3584)
    assert f.names[512] == "whisper_base_l1_0" and f.names[-1] == "whisper_base_l6_511"
    # layer-major: reshape(T, 7, 512); layer 6 is the final state of the whisper-base setting
    assert np.array_equal(f.values.reshape(125, 7, 512)[:, 6], last.values)
    s4 = AcousticFeatureSet("whisper-base-layers-s4+librosa")
    g = s4.extract(y, 16000)
    assert s4.hop_s == pytest.approx(0.08) and g.values.shape == (32, 3609)
    assert np.allclose(g.values[0, :3584], f.values[:4].mean(0), atol=1e-5)
    assert g.times[0] == pytest.approx(0.04) and np.allclose(np.diff(g.times), 0.08)
    lib = s4.librosa.extract(y, 16000)
    k = lib.names.index("rms_db")
    assert g.values[1, 3584 + k] == pytest.approx(lib.values[8:16, k].mean(), abs=1e-4)  # 8 librosa frames


def test_one_extraction_serves_models_on_one_encoder() -> None:
    from dmd_pipeline.analysis.extraction import acoustic_setting
    from dmd_pipeline.errors import ConfigError

    def m(name: str, setting: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, acoustic_setting=setting, modalities=["audio"])

    assert acoustic_setting([m("a", "whisper-base-layers-s2")]) == "whisper-base-layers-s2+librosa"
    both = [m("a", "whisper-base"), m("b", "whisper-base+librosa")]
    assert acoustic_setting(both) == "whisper-base+librosa"
    with pytest.raises(ConfigError, match="different Whisper encoder") as info:
        acoustic_setting([m("tiny", "whisper"), m("layers", "whisper-base-layers")])
    assert "tiny" in str(info.value) and "layers" in str(info.value)


# ---- real data ------------------------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.slow
def test_ravdess_clip_final_state_equals_ctranslate2(shared: Path, base: WhisperLayersExtractor) -> None:
    import soundfile as sf

    from dmd_pipeline.extractors.transcribe import to_16k

    d = shared / "data" / "ravdess"
    if not (d / "labels.csv").is_file():
        pytest.skip(f"{d} is absent")
    row = next(csv.DictReader((d / "labels.csv").open(encoding="utf-8")))
    y, sr = sf.read(d / row["file"], dtype="float32")
    y = y.mean(axis=1) if y.ndim == 2 else y
    y = to_16k(y, sr) if sr != 16000 else y
    mel = log_mel(y)
    ref = _ct2_encode(whisper_base_dir(), mel)
    _assert_close(base.hidden_states(y, states=[7])[0], ref)


# ---- end to end: a layers model with the pooling head, served by dmd analyze's one extraction ------------
@pytest.mark.slow
def test_layers_model_with_pooling_head_analyses_speech(tmp_path: Path, tmp_path_factory) -> None:
    import torch
    from media_factory import session_factory

    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip, get_extractor
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.analysis.result import validate_result
    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint
    from dmd_pipeline.pipeline import ExtractionConfig

    setting, dim = "whisper-base-layers-s2", 7 * 512
    names = [f"whisper_base_l{k}_{i}" for k in range(7) for i in range(512)]
    classes = ["angry", "happy", "neutral", "sad"]
    cfg = get_preset(
        "mosi_unaligned",
        feature_dims=(384, dim, 66),
        seq_lens=(8, 50, 8),
        dst_feature_dim=8,
        nheads=2,
        nlevels=1,
        num_classes=4,
        head="stats",
        audio_layers=7,
    )
    torch.manual_seed(0)
    spec = {
        "config": ExtractionConfig.for_setting(False, acoustic=setting, asr="none").to_dict(),
        "dims": {"text": 384, "audio": dim, "vision": 66},
        "acoustic": setting,
        "names": {"audio": names},
    }
    meta = {
        "name": "layers-voice",
        "modalities": ["audio"],
        "task": "classification",
        "class_names": classes,
        "feature_spec": {"feature_spec": spec, "aligned": False, "class_names": classes},
        "analysis_window_s": 4.0,
    }
    save_checkpoint(tmp_path / "layers-voice", DMDSystem(cfg), meta)
    model = load_model(tmp_path / "layers-voice")
    assert model.acoustic_setting == setting
    opts = AnalyzeOptions(asr="none")
    assert get_extractor([model], opts).config.acoustic == "whisper-base-layers-s2+librosa"
    wav = session_factory(tmp_path_factory).speech_wav("The weather is lovely today.")
    r = analyze_clip(wav, [model], opts)
    assert validate_result(r.to_dict()) == []
    probs = r.segments[0].predictions["layers-voice"].probabilities
    assert set(probs) == set(classes) and abs(sum(probs.values()) - 1.0) < 1e-5
