"""Malicious MMSA pickles: code execution, memory amplification, uninitialised or unbacked arrays, numpy
crashers. Each is one DataError naming the file; none allocates more than a few MiB first."""

from __future__ import annotations

import codecs
import pickle
import resource
from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.data.mmsa import load_mmsa_pickle, restricted_loads, save_mmsa_pickle
from dmd_pipeline.errors import DataError

try:
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer


class _Reduce:
    """Pickles as ``func(*args)`` (then ``BUILD state`` when given)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _empty():
    return (_reconstruct, (np.ndarray, (0,), b"b"))


def _array(state):
    return _Reduce(*_empty(), state)


MALICIOUS = {
    "os_system": _Reduce(__import__("os").system, ("echo pwned",)),
    "eval": _Reduce(eval, ("1+1",)),
    "import": _Reduce(__import__, ("os",)),
    "bytearray_3gib": _Reduce(bytearray, (3 * 2**30,)),
    "bytearray_iterable": _Reduce(bytearray, (range(10),)),
    "reconstruct_shape_without_data": _Reduce(_reconstruct, (np.ndarray, (1000, 50, 10000), b"b")),
    "ndarray_called": _Reduce(np.ndarray, ((1000, 50, 10000),)),
    "array_short_data": _array((1, (1000, 50), np.dtype("f8"), False, b"abc")),
    "array_no_data": _array((1, (2, 3), np.dtype("f4"), False, b"")),
    "object_array_short_list": _array((1, (1000,), np.dtype("O"), False, [1, 2])),  # numpy segfaults
    "structured_dtype": np.dtype([("a", "f4"), ("b", "i8")]),
    "huge_void_dtype": np.dtype("V100000000"),
    "scalar_without_data": _Reduce(scalar, (np.dtype("f8"),)),
    "frombuffer_mismatch": _Reduce(_frombuffer, (b"abcd", np.dtype("f8"), (1000,), "C")),
    "codecs_other_encoding": _Reduce(codecs.encode, ("x" * 10, "zlib")),
    "set_of_a_string_bomb": _Reduce(set, ("abc",)),
}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", sorted(MALICIOUS))
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused_before_it_costs(name: str, protocol: int, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(pickle.dumps({"train": MALICIOUS[name]}, protocol=protocol))
    before = _maxrss_mb()
    with pytest.raises(DataError) as err:
        load_mmsa_pickle(path)
    assert _maxrss_mb() - before < 64, "the refusal came after the allocation"
    assert err.value.path == str(path) and "Traceback" not in str(err.value)


def test_the_amplifiers_are_small_files() -> None:
    """What the issue measured: a 36-byte pickle asked for 3 GiB, a ~1 kB one for 4 GB of garbage."""
    assert len(pickle.dumps(MALICIOUS["bytearray_3gib"], protocol=2)) < 64
    assert len(pickle.dumps(MALICIOUS["reconstruct_shape_without_data"], protocol=2)) < 1024


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_arrays_still_load_fully_initialised(protocol: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    obj = {
        "f": rng.normal(size=(3, 4, 5)).astype(np.float32),
        "s": np.array(["a", "bc"], dtype=object),
        "u": np.array(["a", "bc"]),
        "i": np.arange(6, dtype=np.int64).reshape(2, 3),
        "b": np.array([True, False]),
        "x": np.float32(1.5),
        "fortran": np.asfortranarray(rng.normal(size=(3, 2))),
        "ba": bytearray(b"xyz"),
        "set": {1, 2},
        "c": complex(1, 2),
    }
    got = restricted_loads(pickle.dumps(obj, protocol=protocol))
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k
        else:
            assert got[k] == v, k


def test_a_real_dataset_round_trips(tmp_path: Path) -> None:
    from make_synthetic_mmsa import write_synthetic_pickle

    path = write_synthetic_pickle(tmp_path / "aligned_50.pkl")
    splits = load_mmsa_pickle(path)
    assert set(splits) == {"train", "valid", "test"} and splits["train"]["text"].ndim == 3
    save_mmsa_pickle(tmp_path / "again.pkl", splits)
    again = load_mmsa_pickle(tmp_path / "again.pkl")
    assert np.array_equal(again["test"]["audio"], splits["test"]["audio"])
