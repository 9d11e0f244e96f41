"""``dmd train`` killed with SIGKILL mid-run, then ``--resume``: it continues from the last completed epoch
and ends exactly where an uninterrupted run ends (same losses, same weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_helpers import no_temp_files, start_cli, wait_for
from make_synthetic_mmsa import write_synthetic_pickle
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app

TINY = ["--set", "dst_feature_dim=8", "--set", "nheads=2", "--set", "nlevels=1", "--set",
        "conv1d_kernel_size=[3,3,3]"]  # fmt: skip


def _args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), "--early-stop", "1000",
            "--device", "cpu", "--seed", "7", "--threads", "1", "--batch-size", "8", "--update-epochs", "1",
            "--no-eval-test", "-q", *TINY]  # fmt: skip


def _epoch(out: Path) -> int:
    try:
        return int(json.loads((out / "resume" / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def test_killed_training_resumes_from_its_last_epoch(tmp_path: Path, procs) -> None:
    from safetensors.torch import load_file

    data = write_synthetic_pickle(tmp_path / "aligned_50.pkl", n_train=48, n_valid=8, n_test=4)
    out = tmp_path / "run"
    proc = start_cli(_args(data, out, 1000))
    procs.append(proc)
    wait_for(lambda: _epoch(out) >= 2, 120, "two finished epochs", proc)
    proc.kill()
    proc.wait(timeout=10)
    killed_at = _epoch(out)
    assert killed_at >= 2 and (out / "model.safetensors").is_file()
    total = killed_at + 3

    res = CliRunner().invoke(app, [*_args(data, out, total), "--resume"])
    assert res.exit_code == 0, res.output
    resumed = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in resumed] == list(range(1, total + 1))
    assert not (out / "resume").exists() and not no_temp_files(out)

    ref = tmp_path / "ref"
    res = CliRunner().invoke(app, _args(data, ref, total))  # the same run, never interrupted
    assert res.exit_code == 0, res.output
    reference = json.loads((ref / "history.json").read_text())
    for got, want in zip(resumed, reference, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6, abs=1e-7), got["epoch"]
        assert got["valid_loss"] == pytest.approx(want["valid_loss"], rel=1e-6, abs=1e-7), got["epoch"]
        assert got["lr"] == want["lr"] and got["improved"] == want["improved"]
    a, b = load_file(str(out / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert set(a) == set(b) and all((a[k] - b[k]).abs().max() <= 1e-6 for k in a)


def test_resume_without_state_is_a_usage_error(tmp_path: Path) -> None:
    data = write_synthetic_pickle(tmp_path / "aligned_50.pkl", n_train=16, n_valid=6, n_test=4)
    res = CliRunner().invoke(app, [*_args(data, tmp_path / "nothing", 2), "--resume"])
    assert res.exit_code == 2
    assert "no training state to resume" in res.output and "Traceback" not in res.output
