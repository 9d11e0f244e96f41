"""A photo (a still image) through ``dmd analyze``: the face channel of one image, no voice and no words.

The image is read with Pillow (the same checks as ``dmd evaluate`` on images: no unsafe path, at most
64 MiB), FaceLandmarker (IMAGE mode) finds the faces and the face model reads the largest one through its
eye-aligned crop (:func:`dmd_pipeline.face.crop.image_face_crop`). A face that fills the image (its landmark
box covers at least 40 % of it) means the image already is a face crop: it is read whole, the same rule as
``dmd evaluate`` on images. When no face is found, a small image (at most :data:`SMALL_IMAGE_PX` on its long
side, the size of face-crop datasets such as FER2013's 48x48 images) is read whole as a face crop, and a
larger one has no face answer: ``n/a (no face)``.

The result is an ordinary :class:`~dmd_pipeline.analysis.result.AnalysisResult` (schema 1.3) whose only model
is the face model: ``duration`` 0, one segment ``[0, 0]`` with no text, the face channel per segment and for
the file (``n_frames`` 1, ``visible_fraction`` 1 or 0, the box, the faces seen), the headline
``happy 0.81 — face 1.0 | face: happy 0.81`` (the fused answer from the face alone, then the face), no cues, one key frame with the face box. The DMD models are not run (a photo has no
speech); they stay in the run's options record.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline import __version__
from dmd_pipeline.analysis.fused import fuse_result
from dmd_pipeline.analysis.result import (
    NO_FACE,
    AnalysisResult,
    Cues,
    FaceChannel,
    KeyFrame,
    MediaSummary,
    ModalityInfo,
    Prediction,
    SegmentResult,
    TranscriptInfo,
    make_headline,
)
from dmd_pipeline.errors import InputError

__all__ = ["SMALL_IMAGE_PX", "analyze_photo"]

#: With no face found, an image at most this many pixels on its long side is read whole as a face crop.
SMALL_IMAGE_PX = 128


def _channel(model: Any, name: str, image: np.ndarray) -> tuple[FaceChannel, list[str]]:
    """The face channel of one RGB image and the notes on how it was read."""
    from dmd_pipeline.face.crop import FaceFinder, image_face_crop

    small = max(image.shape[:2]) <= SMALL_IMAGE_PX
    with FaceFinder(num_faces=3) as finder:
        crop, fc, whole = image_face_crop(image, finder, model.template, whole_without_face=small)
    notes: list[str] = []
    if crop is None:
        return FaceChannel(name, None, None, None, 0.0, 1, None, fc.n_faces, NO_FACE), [
            "no face was found in the image: the face channel is n/a (no face)"
        ]
    if not fc.found:
        notes.append(
            f"no face was found in this small image ({image.shape[1]}x{image.shape[0]}): it was read whole, "
            "as a face crop"
        )
    elif whole:
        notes.append("the face fills the image: it was read whole, as a face crop")
    probs = model.predict_crops(crop[None])[0]
    p = {c: round(float(v), 6) for c, v in zip(model.classes, probs, strict=True)}
    label = max(p, key=p.__getitem__)
    box = [round(float(x), 4) for x in fc.box] if fc.box is not None else [0.0, 0.0, 1.0, 1.0]
    return FaceChannel(name, p, label, p[label], 1.0, 1, box, max(1, fc.n_faces), None), notes


def analyze_photo(path: str | Path, model: Any, info: Any = None) -> AnalysisResult:
    """The face channel of the still image ``path`` read by the face model ``model`` (a
    :class:`~dmd_pipeline.face.model.FaceExpressionModel`), as a result (module docstring). InputError for
    an image that cannot be read."""
    from dmd_pipeline.analysis.face import face_run
    from dmd_pipeline.face.evaluate import load_rgb

    t0 = time.perf_counter()
    path = Path(path)
    try:
        image = load_rgb(path)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the image: {exc}", stage="image") from exc
    t_read = time.perf_counter() - t0
    face, notes = _channel(model, model.name, image)
    run = face_run(model, model.name, face, True)
    pred = face.prediction()
    h, w = image.shape[:2]
    x0y0x1y1 = None
    if face.box is not None:
        x, y, bw, bh = face.box
        x0y0x1y1 = [x, y, round(x + bw, 4), round(y + bh, 4)]
    seg = SegmentResult(0, 0.0, 0.0, "", pred, [], None, predictions={model.name: pred}, face=face)
    result = AnalysisResult(
        file=os.path.abspath(path),
        duration=0.0,
        media=MediaSummary(has_audio=False, has_video=True, width=int(w), height=int(h), fps=0.0),
        overall=pred if pred.probabilities else Prediction(),
        segments=[seg],
        modalities=ModalityInfo(
            ["vision"], ["vision"], ["vision"], [], "a still image: the face channel only"
        ),
        transcript=TranscriptInfo("none", 0, {}),
        cues=Cues(2.0, [], {}),  # no frames over time: an empty grid
        model=run.info,
        key_frames=[KeyFrame(0.0, x0y0x1y1)],
        timings={"image": round(t_read, 4), "total": round(time.perf_counter() - t0, 4)},
        warnings=notes,
        tool_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        models=[run],
        headline=make_headline([run], ["vision"], reasons={model.name: face.note or NO_FACE}),
        face=face,
        face_timeline=None,
    )
    fuse_result(result)  # from the face alone: its fused answer leads the headline as in any result
    return result
