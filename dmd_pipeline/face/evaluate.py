"""Evaluating a face-expression model on a label CSV of images (``dmd evaluate --model <face model>``).

The CSV has a file column (``file``/``path``/...) with image paths relative to the CSV's folder, a
``label`` column and optionally a split column (``split``/``mode``/``fold``; without one only
``--split all`` evaluates). Labels are matched to the model's classes ignoring case, with the usual
synonyms (``fearful`` = ``fear``, ``surprised`` = ``surprise``, ``happiness`` = ``happy`` ...); a label
that is none of the model's classes is an error that lists both sets.

Each image goes through :meth:`~dmd_pipeline.face.crop.FaceFinder.crop`: the largest face, eye-aligned;
an image that already is a face crop is used whole - when no face is found in it, or when the face found
fills it (its landmark box covers at least ``fill_fraction`` of the image). An unreadable image is listed
as failed (file and reason) and the rest go on. Metrics: accuracy, UAR, macro-F1, weighted-F1, per-class
figures and the confusion matrix (:func:`~dmd_pipeline.training.metrics.classification_report`), and the
calibration: the 15-bin ECE, NLL and mean top probability of the model's raw (mirror-averaged) probabilities
and after its temperature (:func:`~dmd_pipeline.calibration.calibration_figures` on ``log p``, as the model
applies it; ``raw_probs`` keeps the raw probabilities, what a temperature is fitted on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.errors import DataError
from dmd_pipeline.face.crop import FILL_FRACTION

__all__ = ["LABEL_SYNONYMS", "ImageEvaluation", "evaluate_images", "read_image_labels"]

#: Other spellings of the FER classes met in label files (lower case) -> the class name.
LABEL_SYNONYMS: dict[str, str] = {
    "fearful": "fear", "afraid": "fear", "surprised": "surprise", "happiness": "happy", "joy": "happy",
    "anger": "angry", "sadness": "sad", "disgusted": "disgust", "neutrality": "neutral",
}  # fmt: skip
_IMAGE_LIMIT = 64 << 20  # bytes: a larger "image" is refused rather than decoded


@dataclass
class ImageItem:
    """One row: image path, its label as written, its split ("" when the file has no split column)."""

    path: Path
    label: str
    split: str
    row: int


@dataclass
class ImageEvaluation:
    """What :func:`evaluate_images` measured."""

    report: dict[str, Any] | None
    class_names: list[str]
    n_items: int
    files: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    used_whole: int = 0
    faces_found: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    raw_probs: np.ndarray | None = None  # (N, C) before the model's temperature
    calibration: dict[str, Any] | None = None  # ECE/NLL before and after the temperature


def _canonical(label: str) -> str:
    key = label.strip().lower()
    return LABEL_SYNONYMS.get(key, key)


def _class_of(label: str, classes: list[str]) -> str | None:
    """The model's class for a label string (ignoring case, through the synonyms), else None."""
    return {_canonical(c): c for c in classes}.get(_canonical(label))


def read_image_labels(csv_path: str | Path, split: str) -> tuple[list[ImageItem], str]:
    """The rows of one split (or ``all``) of an image label CSV, and the normalised split name."""
    from dmd_pipeline.data.labels import FILE_COLUMNS, SPLIT_ALIASES, SPLIT_COLUMNS, _read_csv
    from dmd_pipeline.evaluation import check_split

    p = Path(csv_path)
    if not p.is_file():
        raise DataError(p, "label file not found")
    header, rows = _read_csv(p)
    fcol = next((c for c in FILE_COLUMNS if c in header), None)
    if fcol is None or "label" not in header:
        raise DataError(
            p, f"an image label file needs a file column ({'/'.join(FILE_COLUMNS)}) and a label column"
        )
    scol = next((c for c in SPLIT_COLUMNS if c in header), None)
    items = []
    for n, r in rows:
        raw = (r.get(scol) or "").strip().lower() if scol else ""
        items.append(
            ImageItem(
                p.parent / (r.get(fcol) or "").strip(),
                (r.get("label") or "").strip(),
                SPLIT_ALIASES.get(raw, raw),
                n,
            )
        )
    counts: dict[str, int] = {}
    for it in items:
        counts[it.split] = counts.get(it.split, 0) + 1
    has_split = scol is not None and any(it.split for it in items)
    key = check_split(split, counts, p, has_split=has_split)
    return [it for it in items if key == "all" or it.split == key], key


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (HxWx3); ValueError with the reason for an unsafe path, an over-large or
    unreadable file."""
    from PIL import Image, UnidentifiedImageError

    from dmd_pipeline.utils import path_problem

    problem = path_problem(path)
    if problem is not None:
        raise ValueError(problem)
    if path.stat().st_size > _IMAGE_LIMIT:
        raise ValueError(f"larger than {_IMAGE_LIMIT >> 20} MiB")
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.size[0] * im.size[1] > limit:  # Pillow only warns up to twice its limit
                raise ValueError(
                    f"{im.size[0]}x{im.size[1]} pixels is more than {limit:,} (a decompression bomb?)"
                )
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({exc})") from exc


def evaluate_images(
    model: Any,
    csv_path: str | Path,
    split: str = "all",
    fill_fraction: float = FILL_FRACTION,
    batch_size: int = 256,
    on_item: Callable[[ImageItem, str | None], None] | None = None,
) -> ImageEvaluation:
    """Score a :class:`~dmd_pipeline.face.model.FaceExpressionModel` on the images of a label CSV (see the
    module docstring). ``on_item(item, failure_reason_or_None)`` is called once per image."""
    from dmd_pipeline.face.crop import FaceFinder, image_face_crop
    from dmd_pipeline.training.metrics import classification_report

    items, _ = read_image_labels(csv_path, split)
    classes = list(model.classes)
    unknown = sorted({it.label for it in items if _class_of(it.label, classes) is None})
    if unknown:
        raise DataError(
            Path(csv_path),
            f"label(s) {unknown} are not classes of the face model {classes} "
            f"(matched ignoring case, with synonyms such as fearful/fear, surprised/surprise)",
        )
    res = ImageEvaluation(report=None, class_names=classes, n_items=len(items))
    crops: list[np.ndarray] = []
    with FaceFinder(num_faces=3) as finder:
        for it in items:
            try:
                img = load_rgb(it.path)
            except (OSError, ValueError) as exc:
                res.failed.append({"file": str(it.path), "row": str(it.row), "reason": str(exc)})
                if on_item:
                    on_item(it, str(exc))
                continue
            crop, fc, whole = image_face_crop(img, finder, model.template, fill_fraction)
            res.faces_found += int(fc.found)
            res.used_whole += int(whole)
            crops.append(crop)
            res.files.append(str(it.path))
            res.targets.append(_class_of(it.label, classes))
            if on_item:
                on_item(it, None)
    if crops:
        from dmd_pipeline.calibration import calibration_figures, log_probabilities

        raw = model.predict_crops(np.stack(crops), batch=batch_size, calibrated=False)
        pred = raw.argmax(1)  # a temperature never moves the argmax
        res.raw_probs = raw
        res.predictions = [classes[i] for i in pred]
        y = np.array([classes.index(t) for t in res.targets])
        res.report = classification_report(y, pred, len(classes))
        res.calibration = calibration_figures(log_probabilities(raw), y, model.calibration)
    return res

