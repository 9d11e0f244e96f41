"""dmd-pipeline: raw video to multimodal sentiment/emotion scores with DMD (CVPR 2023).

Data flows one way: media -> extractors -> features -> model -> results.
Heavy libraries (torch, mediapipe, librosa, transformers) are imported lazily by the modules that need them,
so ``import dmd_pipeline`` stays cheap; ``analyze`` and ``load_model`` are resolved on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "analyze", "load_model"]


def __getattr__(name: str) -> Any:
    if name in ("analyze", "load_model"):
        from dmd_pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'dmd_pipeline' has no attribute {name!r}")
