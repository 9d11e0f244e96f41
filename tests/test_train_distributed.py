"""Training on several processes (torch.distributed DDP, gloo on CPU): the same global batch on 1 and 2
processes gives the same losses, gradients and parameters; ``dmd train --nproc 2``; resume; usage errors.

Two spawned CPU processes are started twice (about 5-10 s each on a busy 2-core machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from make_synthetic_mmsa import make_splits, tiny_config, write_synthetic_pickle
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.data.datasets import dataset_from_split
from dmd_pipeline.data.mmsa import sanitize_split
from dmd_pipeline.models import DMDSystem
from dmd_pipeline.training import distributed
from dmd_pipeline.training.trainer import TrainConfig, Trainer, make_loader, set_seed

torch.set_num_threads(1)
runner = CliRunner()
NO_DROPOUT = {
    k: 0.0
    for k in (
        "text_dropout", "embed_dropout", "attn_dropout", "attn_dropout_a", "attn_dropout_v", "relu_dropout",
        "res_dropout", "output_dropout",
    )
}  # fmt: skip
#: batch 8 on 2 processes = 4 each. "uneven": batches 8, 8, 3 in one accumulation group (one step; the
#: last batch split 2/1). "placeholder": 8, 8 | 1 (two steps; rank 1's share of the last batch is empty).
#: float32 is what training uses; float64 shows that the agreement is exact up to rounding.
SCENARIOS: dict[str, dict[str, Any]] = {
    "uneven": {"n_train": 19, "update_epochs": 3, "dtype": torch.float32},
    "placeholder64": {"n_train": 17, "update_epochs": 2, "dtype": torch.float64},
}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
TINY = ["--set", "dst_feature_dim=8", "--set", "nheads=2", "--set", "nlevels=1", "--set",
        "conv1d_kernel_size=[3,3,3]"]  # fmt: skip


def _setup(
    n_train: int, update_epochs: int, max_epochs: int = 1, dtype: torch.dtype = torch.float32
) -> tuple[DMDSystem, TrainConfig, Any, Any]:
    cfg = tiny_config(**NO_DROPOUT)
    splits = {k: sanitize_split(v) for k, v in make_splits(n_train, 6, 2, seed=1).items()}
    train = dataset_from_split(cfg, splits["train"], "train")
    valid = dataset_from_split(cfg, splits["valid"], "valid")
    for ds in (train, valid):
        ds.text, ds.audio, ds.vision = ds.text.to(dtype), ds.audio.to(dtype), ds.vision.to(dtype)
    set_seed(0)
    system = DMDSystem(cfg).to(dtype)
    tcfg = TrainConfig.from_model_config(
        cfg, batch_size=8, update_epochs=update_epochs, learning_rate=1e-4, max_epochs=max_epochs,
        early_stop=50, quiet=True, seed=5,
    )  # fmt: skip
    return system, tcfg, train, valid


def _fit(n_train: int, update_epochs: int, dtype: torch.dtype) -> dict[str, Any]:
    """One epoch; per-batch (global) losses, the last group's gradients and the parameters after it."""
    system, tcfg, train, valid = _setup(n_train, update_epochs, dtype=dtype)
    trainer = Trainer(system, tcfg)
    losses: list[float] = []
    real = trainer._batch_loss

    def recording(batch: Any) -> Any:
        got = real(batch)
        losses.append(float(got[1].detach()))
        return got

    trainer._batch_loss = recording  # type: ignore[method-assign]
    result = trainer.fit(train, valid)
    rec = result.history[0]
    return {
        "losses": losses,
        "valid_loss": rec.valid_loss,
        "steps": rec.optimizer_steps,
        "grads": {n: p.grad.clone() for n, p in system.named_parameters() if p.grad is not None},
        "no_grad": sorted(n for n, p in system.named_parameters() if p.grad is None),
        "params": {n: p.detach().clone() for n, p in system.named_parameters()},
    }


def _resumed(folder: Path) -> dict[str, torch.Tensor]:
    """Two epochs, interrupted after the first and resumed from ``folder``: the final parameters."""
    system, tcfg, train, valid = _setup(17, 2, max_epochs=2, dtype=torch.float64)

    def stop(rec: Any) -> None:
        if rec.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(system, tcfg).fit(train, valid, checkpoint_dir=folder, on_epoch_end=stop)
    system, tcfg, train, valid = _setup(17, 2, max_epochs=2, dtype=torch.float64)
    Trainer(system, tcfg).fit(train, valid, checkpoint_dir=folder, resume=True)
    return {n: p.detach().clone() for n, p in system.named_parameters()}


def _worker(out: str) -> None:
    """One rank: every scenario, then the resume run; each rank saves what it got under ``out``."""
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    info, _ = distributed.init_process_group("cpu")
    if not info.is_main:  # only rank 0 may write into the checkpoint folder
        import dmd_pipeline.models.checkpoint as checkpoint
        import dmd_pipeline.utils as utils

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError(f"rank {info.rank} wrote a file: {args[:1]}")

        for module, name in (
            (utils, "atomic_write_bytes"),
            (utils, "atomic_write_json"),
            (checkpoint, "save_checkpoint"),
        ):
            setattr(module, name, refuse)
    try:
        report: dict[str, Any] = {}
        tensors: dict[str, torch.Tensor] = {}
        for name, sc in SCENARIOS.items():
            got = _fit(**sc)
            report[name] = {k: got[k] for k in ("losses", "valid_loss", "steps", "no_grad")}
            tensors.update({f"{name}.grad.{k}": v for k, v in got["grads"].items()})
            tensors.update({f"{name}.param.{k}": v for k, v in got["params"].items()})
        run = Path(out) / "resume-run"
        tensors.update({f"resumed.{k}": v for k, v in _resumed(run).items()})
        report["run_files"] = sorted(p.name for p in run.iterdir()) if info.is_main else []
        save_file(tensors, str(Path(out) / f"rank{info.rank}.safetensors"))
        (Path(out) / f"rank{info.rank}.json").write_text(json.dumps(report))
    finally:
        distributed.shutdown()


def test_sharded_batches_are_the_single_process_batches() -> None:
    data = list(range(19))
    ref = make_loader(data, 8, shuffle=True, seed=5)  # type: ignore[arg-type]
    shards = [distributed.make_sharded_loader(data, 8, r, 2, seed=5) for r in range(2)]  # type: ignore[arg-type]
    for _ in range(2):  # two epochs: the shuffles move on the same way
        want = [b.tolist() for b in ref]
        for w, ((idx0, live0), (idx1, live1)) in zip(want, zip(*shards, strict=True), strict=True):
            assert idx0.tolist() + idx1.tolist() == w and bool(live0.all()) and bool(live1.all())
    assert [len(b) for b in ref] == [8, 8, 3] and len(shards[0]) == 3
    one = distributed.ShardedBatchSampler([[4]], 1, 2)  # type: ignore[arg-type]
    assert list(one) == [[(4, False)]]  # an empty share: one placeholder, left out of the loss


@pytest.mark.slow  # two spawned processes: ~10 s on a busy 2-core machine
def test_two_processes_match_one_process(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    assert distributed.launch_local(_worker, 2, (str(tmp_path),)) == 0
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for key in ranks[0]:  # the ranks hold the same model (and the same gradients) throughout
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert reports[0] == {**reports[1], "run_files": reports[0]["run_files"]}
    assert "model.safetensors" in reports[0]["run_files"] and "resume" not in reports[0]["run_files"]
    for name, sc in SCENARIOS.items():
        want = _fit(**sc)
        got = reports[0][name]
        assert got["steps"] == want["steps"] and got["no_grad"] == want["no_grad"]
        assert len(want["no_grad"]) == 6  # the dead proj_cosine_* layers: no gradient on 1 or 2 processes
        tol = TOL[sc["dtype"]]
        assert got["losses"] == pytest.approx(want["losses"], rel=tol)  # the first step's losses
        assert got["valid_loss"] == pytest.approx(want["valid_loss"], rel=tol)
        scale = max(float(g.abs().max()) for g in want["grads"].values())
        n_real = 0
        for k, g in want["grads"].items():
            d = ranks[0][f"{name}.grad.{k}"]
            assert d.dtype == sc["dtype"] and torch.allclose(d, g, rtol=tol, atol=0.1 * tol * scale), (
                name,
                k,
            )
            # after the optimiser step(s). In float32 some gradients that are zero in exact arithmetic (the
            # GD units' and attention key biases cancel in a softmax) hold rounding noise, which Adam's first
            # step (about lr * g / |g|) turns into updates of up to lr: those elements are left out.
            real = (
                g.abs() > 0.1 * tol * scale
                if sc["dtype"] == torch.float32
                else torch.ones_like(g, dtype=bool)
            )
            n_real += int(real.sum())
            p, q = want["params"][k], ranks[0][f"{name}.param.{k}"]
            assert torch.allclose(q[real], p[real], rtol=tol, atol=0.1 * tol), (name, k)
        assert n_real > 0.9 * sum(g.numel() for g in want["grads"].values())
    ref_system, tcfg, train, valid = _setup(17, 2, max_epochs=2, dtype=torch.float64)
    Trainer(ref_system, tcfg).fit(train, valid)  # the same two epochs on one process, never interrupted
    for k, p in ref_system.named_parameters():
        assert torch.allclose(ranks[0][f"resumed.{k}"], p.detach(), rtol=1e-10, atol=1e-11), k


@pytest.mark.slow  # two spawned `dmd train` ranks: ~8 s
def test_cli_nproc_2_writes_one_checkpoint(tmp_path: Path) -> None:
    data = write_synthetic_pickle(tmp_path / "aligned_50.pkl", n_train=12, n_valid=4, n_test=4)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--device", "cpu", "--seed", "7",
            "--batch-size", "4", "--update-epochs", "2", "--threads", "1", "--nproc", "2", "-q", *TINY]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.json", "model.safetensors"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["training_time"]["processes"] == 2 and meta["epochs_run"] == 1
    assert set(meta["metrics"]) == {"valid", "test"}
    assert not list(tmp_path.glob("*.tmp")) and sorted(p.name for p in tmp_path.iterdir()) == [
        "aligned_50.pkl",
        "run",
    ]


def test_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_synthetic_pickle(tmp_path / "a.pkl", n_train=4, n_valid=2, n_test=2)
    base = ["train", "--data", str(data), "--out", str(tmp_path / "o"), "--device", "cpu", *TINY]
    res = runner.invoke(app, [*base, "--nproc", "3", "--batch-size", "8"])
    assert res.exit_code == 2 and "--batch-size 8 is not divisible by 3 processes" in res.output
    res = runner.invoke(app, [*base, "--nproc", "3"])  # the preset's batch size (16) counts too
    assert res.exit_code == 2 and "--batch-size 16 is not divisible by 3" in res.output
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "missing.pkl"), "--out", "o", "--nproc", "2"])
    assert res.exit_code == 2 and "data file not found" in res.output  # before any process starts
    res = runner.invoke(app, [*base, "--nproc", "2", "--device", "mps"])
    assert res.exit_code == 2 and ("MPS" in res.output or "not available" in res.output)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    res = runner.invoke(app, [*base, "--nproc", "4"])
    assert res.exit_code == 2 and "started by torchrun as 2 processes" in res.output
    assert not (tmp_path / "o").exists()
