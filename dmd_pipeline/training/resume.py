"""Resumable training state (``dmd train --resume``): after every epoch the trainer writes the model,
optimizer, scheduler and RNG states (safetensors) and the loop's bookkeeping (``state.json``, strict JSON,
never pickle) to ``OUT/resume/``; :func:`load_train_state` restores them into a
:class:`~dmd_pipeline.training.trainer.Trainer` (passed in, so this module does not import the trainer).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from dmd_pipeline.errors import ConfigError
from dmd_pipeline.training import distributed
from dmd_pipeline.training.display import EpochRecord
from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json

RESUME_DIR = "resume"
STATE_FORMAT = "dmd-train-state"
STATE_VERSION = 1


def _enc_float(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become ``{"__float__": "inf"}`` (strict JSON), tuples lists."""
    if isinstance(obj, dict):
        return {str(k): _enc_float(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_enc_float(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    return obj


def _dec_float(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return {k: _dec_float(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_dec_float(v) for v in obj]
    return obj


def save_train_state(
    trainer: Any,
    folder: Path,
    train_loader: DataLoader,
    epoch: int,
    best: float | None,
    best_epoch: int,
    best_metrics: dict[str, float],
    best_state: dict[str, torch.Tensor] | None,
    history: list[EpochRecord],
    rank_rng: list[torch.Tensor] | None = None,
) -> Path:
    """Write the state after ``epoch`` to ``folder/resume/`` (tensors first, ``state.json`` last).

    ``rank_rng``: on several processes, every rank's torch RNG state in rank order (rank 0's is this
    process's), stored as ``rng.torch.rank<r>`` for ranks >= 1 so that each rank's dropout continues.
    """
    import hashlib

    from safetensors.torch import save


    tensors: dict[str, torch.Tensor] = {}
    for k, v in trainer.system.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    if best_state is not None and best_epoch != epoch:  # else the best weights are the current ones
        for k, v in best_state.items():
            tensors[f"best.{k}"] = v.detach().cpu().contiguous().clone()
    opt = trainer.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in opt["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    tensors["rng.torch"] = torch.get_rng_state()
    for r, st in enumerate(rank_rng or []):
        if r:
            tensors[f"rng.torch.rank{r}"] = st.detach().cpu().contiguous().clone()
    gen = getattr(train_loader, "generator", None)
    if gen is not None:
        tensors["rng.loader"] = gen.get_state()
    blob = save(tensors)
    out = folder / RESUME_DIR
    name = f"state-{epoch:05d}.safetensors"
    atomic_write_bytes(out / name, blob)
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "epoch": epoch,
        "file": name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "best": best,
        "best_epoch": best_epoch,
        "best_metrics": best_metrics,
        "best_in_file": "best" if best_state is not None and best_epoch != epoch else "model",
        "history": [asdict(h) for h in history],
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        "scheduler": trainer.scheduler.state_dict(),
        "model_config": trainer.system.config.to_dict(),
        "world_size": max(1, len(rank_rng or [])),
    }
    atomic_write_json(out / "state.json", _enc_float(state))
    for old in out.glob("state-*.safetensors"):  # only after state.json points at the new file
        if old.name != name:
            old.unlink(missing_ok=True)
    return out / "state.json"


def load_train_state(
    trainer: Any, folder: Path, train_loader: DataLoader
) -> tuple[int, float | None, int, dict[str, float], dict[str, torch.Tensor] | None, list[EpochRecord]]:
    """Restore model, optimizer, scheduler and RNG states from ``folder/resume/``; return (epoch, best,
    best_epoch, best_metrics, best_state, history). ConfigError when missing, corrupt or not this model's."""
    import hashlib
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load

    sp = folder / RESUME_DIR / "state.json"
    if not sp.is_file():
        raise ConfigError(
            f"{sp}: no training state to resume (the run finished, or stopped before its first epoch ended)"
        )
    try:
        state = _dec_float(json.loads(sp.read_text(encoding="utf-8")))
        if state.get("format") != STATE_FORMAT or int(state.get("version", 0)) != STATE_VERSION:
            raise ValueError(f"not a {STATE_FORMAT} v{STATE_VERSION} file")
        blob = (sp.parent / str(state["file"])).read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{sp}: unreadable training state: {exc}") from None
    if hashlib.sha256(blob).hexdigest() != state.get("sha256"):
        raise ConfigError(f"{sp}: the state's tensor file does not match its sha256 (corrupt)")

    def norm(obj: Any) -> Any:
        return json.loads(json.dumps(_enc_float(obj)))

    if norm(state.get("model_config")) != norm(trainer.system.config.to_dict()):
        raise ConfigError(f"{sp}: the saved state belongs to another model configuration; cannot resume")
    try:
        tensors = load(blob)
    except SafetensorError as exc:
        raise ConfigError(f"{sp}: unreadable training state tensors: {exc}") from None
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    trainer.system.load_state_dict(model)
    trainer.system.to(trainer.device)
    best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    if state.get("best_in_file") == "model":
        best_state = {k: v.clone() for k, v in model.items()}
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value.to(trainer.device)
    for pid, extra in state["optimizer"]["scalars"].items():
        opt_state.setdefault(int(pid), {}).update(extra)
    groups = []
    for g in state["optimizer"]["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    trainer.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    trainer.scheduler.load_state_dict(state["scheduler"])
    rank = trainer.dist.rank
    if rank == 0:
        torch.set_rng_state(tensors["rng.torch"])
    elif f"rng.torch.rank{rank}" in tensors:
        torch.set_rng_state(tensors[f"rng.torch.rank{rank}"])
    else:  # resumed on more processes than the run had: a fresh, still deterministic, dropout stream
        torch.manual_seed(distributed.rank_seed(trainer.cfg.seed + int(state["epoch"]), rank))
    gen = getattr(train_loader, "generator", None)
    if gen is not None and "rng.loader" in tensors:
        gen.set_state(tensors["rng.loader"])
    history = [EpochRecord(**h) for h in state["history"]]
    return (
        int(state["epoch"]),
        state.get("best"),
        int(state["best_epoch"]),
        dict(state.get("best_metrics") or {}),
        best_state,
        history,
    )
