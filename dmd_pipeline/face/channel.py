"""The face channel's numbers: per-frame expression probabilities and their per-span summary.

:func:`frame_probabilities` scores the face crops the visual extractor kept (``extras["face_crops"]``,
:class:`~dmd_pipeline.extractors.visual.VisualExtractor` with ``face_crop=model.template``) with a
:class:`~dmd_pipeline.face.model.FaceExpressionModel`, in batches; frames without a face get no
probabilities (a row of NaN), never zeros. :func:`frames_to_score` picks which face frames the model reads:
at most ``max_per_s`` a second, evenly spaced in time, and at least one in every given span (segment) with a
face, so a long clip costs the model a bounded number of crops whatever the visual sampling rate; frames it
leaves out are "not scored" (NaN), which is not "no face": visibility is kept separately.

:func:`summarise_span` gives one span (a segment, or the whole file) the duration-weighted mean of the
probabilities over the scored frames in which the face is visible, each frame standing for the time until
the next one (clipped to the span), and the visible fraction of the span's frame time, counted over every
frame with a face (``visible``), scored or not. A span with no visible face
gets ``probs=None``: the caller says "n/a (no face)" instead of presenting zeros as an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FaceSpan", "frame_probabilities", "frames_to_score", "summarise_span", "visible_frames"]


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


def visible_frames(crops: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(T,) bool: frames with a face (``present``) and a crop of it (an all-zero crop is the extractor's
    "no crop" and counts as absent)."""
    crops = np.asarray(crops)
    return np.asarray(present, dtype=bool).reshape(-1) & crops.reshape(len(crops), -1).any(axis=1)


def frames_to_score(
    times: np.ndarray,
    visible: np.ndarray,
    max_per_s: float | None,
    spans: Sequence[tuple[float, float]] = (),
) -> np.ndarray:
    """(T,) bool: the visible frames the face model reads, at most ``max_per_s`` a second.

    A visible frame is taken when it comes at least ``1 / max_per_s`` s after the last one taken (evenly
    spaced at the cap, every visible frame below it); then every span [start, end) of ``spans`` with a
    visible frame but none taken gets its middle visible frame, so no segment with a face goes unread (a
    span can thus add a frame beyond the cap). ``max_per_s`` None or <= 0: every visible frame."""
    vis = np.asarray(visible, dtype=bool).reshape(-1)
    if max_per_s is None or max_per_s <= 0:
        return vis.copy()
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    step = 1.0 / float(max_per_s)
    take = np.zeros(len(vis), dtype=bool)
    last = -np.inf
    for i in np.flatnonzero(vis):
        if t[i] >= last + step - 1e-9:
            take[i] = True
            last = t[i]
    for start, end in spans:
        inside = vis & (t >= start) & (t < end)
        if inside.any() and not take[inside].any():
            idx = np.flatnonzero(inside)
            take[idx[len(idx) // 2]] = True
    return take


def frame_probabilities(
    model: Any, crops: np.ndarray, present: np.ndarray, batch: int = 64, score: np.ndarray | None = None
) -> np.ndarray:
    """(T, C) float32 probabilities of the crops of frames where ``present`` is true; NaN rows elsewhere.

    ``crops`` (T, size, size) uint8 from the visual extractor, ``present`` (T,) its ``face_present`` column;
    an all-zero crop (the extractor's "no crop") counts as absent. ``score`` (T,) bool limits the frames
    read (:func:`frames_to_score`); the others are NaN too: not scored, whether or not a face is there."""
    crops = np.asarray(crops)
    ok = visible_frames(crops, present)
    if score is not None:
        ok &= np.asarray(score, dtype=bool).reshape(-1)
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
    probs: np.ndarray,
    times: np.ndarray,
    classes: list[str],
    start: float,
    end: float,
    visible: np.ndarray | None = None,
) -> FaceSpan:
    """Duration-weighted mean probabilities over the scored frames of [start, end) and the fraction of its
    frame time with a face (module docstring). ``visible`` (T,) bool: frames with a face, scored or not
    (None: the scored ones, the rows without NaN)."""
    w = _frame_weights(times, start, end)
    p = np.asarray(probs, dtype=np.float64)
    scored = ~np.isnan(p).any(axis=1) if p.size else np.zeros(len(w), dtype=bool)
    vis = scored if visible is None else np.asarray(visible, dtype=bool).reshape(-1)
    n = int((w > 0).sum())
    total = float(w.sum())
    seen = float(w[vis].sum())
    read = float(w[scored].sum())
    if seen <= 0 or read <= 0:
        return FaceSpan(None, 0.0, n)
    mean = (p[scored] * w[scored, None]).sum(axis=0) / read
    return FaceSpan({c: float(v) for c, v in zip(classes, mean, strict=True)}, seen / total, n)
