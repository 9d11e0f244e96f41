"""Our checkpoint format: ``model.safetensors`` (all DMDSystem state) + ``config.json`` (config + metadata).

Never pickle: weights go through safetensors, metadata through JSON, so loading a checkpoint cannot run
code. ``config.json`` holds ``{"format", "format_version", "config": DMDConfig.to_dict(), ...meta}``, where
meta carries the preset, feature spec, metrics, versions and the training-data path/hash. Both files are
written atomically (temp file + rename), weights first, so a crash mid-save leaves the previous pair.

Text encoders (``use_bert``): the bundled all-MiniLM-L6-v2 is written as the symbol
``"bundled:all-MiniLM-L6-v2"`` (:data:`BUNDLED_TEXT_ENCODER`), never as this machine's folder, and resolved
(sha256-verified through :func:`dmd_pipeline.model_files.text_encoder_dir`) when loading; in memory the
config holds the resolved folder. With a ``text_encoder_base`` block in the meta (``{"ref", "sha256",
"finetune_layers": k}``) only the top ``k`` transformer layers of the encoder are fine-tuned
(:func:`freeze_text_encoder`) and only they are stored: the frozen rest comes from the base encoder at
load time, whose sha256 is checked. ``weights_dtype="float16"`` stores floating tensors in half precision
(loaded back as float32), to keep shipped models small.

Loading validates before it builds: ``config.json`` is read with bounds (size, nesting depth) and its
config checked against the schema of :mod:`dmd_pipeline.config` (types, ranges, estimated size) and its
``calibration`` block (:mod:`dmd_pipeline.calibration`) before any tensor exists; a text-encoder folder must hold ``model.safetensors`` (pickled ``.bin`` weights are refused);
every weight must be finite. Every problem of a model folder is a :class:`ModelFileError` (the config ones
:class:`~dmd_pipeline.errors.ModelConfigError`, also a ConfigError), naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from dmd_pipeline import model_files
from dmd_pipeline.calibration import check_model_meta
from dmd_pipeline.config import DMDConfig, read_model_config_json, validate_model_config
from dmd_pipeline.errors import ConfigError, ModelConfigError, ModelFileError
from dmd_pipeline.model_files import text_encoder_dir
from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json, json_safe, sha256_file

WEIGHTS_NAME = "model.safetensors"
BUNDLED_TEXT_ENCODER = "bundled:all-MiniLM-L6-v2"
TEXT_MODEL_PREFIX = "model.text_model.model."  # state-dict prefix of the BERT-family encoder in a DMDSystem
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
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


def text_encoder_ref(path_or_ref: str | Path | None) -> str | None:
    """What a checkpoint records for a text encoder: the bundled folder becomes :data:`BUNDLED_TEXT_ENCODER`."""
    if path_or_ref is None or str(path_or_ref).startswith("bundled:"):
        return None if path_or_ref is None else str(path_or_ref)

    try:
        bundled = text_encoder_dir().resolve()
    except ModelFileError:
        return str(path_or_ref)
    return BUNDLED_TEXT_ENCODER if Path(path_or_ref).expanduser().resolve() == bundled else str(path_or_ref)


def resolve_text_encoder(ref: str | Path) -> Path:
    """The local folder of a recorded text encoder: ``bundled:all-MiniLM-L6-v2`` (sha256-checked) or a path."""
    if str(ref).startswith("bundled:"):
        if str(ref) != BUNDLED_TEXT_ENCODER:
            raise ModelFileError(f"unknown bundled text encoder {str(ref)!r} (known: {BUNDLED_TEXT_ENCODER})")
        return text_encoder_dir()
    p = Path(ref).expanduser()
    if not p.is_dir():
        raise ModelFileError(f"text encoder folder {p} not found (the checkpoint needs it)")
    if not (p / "model.safetensors").is_file():
        pickled = [f.name for f in p.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".ckpt")][:3]
        raise ModelFileError(
            f"text encoder folder {p} holds no model.safetensors"
            + (f" (pickled weights {', '.join(pickled)} are refused: they could run code)" if pickled else "")
        )
    return p.resolve()


def text_encoder_sha256(folder: str | Path) -> str:
    """sha256 of a text encoder's weight file (recorded so a checkpoint can check its frozen base)."""
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelFileError(f"{folder}: no model.safetensors in the text encoder folder")
    try:
        if folder.resolve() == model_files.text_encoder_dir().resolve():  # verified by text_encoder_dir
            return model_files.TEXT_ENCODER_SHA256["model.safetensors"]
    except ModelFileError:
        pass
    return sha256_file(weights)


def _encoder_layers(system: torch.nn.Module) -> int:
    model = getattr(getattr(getattr(system, "model", None), "text_model", None), "model", None)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise ConfigError("the model has no BERT-family text encoder (use_bert=False)")
    return len(layers)


def frozen_encoder_keys(system: torch.nn.Module, finetune_layers: int) -> list[str]:
    """State-dict keys of the text encoder outside its top ``finetune_layers`` transformer layers."""
    n = _encoder_layers(system)
    if not 0 <= finetune_layers <= n:
        raise ConfigError(f"finetune_layers must be in 0..{n} for this {n}-layer text encoder")
    keep = tuple(f"{TEXT_MODEL_PREFIX}encoder.layer.{i}." for i in range(n - finetune_layers, n))
    return [k for k in system.state_dict() if k.startswith(TEXT_MODEL_PREFIX) and not k.startswith(keep)]


def freeze_text_encoder(system: torch.nn.Module, finetune_layers: int) -> int:
    """Freeze the encoder's embeddings, pooler and all but the top ``finetune_layers`` layers.

    Returns the number of parameters left trainable in the encoder. The trainer only optimises parameters
    with ``requires_grad``, and autograd does not go below the lowest trainable layer.
    """
    frozen = set(frozen_encoder_keys(system, finetune_layers))
    trainable = 0
    for name, p in system.named_parameters():
        if name.startswith(TEXT_MODEL_PREFIX):
            p.requires_grad_(name not in frozen)
            trainable += p.numel() if name not in frozen else 0
    return trainable


def state_tensors(system: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every entry of ``system.state_dict()`` as a contiguous CPU tensor that owns its memory."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in system.state_dict().items()}


def save_checkpoint(
    out_dir: str | Path, system: Any, meta: dict | None = None, weights_dtype: str | None = None
) -> None:
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json`` for a DMDSystem.

    ``meta`` (JSON-able) is stored beside the config: e.g. preset, feature_spec, metrics, train_config,
    training_data {path, sha256}. Versions and the format tag are added here. With a ``text_encoder_base``
    block in meta only the fine-tuned encoder layers are written (see the module docstring);
    ``weights_dtype`` ("float32" default, "float16", "bfloat16") is the storage type of floating tensors.
    """
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    config = system.config
    config_dict = config.to_dict()
    config_dict["text_encoder"] = text_encoder_ref(config_dict.get("text_encoder"))
    tensors = state_tensors(system)
    base = meta.get("text_encoder_base")
    if base and getattr(config, "use_bert", False):
        for key in frozen_encoder_keys(system, int(base["finetune_layers"])):
            tensors.pop(key, None)
    dtype_name = weights_dtype or meta.get("weights_dtype") or "float32"
    if dtype_name not in _DTYPES:
        raise ConfigError(f"weights_dtype must be one of {sorted(_DTYPES)}, got {dtype_name!r}")
    tensors = {k: v.to(_DTYPES[dtype_name]) if v.is_floating_point() else v for k, v in tensors.items()}
    meta["weights_dtype"] = dtype_name
    header = {"format": "pt", "dmd_format": FORMAT, "dmd_config": json.dumps(json_safe(config_dict))}
    blob = save(tensors, metadata=header)
    atomic_write_bytes(out / WEIGHTS_NAME, blob)
    payload = {
        **json_safe(meta),
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json_safe(config_dict),
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
    """The parsed ``config.json`` of a checkpoint (no weights loaded), its config validated.

    Raises ModelFileError (ModelConfigError for a config that fails the schema) naming the file.
    """
    _, cfg_path = _paths(path_or_dir)
    if not cfg_path.is_file():
        raise ModelFileError(f"{cfg_path}: checkpoint config not found")
    meta = read_model_config_json(cfg_path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ModelFileError(
            f"{cfg_path}: not a dmd-pipeline checkpoint config (format={str(meta.get('format'))[:40]!r})"
        )
    validate_model_config(meta["config"], cfg_path)
    check_model_meta(meta, cfg_path)
    return meta


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise ModelFileError naming the first floating tensor that holds NaN or an infinity."""
    for key, value in tensors.items():
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            raise ModelFileError(f"{where}: tensor {key} holds NaN or infinite values (corrupt weights)")


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

    from dmd_pipeline.models import DMDSystem

    weights_path, cfg_path = _paths(path_or_dir)
    meta = read_checkpoint_meta(path_or_dir)
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: checkpoint weights not found")
    cfg_dict = dict(meta["config"])
    if cfg_dict.get("use_bert") and cfg_dict.get("text_encoder"):
        cfg_dict["text_encoder"] = str(resolve_text_encoder(cfg_dict["text_encoder"]))
    config: DMDConfig = validate_model_config(cfg_dict, cfg_path)
    base = meta.get("text_encoder_base") if config.use_bert else None
    if base and base.get("sha256"):
        got = text_encoder_sha256(config.text_encoder)
        if got != base["sha256"]:
            raise ModelFileError(
                f"{weights_path}: the text encoder {config.text_encoder} is not the base this model was "
                f"fine-tuned from (sha256 {got[:12]}... != recorded {str(base['sha256'])[:12]}...)"
            )
    size = meta.get("ensemble_size")  # a seed ensemble (models/ensemble.py) when set
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 32):
        raise ModelConfigError(f"{cfg_path}: ensemble_size must be an integer in 1..32, got {size!r}")
    try:
        if size is None:
            system = DMDSystem(config)
        else:
            from dmd_pipeline.models.ensemble import DMDEnsemble

            system = DMDEnsemble(config, size)
    except ConfigError as exc:  # e.g. a text encoder whose hidden size is not feature_dims[0]
        raise ModelConfigError(f"{cfg_path}: {exc}") from None
    except (OSError, ValueError) as exc:  # a text-encoder folder transformers cannot load
        raise ModelFileError(f"{cfg_path}: cannot build the model: {type(exc).__name__}: {exc}") from None
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{weights_path}: unreadable safetensors file: {exc}") from exc
    check_finite(tensors, str(weights_path))
    expected = system.state_dict()
    if base:
        try:
            finetune = int(base["finetune_layers"])
            freeze_text_encoder(system, finetune)
            frozen = frozen_encoder_keys(system, finetune)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ModelConfigError(f"{cfg_path}: invalid text_encoder_base block: {exc}") from None
        for key in frozen:
            expected.pop(key)
    try:
        check_state_matches(expected, tensors, str(weights_path))
    except ConfigError as exc:
        raise ModelConfigError(str(exc)) from None
    digest = meta.get("weights_sha256")
    if digest:
        got = sha256_file(weights_path)
        if got != digest:
            raise ModelFileError(
                f"{weights_path}: sha256 {got[:12]}... differs from the {digest[:12]}... recorded in "
                f"{CONFIG_NAME} (corrupt or replaced weights)"
            )
    tensors = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    system.load_state_dict(tensors, strict=not base)
    system.to(device)
    system.eval()
    return system, meta


def export_checkpoint(
    src: str | Path, dst: str | Path, weights_dtype: str = "float16", meta_updates: dict | None = None
) -> dict:
    """Re-save a trained checkpoint for shipping: weights in ``weights_dtype``, no machine paths.

    The training-data path is reduced to its file name (its sha256 stays), ``config.train`` is updated with
    the effective values of ``train_config`` (CLI flags such as ``--update-epochs``), ``meta_updates`` are
    merged in.
    Returns the written meta.
    """
    system, meta = load_checkpoint(src)
    effective = meta.get("train_config") or {}
    for key in list(system.config.train):  # config.train shows the values the model was trained with
        if key in effective:
            system.config.train[key] = effective[key]
    for key in ("format", "format_version", "config", "versions", "n_tensors", "weights_dtype"):
        meta.pop(key, None)
    data = dict(meta.get("training_data") or {})
    if data.get("path"):
        data["path"] = Path(str(data["path"])).name
        meta["training_data"] = data
    meta.update(meta_updates or {})
    save_checkpoint(dst, system, meta, weights_dtype=weights_dtype)
    return read_checkpoint_meta(dst)
