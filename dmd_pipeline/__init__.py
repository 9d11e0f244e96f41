"""dmd-pipeline: raw video to multimodal sentiment/emotion scores with DMD (CVPR 2023).

Data flows one way: media -> extractors -> features -> model -> results.
Heavy libraries (torch, mediapipe, librosa, transformers) are imported lazily by the modules that need them,
so ``import dmd_pipeline`` stays cheap; ``analyze`` and ``load_model`` are resolved on first use (and listed
by ``dir()``, so completion finds them).

Run-time defaults set here, before any heavy import, each only when the variable is unset:
``NUMBA_CACHE_DIR`` (librosa's compiled kernels persist under the dmd cache folder, also for a read-only
install) and ``GOMP_SPINCOUNT``/``KMP_BLOCKTIME`` (OpenMP worker threads stop spinning soon after a parallel
region, so torch degrades gracefully when other processes busy the cores).
"""

from __future__ import annotations

import os
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "analyze", "load_model"]

_LAZY = ("analyze", "load_model", "AnalysisResult", "LoadedModel", "available_models")


def _cache_root() -> str:
    env = os.environ.get("DMD_CACHE_DIR")
    return os.path.expanduser(env) if env else os.path.join(os.path.expanduser("~"), ".cache", "dmd-pipeline")


def _runtime_defaults() -> None:
    """Environment defaults that must be in place before numba/torch are imported (never overriding)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(_cache_root(), "numba"))
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # ~microseconds of spinning, not the default 300k
    os.environ.setdefault("KMP_BLOCKTIME", "1")  # the same for Intel's OpenMP runtime


_runtime_defaults()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from dmd_pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'dmd_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API (lazy names included) and the module dunders; helpers stay hidden."""
    return sorted({*(n for n in globals() if n.startswith("__")), *_LAZY})
