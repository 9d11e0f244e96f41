"""MMSA pickle reader/writer (``aligned_50.pkl`` / ``unaligned_50.pkl``) with a restricted unpickler.

An MMSA feature pickle is a dict ``{"train"|"valid"|"test": split}``; each split holds ``id``, ``raw_text``,
``text`` (N, L, Dt) float, ``text_bert`` (N, 3, L) token ids / mask / segment ids, ``audio`` (N, La, Da),
``vision`` (N, Lv, Dv), ``audio_lengths``, ``vision_lengths``, ``regression_labels`` (N,) and optionally
``classification_labels`` and ``annotations``.

Pickles can run arbitrary code when loaded, so this module never calls ``pickle.load``: a subclass of
``pickle.Unpickler`` resolves only numpy's array/dtype/scalar reconstructors and a few builtin containers;
anything else is refused with a :class:`DataError` naming the file and the class the pickle asked for.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.errors import DataError
from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
REQUIRED_KEYS = ("text", "audio", "vision", "regression_labels")
OPTIONAL_KEYS = (
    "id",
    "raw_text",
    "text_bert",
    "audio_lengths",
    "vision_lengths",
    "classification_labels",
    "annotations",
)
FEATURE_KEYS = ("text", "audio", "vision")

# (module, name) pairs a pickle may resolve. numpy 1.x pickles name ``numpy.core``, numpy 2.x ``numpy._core``.
_NUMPY_ALLOWED = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles encode bytes through it (latin-1 text -> bytes)
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
}


def _numpy_core_module(sub: str) -> Any:
    """``numpy._core.<sub>`` (numpy 2) or ``numpy.core.<sub>`` (numpy 1), without deprecation warnings."""
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # numpy 1.x
        return importlib.import_module(f"numpy.core.{sub}")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays, dtypes, numpy scalars and builtin containers."""

    def __init__(self, file: Any, path: str | Path | None = None) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only allow-listed globals; refuse everything else before it can run."""
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix):
                sub = module[len(prefix) :]
                if (sub, name) in _NUMPY_ALLOWED:
                    return getattr(_numpy_core_module(sub), name)
        if (module, name) in _ALLOWED:
            if module == "numpy":
                return getattr(np, name)
            if module == "_codecs":
                import codecs

                return codecs.encode
            import builtins

            return getattr(builtins, name)
        raise DataError(
            self._path,
            f"refusing to unpickle '{module}.{name}': only numpy arrays/dtypes/scalars and builtin "
            "containers are allowed in an MMSA pickle (the file may be malicious or not an MMSA pickle)",
        )


def restricted_loads(data: bytes, path: str | Path | None = None) -> Any:
    """Unpickle bytes with :class:`RestrictedUnpickler`; any unpickling failure becomes a DataError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), path).load()
    except DataError:
        raise
    except Exception as exc:  # truncated/corrupt pickle, wrong format, ...
        raise DataError(path, f"not a readable pickle: {type(exc).__name__}: {exc}") from exc


def _nonfinite_to_zero(arr: np.ndarray) -> int:
    """Set -inf (as MMSA does for audio), +inf and NaN to 0 in place; return how many values changed."""
    if arr.dtype.kind != "f":
        return 0
    bad = ~np.isfinite(arr)
    n = int(bad.sum())
    if n:
        arr[bad] = 0
    return n


def _split_size(split: dict[str, Any], path: Path | None, name: str) -> int:
    def rows(key: str, value: Any) -> int:
        try:
            return len(value)
        except TypeError:
            raise DataError(
                path, f"split '{name}': '{key}' is a {type(value).__name__}, not a sequence"
            ) from None

    n = rows("regression_labels", split["regression_labels"])
    for key, value in split.items():
        if (key in REQUIRED_KEYS or key in OPTIONAL_KEYS) and rows(key, value) != n:
            raise DataError(path, f"split '{name}': '{key}' has {rows(key, value)} rows, labels have {n}")
    return n


def validate_splits(splits: Any, path: str | Path | None = None) -> None:
    """Check the MMSA layout (split names, required keys, 3-D feature arrays, equal row counts)."""
    p = Path(path) if path is not None else None
    if not isinstance(splits, dict):
        raise DataError(p, f"expected a dict of splits, got {type(splits).__name__}")
    missing_splits = [s for s in SPLITS if s not in splits]
    if missing_splits:
        raise DataError(p, f"missing split(s) {missing_splits}; found {sorted(map(str, splits))}")
    for name in SPLITS:
        split = splits[name]
        if not isinstance(split, dict):
            raise DataError(p, f"split '{name}' is a {type(split).__name__}, expected a dict")
        missing = [k for k in REQUIRED_KEYS if k not in split]
        if missing:
            raise DataError(p, f"split '{name}' lacks key(s) {missing}")
        for key in FEATURE_KEYS:
            arr = split[key]
            if not isinstance(arr, np.ndarray) or arr.ndim != 3:
                shape = getattr(arr, "shape", None)
                raise DataError(
                    p, f"split '{name}': '{key}' must be a 3-D array (N, L, D), got shape {shape}"
                )
        if "text_bert" in split:
            tb = np.asarray(split["text_bert"])
            if tb.ndim != 3 or tb.shape[1] != 3:
                raise DataError(p, f"split '{name}': 'text_bert' must be (N, 3, L), got {tb.shape}")
        _split_size(split, p, name)


def load_mmsa_pickle(path: str | Path, sanitize: bool = True) -> dict[str, dict[str, np.ndarray | list]]:
    """Read an MMSA feature pickle safely and return ``{"train"|"valid"|"test": {key: array or list}}``.

    With ``sanitize`` (default), non-finite values in the float feature arrays are set to 0: MMSA's loader
    does ``audio[audio == -np.inf] = 0``; we apply the same to vision and text (and to NaN/+inf, which would
    otherwise poison every loss) and log how many values changed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    splits = restricted_loads(path.read_bytes(), path)
    validate_splits(splits, path)
    return {name: sanitize_split(splits[name], sanitize, f"{path}: split {name}") for name in SPLITS}


def sanitize_split(
    split: dict[str, Any], zero_nonfinite: bool = True, where: str = "split"
) -> dict[str, Any]:
    """Feature arrays as float32; with ``zero_nonfinite``, -inf/+inf/NaN set to 0 (MMSA zeros audio -inf)."""
    out = dict(split)
    for key in FEATURE_KEYS:
        arr = np.asarray(out[key])
        arr = arr.astype(np.float32) if arr.dtype != np.float32 else arr.copy()
        if zero_nonfinite:
            n_bad = _nonfinite_to_zero(arr)
            if n_bad:
                log.info("%s: set %d non-finite %s values to 0", where, n_bad, key)
        out[key] = arr
    return out


def _check_value(value: Any, where: str) -> None:
    """Refuse anything that is not an array (non-object, or object of str), list/tuple, str or number."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            for item in value.ravel():
                _check_value(item, where)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_value(item, where)
        return
    if isinstance(value, (str, bool, int, float, np.number, np.bool_)) or value is None:
        return
    raise DataError(None, f"{where}: cannot save a {type(value).__name__} (only arrays, lists, str, numbers)")


def describe_splits(splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """JSON-able summary: per split sample count, shapes and dtypes; feature dims and sequence lengths."""
    desc: dict[str, Any] = {"splits": {}}
    for name, split in splits.items():
        keys = {}
        for key, value in split.items():
            if isinstance(value, np.ndarray):
                keys[key] = {"shape": list(value.shape), "dtype": str(value.dtype)}
            else:
                keys[key] = {"len": len(value), "type": type(value).__name__}
        desc["splits"][name] = {"n": len(split["regression_labels"]), "keys": keys}
    train = splits.get("train") or next(iter(splits.values()))
    desc["feature_dims"] = [int(train[k].shape[2]) for k in FEATURE_KEYS]
    desc["seq_lens"] = [int(train[k].shape[1]) for k in FEATURE_KEYS]
    return desc


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar written beside a pickle: ``<pickle>.json`` (e.g. ``aligned_50.pkl.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def save_mmsa_pickle(path: str | Path, splits: dict[str, dict[str, Any]], meta: dict | None = None) -> None:
    """Write splits in the MMSA layout atomically (plain pickle protocol 4) plus a JSON sidecar.

    Only numpy arrays, lists, str and numbers are accepted, so the file stays readable by
    :func:`load_mmsa_pickle` (and by MMSA itself). ``meta`` (e.g. the extractor feature spec) goes into the
    sidecar next to the shapes.
    """
    path = Path(path)
    validate_splits(splits, path)
    for name, split in splits.items():
        for key, value in split.items():
            _check_value(value, f"{path}: split '{name}' key '{key}'")
    data = pickle.dumps({k: dict(v) for k, v in splits.items()}, protocol=4)
    atomic_write_bytes(path, data)
    sidecar = {"format": "mmsa-pickle", "file": path.name, **describe_splits(splits)}
    if meta:
        sidecar["meta"] = meta
    atomic_write_json(sidecar_path(path), _jsonable(sidecar))


def read_sidecar(path: str | Path) -> dict | None:
    """The JSON sidecar of a pickle, or None when there is none."""
    import json

    sc = sidecar_path(path)
    if not sc.is_file():
        return None
    try:
        return json.loads(sc.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(sc, f"invalid JSON sidecar: {exc}") from exc


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
