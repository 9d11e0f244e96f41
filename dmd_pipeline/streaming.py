"""Cutting a long file into streaming windows: where a window ends (:func:`cut_point`: in a pause between
transcript segments, else in the quietest 0.2 s), which transcript segments a window holds
(:func:`spans_in`), one frame stream handed out window by window (:class:`FrameQueue`) and frames computed
with acoustic context trimmed back to their window (:func:`trim_frames`). Used by
:meth:`dmd_pipeline.pipeline.Extractor.extract_stream`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from dmd_pipeline.extractors.base import FrameFeatures


def cut_point(
    buf: np.ndarray, buf_start: int, sr: int, nominal: float, search_s: float, spans: Sequence[Any] | None
) -> float:
    """A window boundary near ``nominal`` on the 0.2 s grid: the middle of the pause between transcript
    segments closest to it, else the point whose surrounding 0.2 s of audio is quietest."""
    grid = 0.2
    lo, hi = nominal - search_s, nominal + search_s
    if spans:
        ordered = sorted(spans, key=lambda x: (x.start, x.end))
        gaps = [
            0.5 * (a.end + b.start)
            for a, b in zip(ordered[:-1], ordered[1:], strict=True)
            if b.start > a.end and lo <= 0.5 * (a.end + b.start) <= hi
        ]
        if gaps:
            best = min(gaps, key=lambda g: abs(g - nominal))
            return round(round(best / grid) * grid, 6)
    cands = [round(c * grid, 6) for c in range(int(np.ceil(lo / grid)), int(np.floor(hi / grid)) + 1)]
    if buf.size == 0 or not cands:
        return round(round(nominal / grid) * grid, 6)
    half = int(0.1 * sr)

    def energy(c: float) -> float:
        i = int(round(c * sr)) - buf_start
        seg = buf[max(0, i - half) : max(0, i + half)]
        return float(np.mean(seg.astype(np.float64) ** 2)) if seg.size else float("inf")

    return min(cands, key=lambda c: (energy(c), abs(c - nominal)))


def spans_in(spans: Sequence[Any] | None, start: float, end: float) -> list[Any]:
    """The transcript segments whose centre lies in ``[start, end)``: what a streaming window transcribes."""
    return [x for x in spans or [] if start <= 0.5 * (float(x.start) + float(x.end)) < end]


class FrameQueue:
    """One frame stream (file times) handed out window by window: :meth:`until` yields the frames before a
    time and keeps the first later one for the next window."""

    def __init__(self, frames: Iterator[tuple[float, np.ndarray]]) -> None:
        self._frames = frames
        self._held: tuple[float, np.ndarray] | None = None
        self._done = False

    def until(self, end: float) -> Iterator[tuple[float, np.ndarray]]:
        """Frames with time < ``end``."""
        while True:
            if self._held is None:
                if self._done:
                    return
                try:
                    self._held = next(self._frames)
                except StopIteration:
                    self._done = True
                    return
            if self._held[0] >= end - 1e-9:
                return
            item, self._held = self._held, None
            yield item

    def close(self) -> None:
        """End the frame decoder (ffmpeg)."""
        close = getattr(self._frames, "close", None)
        if callable(close):
            close()


def trim_frames(frames: Any, lead_s: float, duration: float) -> Any:
    """Frames computed over audio that starts ``lead_s`` before a window, cut to the window
    ``[0, duration)`` with times relative to its start."""
    t = np.asarray(frames.times, dtype=np.float64) - lead_s
    keep = (t >= -1e-9) & (t < duration - 1e-9)
    return FrameFeatures(frames.values[keep], t[keep], list(frames.names), dict(frames.extras))
