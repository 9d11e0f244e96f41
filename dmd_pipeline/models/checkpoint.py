"""Our checkpoint format: ``model.safetensors`` (all DMDSystem state) + ``config.json`` (config + metadata).

Never pickle: weights go through safetensors, metadata through JSON, so loading a checkpoint cannot run
code. ``config.json`` holds ``{"format", "format_version", "config": DMDConfig.to_dict(), ...meta}``, where
meta carries the preset, feature spec, metrics, versions and the training-data path/hash. Both files are
written atomically (temp file + rename), weights first, so a crash mid-save leaves the previous pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dmd_pipeline.errors import ConfigError, ModelFileError
from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "dmd-pipeline-checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """Versions recorded in every checkpoint (torch, numpy, safetensors, dmd_pipeline)."""
    from importlib import metadata

    import numpy
    import safetensors

    try:
        from dmd_pipeline import __version__ as ours
    except ImportError:  # package imported as a namespace (e.g. a stale editable install)
        ours = metadata.version("dmd-pipeline")
    return {
        "dmd_pipeline": ours,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
    }


def _jsonable(obj: Any) -> Any:
    """Make metadata JSON-safe: numpy/torch scalars -> numbers, tuples -> lists, NaN/inf -> None."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.generic, torch.Tensor)) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def state_tensors(system: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every entry of ``system.state_dict()`` as a contiguous CPU tensor that owns its memory."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in system.state_dict().items()}


def save_checkpoint(out_dir: str | Path, system: Any, meta: dict | None = None) -> None:
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json`` for a DMDSystem.

    ``meta`` (JSON-able) is stored beside the config: e.g. preset, feature_spec, metrics, train_config,
    training_data {path, sha256}. Versions and the format tag are added here.
    """
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = system.config
    config_dict = config.to_dict()
    tensors = state_tensors(system)
    header = {"format": "pt", "dmd_format": FORMAT, "dmd_config": json.dumps(_jsonable(config_dict))}
    atomic_write_bytes(out / WEIGHTS_NAME, save(tensors, metadata=header))
    payload = {
        **_jsonable(dict(meta or {})),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": _jsonable(config_dict),
        "versions": versions(),
        "n_tensors": len(tensors),
    }
    atomic_write_json(out / CONFIG_NAME, payload)


def _paths(path_or_dir: str | Path) -> tuple[Path, Path]:
    p = Path(path_or_dir)
    if p.is_dir():
        return p / WEIGHTS_NAME, p / CONFIG_NAME
    if p.name == CONFIG_NAME:
        return p.parent / WEIGHTS_NAME, p
    return p, p.parent / CONFIG_NAME


def read_checkpoint_meta(path_or_dir: str | Path) -> dict:
    """The parsed ``config.json`` of a checkpoint (no weights loaded)."""
    _, cfg_path = _paths(path_or_dir)
    if not cfg_path.is_file():
        raise ModelFileError(f"{cfg_path}: checkpoint config not found")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelFileError(f"{cfg_path}: invalid JSON: {exc}") from exc
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ModelFileError(
            f"{cfg_path}: not a dmd-pipeline checkpoint config (format={meta.get('format')!r})"
        )
    return meta


def check_state_matches(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], where: str) -> None:
    """Raise ConfigError naming missing/unexpected keys and shape mismatches between two state dicts."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(
        f"{k}: weights {tuple(got[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in set(expected) & set(got)
        if tuple(expected[k].shape) != tuple(got[k].shape)
    )
    if missing or unexpected or shapes:

        def _fmt(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_fmt(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_fmt(shapes)}")
        raise ConfigError(f"{where}: weights do not match the config: " + "; ".join(parts))


def load_checkpoint(path_or_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict]:
    """Rebuild the DMDSystem of a checkpoint folder (or its model.safetensors / config.json path).

    Returns ``(system in eval mode on device, meta dict)``. Weights are read with safetensors only
    (``torch.load`` is never used); keys and shapes are checked against a model built from the config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from dmd_pipeline.config import DMDConfig
    from dmd_pipeline.models import DMDSystem

    weights_path, _ = _paths(path_or_dir)
    meta = read_checkpoint_meta(path_or_dir)
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: checkpoint weights not found")
    config = DMDConfig.from_dict(meta["config"])
    system = DMDSystem(config)
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{weights_path}: unreadable safetensors file: {exc}") from exc
    check_state_matches(system.state_dict(), tensors, str(weights_path))
    system.load_state_dict(tensors, strict=True)
    system.to(device)
    system.eval()
    return system, meta
