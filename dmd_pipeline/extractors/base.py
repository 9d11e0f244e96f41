"""The common output of the frame-level extractors (acoustic at 100 Hz, visual at N fps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FrameFeatures"]


@dataclass
class FrameFeatures:
    """A (T, D) float32 feature sequence with one timestamp per row.

    ``values`` never holds NaN/inf; ``times`` are frame centres in seconds (from the start of the media when
    the extractor was given a segment offset); ``names`` has one entry per column; ``extras`` carries
    per-frame side information that is not a model input (e.g. face boxes for a report).
    """

    values: np.ndarray
    times: np.ndarray
    names: list[str]
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.times = np.asarray(self.times, dtype=np.float64)
        if self.values.ndim != 2:
            raise ValueError(f"values must be 2-D (T, D), got shape {self.values.shape}")
        if self.values.shape[0] != self.times.shape[0]:
            raise ValueError(f"{self.values.shape[0]} rows but {self.times.shape[0]} timestamps")
        if self.values.shape[1] != len(self.names):
            raise ValueError(f"{self.values.shape[1]} columns but {len(self.names)} names")

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.values.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.values.shape[1])

    def column(self, name: str) -> np.ndarray:
        """One feature over time, by name."""
        return self.values[:, self.names.index(name)]

    def shifted(self, offset_s: float) -> FrameFeatures:
        """The same features with ``offset_s`` added to every timestamp (segment -> file time)."""
        return FrameFeatures(self.values, self.times + offset_s, list(self.names), dict(self.extras))
