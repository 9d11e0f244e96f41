"""The face channel's numbers: per-frame expression probabilities and their per-span summary.

:func:`frame_probabilities` scores the face crops the visual extractor kept (``extras["face_crops"]``,
:class:`~dmd_pipeline.extractors.visual.VisualExtractor` with ``face_crop=model.template``) with a
:class:`~dmd_pipeline.face.model.FaceExpressionModel`, in batches; frames without a face get no
probabilities (a row of NaN), never zeros.

:func:`summarise_span` gives one span (a segment, or the whole file) the duration-weighted mean of the
probabilities over the frames in which the face is visible, each frame standing for the time until the next
one (clipped to the span), and the visible fraction of the span's frame time. A span with no visible face
gets ``probs=None``: the caller says "n/a (no face)" instead of presenting zeros as an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FaceSpan", "frame_probabilities", "summarise_span"]


@dataclass
class FaceSpan:
    """The face channel over one span: ``probs`` class -> probability (None when no face was visible),
    ``visible_fraction`` of the span's frame time with a face, ``n_frames`` frames in the span."""

    probs: dict[str, float] | None
    visible_fraction: float
    n_frames: int

    @property
    def top(self) -> tuple[str, float] | None:
        """(class, probability) of the most likely class, or None without a face."""
        if not self.probs:
            return None
        name = max(self.probs, key=self.probs.__getitem__)
        return name, self.probs[name]

    def headline(self) -> str:
        """``face: happy 0.81`` or ``face: n/a (no face)``."""
        top = self.top
        return "face: n/a (no face)" if top is None else f"face: {top[0]} {top[1]:.2f}"


def frame_probabilities(model: Any, crops: np.ndarray, present: np.ndarray, batch: int = 64) -> np.ndarray:
    """(T, C) float32 probabilities of the crops of frames where ``present`` is true; NaN rows elsewhere.

    ``crops`` (T, size, size) uint8 from the visual extractor, ``present`` (T,) its ``face_present`` column;
    an all-zero crop (the extractor's "no crop") counts as absent."""
    crops = np.asarray(crops)
    ok = np.asarray(present, dtype=bool).reshape(-1) & crops.reshape(len(crops), -1).any(axis=1)
    out = np.full((len(crops), len(model.classes)), np.nan, dtype=np.float32)
    if ok.any():
        out[ok] = model.predict_crops(crops[ok], batch=batch)
    return out


def _frame_weights(times: np.ndarray, start: float, end: float) -> np.ndarray:
    """Seconds of [start, end) each frame stands for (until the next frame; the last one the median step)."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(t) == 0:
        return np.zeros(0)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.1
    nxt = np.append(t[1:], t[-1] + step)
    return np.clip(np.minimum(nxt, end) - np.maximum(t, start), 0.0, None)


def summarise_span(
    probs: np.ndarray, times: np.ndarray, classes: list[str], start: float, end: float
) -> FaceSpan:
    """Duration-weighted mean probabilities over the visible frames of [start, end) (module docstring)."""
    w = _frame_weights(times, start, end)
    p = np.asarray(probs, dtype=np.float64)
    visible = ~np.isnan(p).any(axis=1) if p.size else np.zeros(len(w), dtype=bool)
    n = int((w > 0).sum())
    total = float(w.sum())
    seen = float(w[visible].sum())
    if seen <= 0:
        return FaceSpan(None, 0.0, n)
    mean = (p[visible] * w[visible, None]).sum(axis=0) / seen
    return FaceSpan({c: float(v) for c, v in zip(classes, mean, strict=True)}, seen / total, n)
