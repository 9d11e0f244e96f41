"""MMSA pickle reader/writer (``aligned_50.pkl`` / ``unaligned_50.pkl``) with a restricted unpickler.

An MMSA feature pickle is a dict ``{"train"|"valid"|"test": split}``; each split holds ``id``, ``raw_text``,
``text`` (N, L, Dt) float, ``text_bert`` (N, 3, L) token ids / mask / segment ids, ``audio`` (N, La, Da),
``vision`` (N, Lv, Dv), ``audio_lengths``, ``vision_lengths``, ``regression_labels`` (N,) and optionally
``classification_labels`` and ``annotations``.

Pickles can run arbitrary code when loaded, so this module never calls ``pickle.load``: a subclass of
the pure-Python ``pickle._Unpickler`` resolves only numpy's array/dtype/scalar reconstructors and a few
builtin containers; anything else is refused with a :class:`DataError` naming the file and the class the
pickle asked for.

The allowed callables are wrapped so that a small pickle cannot make them allocate much memory or build
arrays of uninitialised memory: ``bytearray`` and ``_codecs.encode`` accept only data present in the
pickle (never a size), ``_reconstruct`` only the empty array numpy itself writes, ``numpy.ndarray`` cannot
be called, ``scalar``/``_frombuffer`` need exactly the bytes their dtype and shape ask for. Every ``BUILD``
(the ``__setstate__`` step that fills an array) is checked before it runs: the data present must match
shape x itemsize exactly (an object array needs one element per cell: numpy would crash otherwise), dtypes
must be plain (no structured or sub-array dtypes), and nothing else may be built. So every array of a
loaded dataset is fully initialised from the file's own bytes.
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
from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json, json_safe

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

# The globals a pickle may resolve (module, name) are the keys of _SAFE_NUMPY / _SAFE below; numpy 1.x
# pickles name ``numpy.core``, numpy 2.x ``numpy._core``.


def _numpy_core_module(sub: str) -> Any:
    """``numpy._core.<sub>`` (numpy 2) or ``numpy.core.<sub>`` (numpy 1), without deprecation warnings."""
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # numpy 1.x
        return importlib.import_module(f"numpy.core.{sub}")


MAX_DTYPE_ITEMSIZE = 1 << 20  # bytes per element; MMSA strings are far shorter
_LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})


class _NDArrayRef:
    """What a pickle gets for ``numpy.ndarray``: usable only as ``_reconstruct``'s subtype, never called
    (``ndarray(shape)`` would allocate uninitialised memory of any size)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise DataError(None, "refusing to call numpy.ndarray directly (uninitialised memory)")


def _shape_size(shape: Any, what: str) -> int:
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DataError(None, f"{what}: invalid array shape {shape!r}")
    return math.prod(shape)


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct``, only for the empty placeholder numpy pickles (its data comes in BUILD)."""
    if subtype is not _NDArrayRef and subtype is not np.ndarray:
        raise DataError(None, f"refusing to reconstruct an array of type {subtype!r}")
    if _shape_size(shape, "_reconstruct") != 0:
        raise DataError(None, f"refusing an array of shape {shape} without data (uninitialised memory)")
    return _numpy_core_module("multiarray")._reconstruct(np.ndarray, shape, dtype)


def _safe_scalar(dtype: Any, *data: Any) -> Any:
    """numpy's ``scalar``: the bytes present must be exactly one element of ``dtype``."""
    if not isinstance(dtype, np.dtype):
        raise DataError(None, f"scalar of a non-dtype {type(dtype).__name__}")
    ok = len(data) == 1 and isinstance(data[0], (bytes, bytearray)) and len(data[0]) == dtype.itemsize
    if not dtype.hasobject and not ok:
        raise DataError(None, f"numpy scalar of {dtype} needs exactly {dtype.itemsize} bytes of data")
    return _numpy_core_module("multiarray").scalar(dtype, *data)


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's ``_frombuffer`` (protocol 5): the buffer must hold exactly shape x itemsize bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise DataError(None, "array from a buffer needs a plain dtype")
    n = _shape_size(shape, "_frombuffer")
    if len(memoryview(buf).cast("B")) != n * dtype.itemsize:
        raise DataError(None, f"array of shape {shape} and {dtype}: the data present does not match")
    return _numpy_core_module("numeric")._frombuffer(buf, dtype, shape, order)


def _safe_bytearray(*args: Any) -> bytearray:
    """``bytearray`` from data present in the pickle only: ``bytearray(3 * 2**30)`` would allocate 3 GiB."""
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and str(args[1]).lower() in _LATIN1:
        return bytearray(args[0], "latin-1")
    raise DataError(None, "refusing bytearray() of anything but bytes present in the pickle (a size?)")


def _safe_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it: text -> latin-1 bytes, nothing else."""
    if not isinstance(obj, str) or str(encoding).lower() not in _LATIN1:
        raise DataError(None, f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1", errors)


def _safe_set(*args: Any) -> set:
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, set, frozenset))):
        raise DataError(None, "set() of something that is not a list")
    return set(*args)


def _safe_frozenset(*args: Any) -> frozenset:
    return frozenset(_safe_set(*args))


def _safe_complex(*args: Any) -> complex:
    if len(args) > 2 or not all(isinstance(a, (int, float)) for a in args):
        raise DataError(None, "complex() of something that is not numbers")
    return complex(*args)


_SAFE_NUMPY = {
    ("multiarray", "_reconstruct"): _safe_reconstruct,
    ("multiarray", "scalar"): _safe_scalar,
    ("numeric", "_frombuffer"): _safe_frombuffer,
}
_SAFE = {
    ("numpy", "ndarray"): _NDArrayRef,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _safe_encode,
    ("builtins", "set"): _safe_set,
    ("builtins", "frozenset"): _safe_frozenset,
    ("builtins", "complex"): _safe_complex,
    ("builtins", "bytearray"): _safe_bytearray,
    ("__builtin__", "set"): _safe_set,
    ("__builtin__", "frozenset"): _safe_frozenset,
    ("__builtin__", "complex"): _safe_complex,
    ("__builtin__", "bytearray"): _safe_bytearray,
}


def _check_array_state(state: Any) -> None:
    """Refuse an ndarray ``__setstate__`` whose data does not fill the array exactly."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise DataError(None, "malformed array state")
    shape, dtype, _fortran, data = state[-4:]
    if not isinstance(dtype, np.dtype):
        raise DataError(None, "array state without a dtype")
    n = _shape_size(shape, "array")
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != n:
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise DataError(None, f"object array of shape {shape} with {got} elements")
        return
    if isinstance(data, str):
        size = len(data)  # numpy reads text as latin-1: one byte per character
    elif isinstance(data, (bytes, bytearray)):
        size = len(data)
    else:
        raise DataError(None, f"array data of type {type(data).__name__}")
    if size != n * dtype.itemsize:
        raise DataError(
            None,
            f"array of shape {shape} and {dtype} needs {n * dtype.itemsize} bytes, the pickle has {size}",
        )


def _check_dtype_state(state: Any) -> None:
    """Only plain dtypes (numbers, bool, str/bytes, object): no fields, sub-arrays or huge items."""
    if not isinstance(state, tuple) or len(state) < 8:
        raise DataError(None, "malformed dtype state")
    _version, _order, subarray, names, fields, elsize = state[:6]
    if subarray is not None or names is not None or fields is not None:
        raise DataError(None, "refusing a structured or sub-array dtype")
    if not isinstance(elsize, int) or elsize > MAX_DTYPE_ITEMSIZE:
        raise DataError(None, f"refusing a dtype of {elsize} bytes per element")


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Unpickler that only builds numpy arrays, dtypes, numpy scalars and builtin containers.

    The pure-Python unpickler, so that every ``BUILD`` can be checked before numpy runs it.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, path: str | Path | None = None) -> None:
        super().__init__(file)
        self._path = path

    def load_build(self) -> None:
        """``BUILD``: check the state against the object it fills, then let pickle apply it."""
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            _check_array_state(state)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(state)
        else:
            raise DataError(self._path, f"refusing to set the state of a {type(inst).__name__}")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only allow-listed globals (wrapped, see the module docstring); refuse everything else."""
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix):
                sub = module[len(prefix) :]
                if (sub, name) in _SAFE_NUMPY:
                    return _SAFE_NUMPY[(sub, name)]
        if (module, name) in _SAFE:
            return _SAFE[(module, name)]
        raise DataError(
            self._path,
            f"refusing to unpickle '{module}.{name}': only numpy arrays/dtypes/scalars and builtin "
            "containers are allowed in an MMSA pickle (the file may be malicious or not an MMSA pickle)",
        )


def restricted_loads(data: bytes, path: str | Path | None = None) -> Any:
    """Unpickle bytes with :class:`RestrictedUnpickler`; any unpickling failure becomes a DataError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), path).load()
    except DataError as exc:
        if exc.path is None and path is not None:  # raised by a wrapper, which does not know the file
            raise DataError(path, f"unsafe or malformed pickle: {exc.reason}") from None
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
    atomic_write_json(sidecar_path(path), json_safe(sidecar))


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


