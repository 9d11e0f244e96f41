"""Dataset files: MMSA pickles (restricted unpickler, atomic writer) and torch datasets over their splits.

Names are resolved lazily so that ``import dmd_pipeline.data.mmsa`` (numpy only) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DataSource": "datasets",
    "MMSADataset": "datasets",
    "dataset_from_arrays": "datasets",
    "dataset_from_split": "datasets",
    "fit_config_to_data": "datasets",
    "load_data_source": "datasets",
    "load_mmsa_pickle": "mmsa",
    "save_mmsa_pickle": "mmsa",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"dmd_pipeline.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dmd_pipeline.data' has no attribute {name!r}")
