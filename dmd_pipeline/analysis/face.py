"""The face channel of a result: a facial-expression model read over the frames of one extraction.

:func:`face_frames_of` scores the face crops one bundle's visual frames kept (the extractor keeps them when
a face model runs: ``ExtractionConfig.face_crop``) and keeps, per frame, the file time, the probabilities
(NaN rows where no face is visible), the face box and how many faces were detected; a streamed file adds
one such stretch per window and nothing else of its frames. The model reads at most ``max_per_s`` of the
visible frames a second (:func:`dmd_pipeline.face.channel.frames_to_score`: evenly spaced, at least one per
segment with a face; ``AnalyzeOptions.face_fps``); the others are kept as visible but not scored, so the
visible fraction still counts every frame with a face. :func:`face_channel` summarises the frames
over a span (a segment or the whole file, :func:`dmd_pipeline.face.channel.summarise_span`: the
duration-weighted mean over the frames in which the face is visible, and the visible fraction) into the
result's :class:`~dmd_pipeline.analysis.result.FaceChannel`; :func:`face_timeline` puts them on a regular
grid for the report's face-over-time plot; :func:`face_run` is the face model's ``models[]`` entry.

The face used in a segment is its speaking face (:mod:`dmd_pipeline.face.speaking`: every face tracked, the
one whose mouth moves with the speech chosen; the analysis composes each utterance's frames and crops from
it): :func:`with_choice` takes the segment's ``box`` (``[x, y, w, h]``, fractions of the frame) and
``faces_seen`` (the most faces seen at once) from that choice, and ``chosen_by``, the rule that chose it. Without a choice (frames composed elsewhere)
``box`` is the median of the face's boxes over the span's visible frames and ``faces_seen`` is 1 when it
was seen, else 0; the file's ``faces_seen`` is the most over its segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmd_pipeline.analysis.result import (
    NO_FACE,
    NO_VIDEO,
    FaceChannel,
    FaceTimeline,
    ModelRun,
    calibration_summary,
)
from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.face.channel import (
    frame_probabilities,
    frames_to_score,
    summarise_span,
    visible_frames,
)

__all__ = [
    "FaceFrames",
    "face_channel",
    "face_frames_of",
    "face_run",
    "face_timeline",
    "join_face_frames",
    "with_choice",
]


@dataclass
class FaceFrames:
    """Per-frame face-channel numbers of a stretch of a file: file ``times`` (T,), ``probs`` (T, C) (NaN rows
    where the model read no face: none visible, or not scored), ``boxes`` (T, 4) x0, y0, x1, y1 fractions,
    ``n_faces`` (T,) faces detected, ``visible`` (T,) bool frames with a face, scored or not (None: the
    scored ones)."""

    times: np.ndarray
    probs: np.ndarray
    boxes: np.ndarray
    n_faces: np.ndarray
    visible: np.ndarray | None = None

    def seen(self) -> np.ndarray:
        """(T,) bool: the frames with a visible face."""
        if self.visible is not None:
            return np.asarray(self.visible, dtype=bool)
        return ~np.isnan(self.probs).any(axis=1)


def face_frames_of(
    model: Any,
    visual: FrameFeatures | None,
    offset: float = 0.0,
    max_per_s: float | None = None,
    spans: Sequence[tuple[float, float]] = (),
) -> FaceFrames | None:
    """The face-channel frames of one bundle's visual features (None without video frames).

    ``model`` is a :class:`~dmd_pipeline.face.model.FaceExpressionModel`; the frames must carry its crops
    (``extras["face_crops"]``, else ValueError: the extractor was built without ``face_crop``). The model
    reads at most ``max_per_s`` visible frames a second (None or 0: all), at least one in each of ``spans``
    (the bundle's segments, in bundle time) with a face."""
    if visual is None or visual.n_frames == 0:
        return None
    crops = visual.extras.get("face_crops")
    if crops is None:
        raise ValueError("the visual frames carry no face crops (extract with ExtractionConfig.face_crop)")
    names = list(visual.names)
    present = (
        visual.values[:, names.index("face_present")] > 0.5
        if "face_present" in names
        else np.ones(visual.n_frames, bool)
    )
    times = np.asarray(visual.times, np.float64)
    visible = visible_frames(crops, present)
    score = frames_to_score(times, visible, max_per_s, spans)
    probs = frame_probabilities(model, crops, present, score=score)
    n = visual.n_frames
    boxes = np.asarray(visual.extras.get("boxes", np.zeros((n, 4))), dtype=np.float64).reshape(n, 4)
    n_faces = np.asarray(visual.extras.get("n_faces", present.astype(np.int16)), dtype=np.int64).reshape(n)
    return FaceFrames(times + offset, probs, boxes, n_faces, visible)


def join_face_frames(parts: Sequence[FaceFrames | None]) -> FaceFrames | None:
    """The frames of consecutive stretches (streaming windows) as one (None when none has frames)."""
    got = [p for p in parts if p is not None and len(p.times)]
    if not got:
        return None
    return FaceFrames(
        np.concatenate([p.times for p in got]),
        np.concatenate([p.probs for p in got]),
        np.concatenate([p.boxes for p in got]),
        np.concatenate([p.n_faces for p in got]),
        np.concatenate([p.seen() for p in got]),
    )


def _box(frames: FaceFrames, start: float, end: float) -> list[float] | None:
    """Median ``[x, y, w, h]`` of the visible face over [start, end) (None when it is not seen there)."""
    inside = (frames.times >= start) & (frames.times < end) & frames.seen()
    if not inside.any():
        return None
    b = np.median(np.clip(frames.boxes[inside], 0.0, 1.0), axis=0)
    return [round(float(x), 4) for x in (b[0], b[1], max(0.0, b[2] - b[0]), max(0.0, b[3] - b[1]))]


def face_channel(
    model_name: str, classes: list[str], frames: FaceFrames | None, start: float, end: float
) -> FaceChannel:
    """The face channel over [start, end): probabilities over the visible frames (duration-weighted), the
    visible fraction, the frames in the span, the box and faces seen; ``n/a (no video)`` without frames,
    ``n/a (no face)`` when no face is visible in the span."""
    if frames is None:
        return FaceChannel.absent(model_name, NO_VIDEO)
    span = summarise_span(frames.probs, frames.times, classes, start, end, frames.visible)
    if span.probs is None:
        return FaceChannel.absent(model_name, NO_FACE, span.n_frames)
    total = sum(span.probs.values())
    probs = {c: round(float(p) / total, 6) for c, p in span.probs.items()}
    label = max(probs, key=probs.__getitem__)
    return FaceChannel(
        model=model_name,
        probabilities=probs,
        label=label,
        probability=probs[label],
        visible_fraction=round(float(span.visible_fraction), 4),
        n_frames=int(span.n_frames),
        box=_box(frames, start, end),
        faces_seen=1,
        note=None,
    )


def with_choice(face: FaceChannel, choice: dict[str, Any] | None) -> FaceChannel:
    """``face`` with the box, faces seen and rule (``chosen_by``) of the segment's speaking-face choice
    (``extras["face_choices"]`` of :func:`dmd_pipeline.face.speaking.compose`); unchanged without one. The
    box stays None when no face was visible (no answer: nothing to point at)."""
    if not choice:
        return face
    if face.probabilities is not None and choice.get("box") is not None:
        face.box = [round(float(x), 4) for x in choice["box"]]
    face.faces_seen = int(choice.get("faces_seen") or 0)
    face.chosen_by = str(choice["rule"]) if choice.get("rule") else None
    return face


def face_timeline(
    model_name: str, classes: list[str], frames: FaceFrames | None, duration: float, rate_hz: float
) -> FaceTimeline | None:
    """Class probabilities on a ``rate_hz`` grid over [0, duration): each point the mean of the visible
    scored frames within half a step of it (None where there are none); None without frames."""
    if frames is None or duration <= 0 or rate_hz <= 0:
        return None
    step = 1.0 / float(rate_hz)
    grid = np.arange(0.0, float(duration), step)
    visible = ~np.isnan(frames.probs).any(axis=1)
    cols: dict[str, list[float | None]] = {c: [] for c in classes}
    for t in grid:
        near = visible & (frames.times >= t - step / 2) & (frames.times < t + step / 2)
        mean = frames.probs[near].mean(axis=0) if near.any() else None
        for j, c in enumerate(classes):
            cols[c].append(None if mean is None else round(float(mean[j]), 4))
    return FaceTimeline(model_name, float(rate_hz), [round(float(t), 4) for t in grid], cols)


def face_run(model: Any, name: str, overall: FaceChannel, has_video: bool) -> ModelRun:
    """The face model's ``models[]`` entry (role ``expression``): its overall prediction over the file, its
    card and calibration, and a note when it has no answer."""
    note = ""
    if not has_video:
        note = "the file has no video: no face to read"
    elif overall.probabilities is None:
        note = "no face was visible in any frame: the face channel is n/a"
    run = ModelRun.from_info(model.info(), overall.prediction(), ["vision"] if has_video else [], [], note)
    run.name = name
    run.info.name = name
    run.role = "expression"
    run.card = model.card()
    run.calibration = calibration_summary(model.calibration)
    return run
