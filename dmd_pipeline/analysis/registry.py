"""Finding and loading trained DMD models: bundled names or a user folder (config.json + model.safetensors).

Bundled models live in ``dmd_pipeline/assets/models/<name>/``. A model folder's ``config.json`` carries the
model config and a ``meta`` block written at training time; the keys read here are ``modalities``
(e.g. ``["text"]``), ``task`` (``regression``|``classification``) and ``class_names``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmd_pipeline.analysis.result import MODALITIES, ModelInfo
from dmd_pipeline.errors import ModelFileError

MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
#: Name tried first when no model is given (``$DMD_MODEL`` overrides it).
DEFAULT_MODEL = "mosi-text-minilm"
_REQUIRED_FILES = ("config.json", "model.safetensors")


@dataclass
class LoadedModel:
    """A DMD system in eval mode plus what the analysis needs to know about it."""

    system: Any  # dmd_pipeline.models.DMDSystem
    meta: dict[str, Any]
    name: str
    path: Path
    modalities: list[str]
    task: str
    class_names: list[str] | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        """The model's DMDConfig."""
        return self.system.config

    @property
    def aligned(self) -> bool | None:
        """Whether the model was trained on word-aligned features (None when the meta does not say)."""
        val = self.meta.get("aligned")
        if val is None:
            val = dataset_meta(self.meta).get("aligned")
        if val is None:
            preset = str(getattr(self.config, "name", "") or "")
            if "unaligned" in preset:
                return False
            if "aligned" in preset:
                return True
            return None
        return bool(val)

    def info(self) -> ModelInfo:
        """The ``model`` block of an analysis result."""
        cfg = self.config
        return ModelInfo(
            name=self.name,
            path=str(self.path),
            task=self.task,
            num_classes=int(getattr(cfg, "num_classes", 1)),
            class_names=self.class_names,
            modalities=list(self.modalities),
            preset=getattr(cfg, "name", None),
            feature_dims=[int(x) for x in getattr(cfg, "feature_dims", ())] or None,
            seq_lens=[int(x) for x in getattr(cfg, "seq_lens", ())] or None,
            aligned=self.aligned,
        )


def dataset_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The training set's sidecar ``meta`` block, which ``dmd train --data`` records as ``feature_spec``.

    A pickle made by ``dmd extract`` carries ``aligned``, ``class_names`` and the extraction settings
    (``feature_spec.config``) there, one level below where a bundled model keeps them.
    """
    spec = meta.get("feature_spec")
    return spec if isinstance(spec, dict) else {}


def available_models() -> list[str]:
    """Names of the bundled models (folders holding config.json + model.safetensors)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if _is_model_dir(p))


def _is_model_dir(p: Path) -> bool:
    return p.is_dir() and all((p / f).is_file() for f in _REQUIRED_FILES)


def default_model_name() -> str:
    """``$DMD_MODEL``, else ``DEFAULT_MODEL`` when bundled, else the only bundled model."""
    env = os.environ.get("DMD_MODEL")
    if env:
        return env
    names = available_models()
    if DEFAULT_MODEL in names:
        return DEFAULT_MODEL
    if len(names) == 1:
        return names[0]
    if not names:
        raise ModelFileError(
            f"no bundled model in {MODELS_DIR}; pass a trained model folder (config.json + model.safetensors)"
        )
    raise ModelFileError(f"several bundled models and none named {DEFAULT_MODEL!r}: pick one of {names}")


def resolve_model_dir(name_or_dir: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """(name, folder) of a bundled model name or a model folder; a clear error listing the names otherwise."""
    if name_or_dir is None or str(name_or_dir) == "":
        name_or_dir = default_model_name()
    p = Path(name_or_dir).expanduser()
    if p.is_dir():
        missing = [f for f in _REQUIRED_FILES if not (p / f).is_file()]
        if missing:
            raise ModelFileError(f"{p}: not a model folder (missing {', '.join(missing)})")
        return p.resolve().name, p.resolve()
    if p.is_file() and p.name in _REQUIRED_FILES:
        return resolve_model_dir(p.parent)
    bundled = MODELS_DIR / str(name_or_dir)
    if os.sep not in str(name_or_dir) and _is_model_dir(bundled):
        return str(name_or_dir), bundled
    names = available_models()
    listing = ", ".join(names) if names else "none bundled"
    raise ModelFileError(
        f"unknown model {str(name_or_dir)!r}: not a folder with config.json + model.safetensors "
        f"and not a bundled model name (available: {listing})"
    )


def read_model_meta(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed config.json of a model folder, checked for a model config (no torch import, no weights)."""
    import json

    p = Path(model_dir) / "config.json"
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{p}: unreadable model config: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ModelFileError(f"{p}: not a dmd-pipeline model config (no 'config' block)")
    _meta_modalities(meta)
    return meta


def _meta_modalities(meta: dict[str, Any]) -> list[str]:
    mods = meta.get("modalities") or list(MODALITIES)
    alias = {"t": "text", "l": "text", "language": "text", "a": "audio", "v": "vision", "visual": "vision"}
    out = []
    for m in mods:
        m = alias.get(str(m).lower(), str(m).lower())
        if m not in MODALITIES:
            raise ModelFileError(f"model meta names an unknown modality {m!r} (expected {list(MODALITIES)})")
        if m not in out:
            out.append(m)
    return out


def load_model(name_or_dir: str | os.PathLike[str] | None = None, device: str = "cpu") -> LoadedModel:
    """Load a bundled model by name, or a model folder, in eval mode.

    Raises ModelFileError (listing the bundled names) when ``name_or_dir`` is neither.
    """
    from dmd_pipeline.models.checkpoint import load_checkpoint

    name, path = resolve_model_dir(name_or_dir)
    system, meta = load_checkpoint(path, device=device)
    system.eval()
    meta = dict(meta or {})
    cfg = system.config
    num_classes = int(getattr(cfg, "num_classes", 1))
    task = str(meta.get("task") or ("regression" if num_classes == 1 else "classification"))
    class_names = meta.get("class_names")
    data_names = dataset_meta(meta).get("class_names")
    if not class_names and isinstance(data_names, list) and len(data_names) == num_classes:
        class_names = data_names  # the label names of the `dmd extract` pickle the model was trained on
    if task == "classification":
        if not class_names:
            class_names = [f"class_{i}" for i in range(num_classes)]
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            raise ModelFileError(f"{path}: {len(class_names)} class_names for a {num_classes}-class model")
    else:
        class_names = None
    return LoadedModel(
        system=system,
        meta=meta,
        name=str(meta.get("name") or name),
        path=path,
        modalities=_meta_modalities(meta),
        task=task,
        class_names=class_names,
    )
