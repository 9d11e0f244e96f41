"""Calibrated class probabilities: the temperature fit recovers a known miscalibration, ECE on constructed
cases, the calibration block validated on load and applied by the model, and `dmd train` / `dmd evaluate`
fitting, recording and reporting it."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from make_synthetic_mmsa import write_synthetic_pickle
from typer.testing import CliRunner

from dmd_pipeline.calibration import (
    T_MAX,
    T_MIN,
    Calibration,
    calibration_figures,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)
from dmd_pipeline.cli.app import app
from dmd_pipeline.errors import ConfigError, ModelConfigError

torch.set_num_threads(1)
runner = CliRunner()


def _calibrated_sample(n: int = 20000, c: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution (labels drawn from it): calibrated by
    construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, c))
    p = softmax(z)
    u = rng.random(n)[:, None]
    y = (u > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(y, c - 1)


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_fitted_temperature_recovers_a_known_miscalibration(scale: float) -> None:
    z, y = _calibrated_sample()
    logits = z * scale  # over-confident (x3) or under-confident (x0.5)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(scale, rel=0.05)
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(softmax(logits / t), y)
    assert after < before / 3
    assert after < 0.02  # 20,000 examples drawn from the calibrated distribution itself
    assert nll(logits, y, t) <= nll(logits, y, 1.0)
    # the fit is a minimum: nudging T either way does not lower the NLL
    assert nll(logits, y, t) <= min(nll(logits, y, t * 1.02), nll(logits, y, t / 1.02))


def test_an_already_calibrated_model_keeps_temperature_one() -> None:
    z, y = _calibrated_sample(seed=1)
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.05)


def test_temperature_stays_in_its_bounds_and_bad_input_is_refused() -> None:
    z = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0]])
    y = np.array([0, 1, 0])  # perfectly separated: the NLL falls as T -> 0
    assert fit_temperature(z, y) == pytest.approx(T_MIN, rel=1e-3)
    assert fit_temperature(z, 1 - y) == pytest.approx(T_MAX, rel=1e-3)  # always wrong: as flat as allowed
    with pytest.raises(ConfigError, match="class indices"):
        fit_temperature(z, np.array([0, 2, 0]))
    with pytest.raises(ConfigError, match="one label per row"):
        fit_temperature(z, np.array([0, 1]))
    with pytest.raises(ConfigError, match="at least one"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0))


def test_ece_on_a_constructed_case() -> None:
    # 10 examples at confidence 0.95 of which 5 are right (gap 0.45), 10 at 0.55 all right (gap 0.45 the other
    # way) and 20 at 0.75 of which 15 right (gap 0): ECE = 10/40*0.45 + 10/40*0.45 + 0 = 0.225
    probs = np.array([[0.95, 0.05]] * 10 + [[0.55, 0.45]] * 10 + [[0.25, 0.75]] * 20)
    labels = np.array([0] * 5 + [1] * 5 + [0] * 10 + [1] * 15 + [0] * 5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.225)
    bins = reliability_bins(probs, labels)
    assert len(bins) == 15 and sum(b["n"] for b in bins) == 40
    full = [b for b in bins if b["n"]]
    assert [(b["n"], b["accuracy"]) for b in full] == [(10, 1.0), (20, 0.75), (10, 0.5)]
    assert [b["confidence"] for b in full] == pytest.approx([0.55, 0.75, 0.95])
    assert all(b["accuracy"] is None and b["confidence"] is None for b in bins if not b["n"])
    # a bin holds (k/15, (k+1)/15]: a confidence of exactly 2/3 falls in bin 9, not 10
    edge = np.array([[2 / 3, 1 / 3]])
    assert [b["n"] for b in reliability_bins(edge, np.array([0]))].index(1) == 9
    # perfectly calibrated bins: ECE 0; one bin: ECE = |accuracy - confidence|
    assert expected_calibration_error(np.array([[0.5, 0.5]] * 2), np.array([0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(abs(30 / 40 - 0.75))


def test_calibration_block_round_trip_and_validation(tmp_path) -> None:
    z, y = _calibrated_sample(n=3000, seed=2)
    cal = fit_calibration(z * 2.0, y, {"split": "valid", "data": "x.pkl"})
    block = json.loads(json.dumps(cal.to_meta()))
    assert block["method"] == "temperature" and block["fitted_on"] == {
        "split": "valid",
        "data": "x.pkl",
        "n": 3000,
    }
    assert block["ece_after"] < block["ece_before"] and block["n_bins"] == 15
    back = Calibration.from_meta({"calibration": block}, "cfg.json")
    assert back is not None and back.temperature == cal.temperature
    assert np.allclose(back.probabilities(z), softmax(z / cal.temperature))
    assert Calibration.from_meta({}, "cfg.json") is None
    bad = [
        ({"method": "temperature", "temperature": "2"}, "finite number"),
        ({"method": "temperature", "temperature": True}, "finite number"),
        ({"method": "temperature", "temperature": 0.0}, "outside"),
        ({"method": "temperature", "temperature": 1e6}, "outside"),
        ({"method": "platt", "temperature": 1.0}, "method"),
        ([1.0], "must be an object"),
    ]
    for value, msg in bad:
        with pytest.raises(ModelConfigError, match=msg) as err:
            Calibration.from_meta({"calibration": value}, "my/config.json")
        assert "my/config.json" in str(err.value)
    with pytest.raises(ModelConfigError, match="regression"):
        Calibration.from_meta({"calibration": block}, "cfg.json", classifier=False)


def test_figures_without_a_temperature_report_before_only() -> None:
    z, y = _calibrated_sample(n=500, seed=3)
    fig = calibration_figures(z, y, None)
    assert fig["ece_after"] is None and fig["bins_after"] is None and fig["temperature"] is None
    assert fig["ece_before"] == pytest.approx(expected_calibration_error(softmax(z), y))
    assert 0.0 <= fig["accuracy"] <= 1.0 and math.isfinite(fig["nll_before"])


def _train(data, out, *extra):
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--seed",
        "7",
    ]
    args += ["--batch-size", "8", "--update-epochs", "1", "--num-classes", "auto"]
    args += ["--set", "dst_feature_dim=8", "--set", "nheads=2", "--set", "nlevels=1"]
    return runner.invoke(app, [*args, "--set", "conv1d_kernel_size=[3,3,3]", *extra])


@pytest.mark.slow  # one tiny training in-process (~3 s) and three evaluations
def test_train_fits_records_and_evaluate_reports(tmp_path) -> None:
    from dmd_pipeline.analysis.registry import load_model

    data = write_synthetic_pickle(tmp_path / "aligned_50.pkl", n_train=16, n_valid=12, n_test=6)
    out = tmp_path / "cls"
    res = _train(data, out)
    assert res.exit_code == 0, res.output
    assert "calibration: temperature" in res.output and "fitted on the valid split (n=12" in res.output
    meta = json.loads((out / "config.json").read_text())
    block = meta["calibration"]
    assert block["method"] == "temperature" and T_MIN <= block["temperature"] <= T_MAX
    assert block["fitted_on"]["split"] == "valid" and block["fitted_on"]["data"] == "aligned_50.pkl"
    assert block["fitted_on"]["n"] == 12 and block["nll_after"] <= block["nll_before"] + 1e-9

    # the model applies it: predict/forward give the raw logits divided by T
    model = load_model(out)
    assert model.calibration is not None and model.calibration.temperature == block["temperature"]
    rng = np.random.default_rng(0)
    dims, lens = model.dims, [int(x) for x in model.config.seq_lens]
    batch = [
        {
            m: rng.normal(size=(n, dims[m])).astype(np.float32)
            for m, n in zip(("text", "audio", "vision"), lens, strict=True)
        }
        for _ in range(3)
    ]
    raw = model.predict(batch, calibrated=False)
    assert np.allclose(model.predict(batch), raw / block["temperature"], atol=1e-6)
    assert np.allclose(model.forward(batch)["logits"], raw / block["temperature"], atol=1e-5)

    # dmd evaluate: ECE before/after in the JSON and the table, the reliability diagram with --report
    png = tmp_path / "reliability.png"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(out),
            "--data",
            str(data),
            "--split",
            "valid",
            "--json",
            "--report",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output[res.output.index("{") :])
    cal = doc["calibration"]
    assert cal["n_bins"] == 15 and cal["n"] == 12 and cal["temperature"] == block["temperature"]
    assert cal["ece_before"] == pytest.approx(block["ece_before"], rel=1e-5)
    assert cal["ece_after"] == pytest.approx(block["ece_after"], rel=1e-5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(data)])
    assert (
        res.exit_code == 0
        and "calibration (15-bin ECE, n=6)" in res.output
        and "calibrated (T=" in res.output
    )

    # --report is checked before anything runs
    res = runner.invoke(
        app, ["evaluate", "--model", str(out), "--data", str(data), "--report", str(tmp_path / "r.txt")]
    )
    assert res.exit_code == 2 and "PNG" in res.output

    # a corrupt block is refused on load, naming the file
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    meta["calibration"]["temperature"] = -1.0
    (bad / "config.json").write_text(json.dumps(meta))
    res = runner.invoke(app, ["evaluate", "--model", str(bad), "--data", str(data)])
    assert res.exit_code == 2 and "calibration.temperature" in res.output and "config.json" in res.output


@pytest.mark.slow  # one tiny regression training (~2 s)
def test_regression_models_get_no_temperature(tmp_path) -> None:
    data = write_synthetic_pickle(tmp_path / "aligned_50.pkl", n_train=8, n_valid=4, n_test=4)
    out = tmp_path / "reg"
    res = _train(data, out, "--num-classes", "1")
    assert res.exit_code == 0, res.output
    assert "calibration" not in json.loads((out / "config.json").read_text())
    assert "calibration:" not in res.output
    res = runner.invoke(
        app, ["evaluate", "--model", str(out), "--data", str(data), "--report", str(tmp_path / "r.png")]
    )
    assert res.exit_code == 2 and "regression model" in res.output
