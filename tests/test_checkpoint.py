"""Checkpoints: safetensors + JSON round trip, config/weight mismatch errors, no torch.load / pickle."""

from __future__ import annotations

import json

import pytest
import torch
from make_synthetic_mmsa import make_splits, tiny_config
from safetensors.torch import load_file, save_file

from dmd_pipeline.data.datasets import dataset_from_split
from dmd_pipeline.data.mmsa import sanitize_split
from dmd_pipeline.errors import ConfigError, ModelFileError
from dmd_pipeline.models import DMDSystem
from dmd_pipeline.models.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_checkpoint, save_checkpoint
from dmd_pipeline.training.trainer import predict_dataset, set_seed

torch.set_num_threads(1)


@pytest.fixture()
def saved(tmp_path):
    cfg = tiny_config()
    set_seed(3)
    system = DMDSystem(cfg)
    with torch.no_grad():  # move the GD kernels away from their init so a missed tensor would show
        for p in system.homo_gd.parameters():
            p.add_(0.01)
    save_checkpoint(tmp_path / "ck", system, {"preset": "mosi_aligned", "metrics": {"valid": {"MAE": 0.5}}})
    split = sanitize_split(make_splits(6, 2, 2)["train"])
    return tmp_path / "ck", system, dataset_from_split(cfg, split, "train")


def test_round_trip_identical_predictions_and_state(saved, monkeypatch):
    path, system, ds = saved

    def no_torch_load(*a, **k):
        raise AssertionError("torch.load must not be used on our checkpoints")

    monkeypatch.setattr(torch, "load", no_torch_load)
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    state, state2 = system.state_dict(), loaded.state_dict()
    assert state.keys() == state2.keys()
    assert any(k.startswith("homo_gd.") for k in state) and any(k.startswith("hetero_gd.") for k in state)
    for k in state:
        assert torch.equal(state[k], state2[k]), k
    p1, _, _ = predict_dataset(system, ds)
    p2, _, _ = predict_dataset(loaded, ds)
    assert (p1 == p2).all()
    assert meta["preset"] == "mosi_aligned" and meta["metrics"]["valid"]["MAE"] == 0.5
    assert meta["versions"]["torch"] == torch.__version__ and "dmd_pipeline" in meta["versions"]
    assert loaded.config == system.config


def test_files_are_json_and_safetensors(saved):
    path, system, _ = saved
    meta = json.loads((path / CONFIG_NAME).read_text())
    assert meta["format"] == "dmd-pipeline-checkpoint" and meta["config"]["dst_feature_dim"] == 8
    header_len = int.from_bytes((path / WEIGHTS_NAME).read_bytes()[:8], "little")
    header = json.loads((path / WEIGHTS_NAME).read_bytes()[8 : 8 + header_len])
    assert json.loads(header["__metadata__"]["dmd_config"])["name"] == system.config.name
    assert len(load_file(str(path / WEIGHTS_NAME))) == len(system.state_dict())


def test_shape_mismatch_names_keys(saved):
    path, _, _ = saved
    meta = json.loads((path / CONFIG_NAME).read_text())
    meta["config"]["dst_feature_dim"] = 12
    meta["config"]["nheads"] = 3
    (path / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"shape mismatches: .*weights .* vs config"):
        load_checkpoint(path)


def test_missing_and_unexpected_keys(saved):
    path, _, _ = saved
    tensors = load_file(str(path / WEIGHTS_NAME))
    removed = "hetero_gd.W_edge.weight"
    tensors.pop(removed)
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, str(path / WEIGHTS_NAME))
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path / WEIGHTS_NAME)
    assert removed in str(err.value) and "extra.weight" in str(err.value)


def test_missing_or_foreign_files(tmp_path, saved):
    with pytest.raises(ModelFileError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    path, _, _ = saved
    (path / CONFIG_NAME).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelFileError, match="not a dmd-pipeline checkpoint"):
        load_checkpoint(path)
