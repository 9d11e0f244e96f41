"""`dmd train` for categorical data: --num-classes detect, --modalities (zero-filled inputs), --window-s,
and the voice_emotion preset."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from make_synthetic_mmsa import make_splits
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.config import get_preset
from dmd_pipeline.errors import ConfigError
from dmd_pipeline.training.run import _categorical_data, parse_modalities, zero_unused_modalities

torch.set_num_threads(1)
runner = CliRunner()
TINY = ["--set", "dst_feature_dim=8", "--set", "nheads=2", "--set", "nlevels=1", "--set", "conv1d_kernel_size=[3,3,3]"]


def _categorical_pickle(path, n_classes: int = 4):
    splits = make_splits(n_train=16, n_valid=8, n_test=4)
    rng = np.random.default_rng(3)
    for s in splits.values():
        n = len(s["regression_labels"])
        s["classification_labels"] = rng.integers(0, n_classes, n).astype(np.int64)
        s["regression_labels"] = np.full(n, np.nan, np.float32)  # what `dmd extract` writes for categories
    path.write_bytes(pickle.dumps(splits, protocol=4))
    return path


def _train(data, out, *extra: str):
    """`dmd train` of the tiny DMD on ``data`` (CPU, batch 8, a step per batch, audio only) + ``extra``."""
    args = ["train", "--data", str(data), "--out", str(out), "--device", "cpu", "--batch-size", "8",
            "--update-epochs", "1", "--modalities", "audio", *TINY, *extra]
    return runner.invoke(app, args)


def test_detect_and_parse_helpers() -> None:
    numeric = make_splits(n_train=4, n_valid=2, n_test=2)
    assert not _categorical_data(numeric)  # finite regression labels -> regression (the MMSA pickles)
    cat = make_splits(n_train=4, n_valid=2, n_test=2)
    for s in cat.values():
        s["regression_labels"] = np.full(len(s["regression_labels"]), np.nan, np.float32)
    assert _categorical_data(cat)
    assert parse_modalities("voice") == ["audio"] and parse_modalities("a,text") == ["text", "audio"]
    assert parse_modalities(None) is None and parse_modalities("all") is None
    with pytest.raises(ConfigError, match="unknown modality"):
        parse_modalities("smell")


def test_zero_unused_modalities_only_touches_the_others() -> None:
    from dmd_pipeline.data.datasets import dataset_from_split

    splits = make_splits(n_train=4, n_valid=2, n_test=2)
    cfg = get_preset("mosi_aligned", feature_dims=(16, 5, 7), seq_lens=(12, 12, 12))
    for split in splits.values():  # the synthetic data carries NaNs on purpose (the loader zeroes them)
        for key in ("text", "audio", "vision"):
            split[key] = np.nan_to_num(split[key])
    ds = {k: dataset_from_split(cfg, v, k) for k, v in splits.items()}
    audio_before = ds["train"].audio.clone()
    zero_unused_modalities(ds, ["audio"])
    for d in ds.values():
        assert float(d.text.abs().sum()) == 0.0 and float(d.vision.abs().sum()) == 0.0
    assert torch.equal(ds["train"].audio, audio_before) and float(audio_before.abs().sum()) > 0


@pytest.mark.slow
def test_train_audio_only_classifier_records_what_it_used(tmp_path) -> None:
    data = _categorical_pickle(tmp_path / "unaligned_8.pkl")
    out = tmp_path / "run"
    res = _train(data, out, "--epochs", "2", "--window-s", "4", "--quiet")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["num_classes"] == 4  # detected: categorical labels -> classification
    assert meta["modalities"] == ["audio"] and meta["analysis_window_s"] == 4.0
    assert meta["text_input"].startswith("zeros") and meta["vision_input"].startswith("zeros")
    assert "UAR" in meta["metrics"]["valid"] and "Macro_F1" in meta["metrics"]["valid"]
    from dmd_pipeline.analysis.registry import load_model

    assert load_model(out).modalities == ["audio"]  # analysis feeds it zeros for text and vision


def test_voice_emotion_preset() -> None:
    cfg = get_preset("voice_emotion")
    assert cfg.num_classes == 8 and cfg.seq_lens == (8, 50, 8) and cfg.train["key_eval"] == "UAR"
    assert cfg.train["update_epochs"] == 1 and cfg.t_prime == (8, 46, 8)


@pytest.mark.slow
def test_seed_ensemble_trains_saves_and_averages_probabilities(tmp_path) -> None:
    data = _categorical_pickle(tmp_path / "unaligned_8.pkl", n_classes=3)
    out = tmp_path / "ens"
    res = _train(data, out, "--epochs", "1", "--ensemble", "2", "--quiet")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["ensemble_size"] == 2 and [m["seed"] for m in meta["ensemble_members"]] == [1111, 1112]
    for k in (0, 1):  # each member was checkpointed on its own (a killed run keeps finished members)
        assert (out / "members" / str(k) / "model.safetensors").is_file()

    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.models.ensemble import DMDEnsemble

    model = load_model(out)
    assert isinstance(model.system, DMDEnsemble) and model.system.size == 2
    cfg = model.config
    x = [torch.randn(2, cfg.seq_lens[i], cfg.feature_dims[i]) for i in range(3)]
    combined = torch.softmax(model.system.predict(*x), -1)
    members = torch.stack([torch.softmax(m.predict(*x), -1) for m in model.system.members]).mean(0)
    assert torch.allclose(combined, members, atol=1e-6)
    assert not torch.allclose(*[m.predict(*x) for m in model.system.members])  # two different seeds
    out_dict = model.system(*x)
    assert out_dict["edges_homo"].shape == (6, 2) and torch.allclose(out_dict["output_logit"].exp().sum(-1), torch.ones(2))


def test_training_under_a_pipe_prints_a_line_per_epoch(tmp_path) -> None:
    data = _categorical_pickle(tmp_path / "unaligned_8.pkl")
    res = _train(data, tmp_path / "run", "--epochs", "2")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1", "epoch 2"]  # as they happen, not a final table
    assert "UAR" in lines[0] and "valid loss" in lines[0]
