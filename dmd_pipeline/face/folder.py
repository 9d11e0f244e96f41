"""A facial-expression model folder on disk: where it is and whether a folder is one (no torch import).

The model registry (:mod:`dmd_pipeline.analysis.registry`) resolves face-model references with these at the
command line's edge, before anything heavy loads; :class:`~dmd_pipeline.face.model.FaceExpressionModel`
loads the weights. A folder holds ``config.json`` (``"format": "dmd-face-expression"``) and
``model.safetensors``; the bundled ones live in ``dmd_pipeline/assets/face_models/<name>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dmd_pipeline.errors import ModelFileError

__all__ = [
    "BUNDLED_FACE_MODEL",
    "FACE_MODELS_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "bundled_face_models",
    "face_model_dir",
    "is_face_model",
    "read_face_config",
]

FORMAT = "dmd-face-expression"
FORMAT_VERSION = 1
BUNDLED_FACE_MODEL = "fer-face-expression"
FACE_MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "face_models"
_CONFIG_LIMIT = 4 << 20  # bytes: a config.json larger than this is not ours


def bundled_face_models() -> list[str]:
    """Names of the bundled face models (folders with config.json + model.safetensors)."""
    if not FACE_MODELS_DIR.is_dir():
        return []
    return sorted(
        p.name
        for p in FACE_MODELS_DIR.iterdir()
        if (p / "config.json").is_file() and (p / "model.safetensors").is_file()
    )


def face_model_dir(name_or_path: str | Path | None = None) -> Path:
    """Folder of a face model: the bundled one by default, a bundled name, or a user folder."""
    ref = name_or_path or BUNDLED_FACE_MODEL
    p = Path(ref).expanduser()
    if not p.is_dir() and (FACE_MODELS_DIR / str(ref)).is_dir() and "/" not in str(ref):
        p = FACE_MODELS_DIR / str(ref)
    if not p.is_dir():
        raise ModelFileError(f"face model {str(ref)!r}: no such folder (nor a bundled face model name)")
    return p


def is_face_model(name_or_path: str | Path) -> bool:
    """True for a bundled face model name or a folder whose config.json declares this format (a folder that
    is not one, or unreadable, is False)."""
    try:
        read_face_config(face_model_dir(name_or_path) / "config.json")
    except ModelFileError:
        return False
    return True


def read_face_config(path: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a face model (bounded read); ModelFileError naming the file when it is
    not one of ours or of another format version."""
    from dmd_pipeline.utils import read_bytes_bounded

    try:
        cfg = json.loads(read_bytes_bounded(path, _CONFIG_LIMIT).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep to parse
        raise ModelFileError(f"{path}: not a readable face model config ({exc})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a face expression model config (format must be {FORMAT!r})")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: format_version {cfg.get('format_version')!r} is not supported")
    return cfg
