"""`dmd train` + `dmd evaluate` end to end on a tiny synthetic MMSA pickle (typer CliRunner, in-process)."""

from __future__ import annotations

import json

import pytest
import torch
from make_synthetic_mmsa import write_synthetic_pickle
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app

torch.set_num_threads(1)
runner = CliRunner()
TINY = [
    "--set",
    "dst_feature_dim=8",
    "--set",
    "nheads=2",
    "--set",
    "nlevels=1",
    "--set",
    "conv1d_kernel_size=[3,3,3]",
]


def _train(tmp_path, data, out, *extra):
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--seed",
        "7",
    ]
    args += ["--batch-size", "8", "--update-epochs", "1", *TINY, *extra]
    return runner.invoke(app, args)


@pytest.mark.slow  # two short trainings in-process: ~4 s
def test_train_then_evaluate_end_to_end(tmp_path):
    data = write_synthetic_pickle(tmp_path / "aligned_50.pkl", n_train=16, n_valid=6, n_test=6)
    out = tmp_path / "runs" / "tiny"
    res = _train(tmp_path, data, out)
    assert res.exit_code == 0, res.output
    assert "feature_dims (768, 5, 20) -> (16, 5, 7)" in res.output  # dims taken from the data, and said so
    assert "epoch 1: train loss" in res.output and "Non0_acc_2" in res.output  # plain lines under a pipe
    for name in ("model.safetensors", "config.json", "history.json"):
        assert (out / name).is_file()
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["feature_dims"] == [16, 5, 7] and meta["preset"] == "mosi_aligned"
    assert meta["training_data"]["sha256"] and set(meta["metrics"]) == {"valid", "test"}
    assert len(json.loads((out / "history.json").read_text())) == 2

    res = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(data), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["split"] == "test" and payload["n"] == 6
    m = payload["metrics"]
    for key in (
        "Has0_acc_2",
        "Has0_F1_score",
        "Non0_acc_2",
        "Non0_F1_score",
        "Mult_acc_5",
        "Mult_acc_7",
        "MAE",
        "Corr",
    ):
        assert key in m
    assert m["MAE"] == pytest.approx(meta["metrics"]["test"]["MAE"], rel=1e-6)  # same weights, same numbers
    res = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(data), "--split", "valid"])
    assert res.exit_code == 0 and "valid (n=6)" in res.output and "Mult_acc_7" in res.output
    other = write_synthetic_pickle(
        tmp_path / "unaligned_50.pkl", n_train=4, n_valid=2, n_test=2, aligned=False
    )
    res = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(other)])
    assert res.exit_code == 2 and "do not match the model config" in res.output

    # classification with the number of classes taken from classification_labels, quiet
    out2 = tmp_path / "runs" / "cls"
    res = _train(tmp_path, data, out2, "--num-classes", "auto", "--quiet", "--epochs", "1")
    assert res.exit_code == 0, res.output
    assert "epoch 1:" not in res.output and "DMD training" not in res.output
    assert json.loads((out2 / "config.json").read_text())["config"]["num_classes"] == 3
    res = runner.invoke(app, ["evaluate", "--model", str(out2), "--data", str(data), "--json"])
    assert res.exit_code == 0 and "Acc_3" in json.loads(res.output)["metrics"]


def test_clear_errors(tmp_path):
    data = write_synthetic_pickle(tmp_path / "a.pkl", n_train=4, n_valid=2, n_test=2)
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "missing.pkl" in res.output and "not found" in res.output
    res = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "o"), "--preset", "nope"])
    assert res.exit_code == 2 and "unknown preset" in res.output
    res = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "none"), "--data", str(data)])
    assert res.exit_code == 2 and "not found" in res.output
