"""Evaluating a trained model on labelled data: a folder of media, a transcript CSV or an MMSA pickle.

Media (:func:`evaluate_media`): the label file is read with :func:`dmd_pipeline.data.labels.read_labels`
(any layout it understands); each item goes through the extractor the model was trained with
(:meth:`~dmd_pipeline.model.LoadedModel.extraction_config`, built from the settings recorded in the model's
meta), through the feature cache, into the model input exactly as ``dmd extract`` builds it
(:meth:`~dmd_pipeline.model.LoadedModel.inputs`: ``to_model_inputs``, then the modalities the model does not
use replaced by zeros, as its training data had them), and the model runs in batches. Items that fail extraction are listed and left out.

Labels: a classification model's class names are matched to the label strings case-insensitively
(:func:`class_index_map`); the label file's own (sorted) order plays no part. Regression labels are the
numbers.

Metrics: regression models get the MMSA metrics (:func:`~dmd_pipeline.training.metrics.regression_metrics`);
classification models accuracy, UAR, macro-F1 and weighted-F1 plus the per-class figures and the confusion
matrix (:func:`~dmd_pipeline.training.metrics.classification_report`), and their calibration
(:func:`calibration_of`: ECE over 15 bins and NLL of the raw softmax and after the model's temperature).
The outputs scored here are the network's raw logits; the model's calibration is applied on top of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dmd_pipeline.calibration import calibration_figures
from dmd_pipeline.data.labels import FILE_COLUMNS, SPLIT_ALIASES, SPLIT_COLUMNS, _read_csv, read_labels
from dmd_pipeline.data.text_only import REQUIRED_COLUMNS
from dmd_pipeline.errors import ConfigError, DataError, InputError
from dmd_pipeline.model import LoadedModel

if TYPE_CHECKING:
    from dmd_pipeline.pipeline import Extractor

SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------- splits


def normalize_split(split: str) -> str | None:
    """``train``/``valid``/``test``/``all`` for a split name or alias (``val``, ``dev`` ...), else None."""
    key = str(split).strip().lower()
    return "all" if key == "all" else SPLIT_ALIASES.get(key)


def check_split(split: str, counts: dict[str, int], where: Any, has_split: bool = True) -> str:
    """The normalised split to evaluate, or a DataError that lists the splits the data has.

    ``counts`` = items per split; ``has_split`` False for a label file without a split column, which only
    ``all`` can evaluate.
    """
    key = normalize_split(split)
    present = [f"{s} ({counts[s]})" for s in SPLITS if counts.get(s)]
    present += [f"{s} ({n})" for s, n in counts.items() if s not in SPLITS and n]
    listing = (", ".join(present) + ", or all") if present else "none (the data has no items)"
    if not has_split:
        listing = "all (the label file has no split column)"
    if key is None:
        raise DataError(where, f"unknown split {split!r}; available: {listing}")
    if key == "all":
        return key
    if not has_split:
        raise DataError(
            where,
            "the label file has no split column (split/mode/fold); use --split all to evaluate every row",
        )
    if not counts.get(key):
        raise DataError(where, f"no items in split {key!r}; available: {listing}")
    return key


def has_split_column(csv_path: str | Path) -> bool:
    """True when a label CSV has a split/mode/fold column with at least one value."""
    header, rows = _read_csv(Path(csv_path))
    cols = [c for c in SPLIT_COLUMNS if c in header]
    return any((row.get(c) or "").strip() for _, row in rows for c in cols)


# ------------------------------------------------------------------------------------------ label files


def label_file_kind(csv_path: str | Path, modalities: Sequence[str]) -> str:
    """``"transcripts"`` for a text-only label CSV of transcripts (MMSA/CMU-MOSI ``label.csv``: video_id,
    clip_id, text, label, mode) to be encoded for a text model, else ``"media"``.

    Transcripts when the CSV has that layout and the model reads text only, or when it has that layout, no
    media column and none of its ``Raw/`` media exist (the shared CMU-MOSI file: transcripts, no videos).
    """
    p = Path(csv_path)
    if not p.is_file():
        raise DataError(p, "label file not found")
    header, _ = _read_csv(p)
    text_layout = all(c in header for c in REQUIRED_COLUMNS)
    if text_layout and list(modalities) == ["text"]:
        return "transcripts"
    if any(c in header for c in FILE_COLUMNS) or not text_layout:
        return "media"
    try:  # MMSA / MOSI raw layouts locate media by video_id (and clip_id)
        found = any(it.media.is_file() for it in read_labels(p.parent, p).items)
    except DataError:
        found = False
    return "media" if found else "transcripts"


def class_index_map(labels: Iterable[str], class_names: Sequence[str], where: Any = None) -> dict[str, int]:
    """Label string -> the model's class index, matched case-insensitively (surrounding blanks ignored).

    Raises DataError listing both sets when a label is not one of the model's classes.
    """
    index: dict[str, int] = {}
    for i, name in enumerate(class_names):
        index.setdefault(str(name).strip().lower(), i)
    wanted = sorted({str(label) for label in labels})
    unknown = [lab for lab in wanted if lab.strip().lower() not in index]
    if unknown:
        raise DataError(
            where,
            f"label(s) {', '.join(repr(u) for u in unknown)} are not classes of the model; "
            f"labels in the file: {wanted}; the model's classes: {list(class_names)} (matched ignoring case)",
        )
    return {lab: index[lab.strip().lower()] for lab in wanted}


@dataclass
class LabelSelection:
    """The items of one split of a label file, with their targets (class index or value)."""

    items: list[Any]  # dmd_pipeline.data.labels.LabelItem
    targets: list[float]
    split: str
    source: Path
    layout: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason) of rows not evaluated
    n_rows: int = 0


def select_media_items(csv_path: str | Path, model: LoadedModel, split: str) -> LabelSelection:
    """Read a media label file for ``model`` (a LoadedModel), keep one split, map labels to targets."""
    p = Path(csv_path)
    task = "classification" if model.task == "classification" else "regression"
    label_set = read_labels(p.parent, p, layout="auto", task=task)
    skipped = list(label_set.skipped)
    usable = []
    for it in label_set.items:
        if it.label is None:
            skipped.append((it.id, "no label"))
        else:
            usable.append(it)
    counts: dict[str, int] = {}
    for it in usable:
        counts[it.split] = counts.get(it.split, 0) + 1
    key = check_split(split, counts, p, has_split=has_split_column(p))
    items = [it for it in usable if key == "all" or it.split == key]
    if task == "classification":
        mapping = class_index_map([str(it.label) for it in items], model.class_names or [], p)
        targets = [float(mapping[str(it.label)]) for it in items]
    else:
        targets = [float(it.label) for it in items]
    return LabelSelection(items, targets, key, p, label_set.layout, skipped, len(label_set.items))


# ------------------------------------------------------------------------------------------- extraction


@dataclass
class MediaEvaluation:
    """What :func:`evaluate_media` produced: outputs and targets of the items that worked, the failures."""

    ids: list[str]
    outputs: np.ndarray  # (N, num_classes): raw logits (before the model's calibration) or regression scores
    targets: np.ndarray  # (N,)
    failures: list[dict[str, str]]  # {"id", "file", "stage", "reason"}
    cache_hits: int = 0


def evaluate_media(
    model: LoadedModel,
    items: Sequence[Any],
    targets: Sequence[float],
    extractor: Extractor,
    batch_size: int = 64,
    use_cache: bool = True,
    on_item: Callable[[Any, dict | None], None] | None = None,
) -> MediaEvaluation:
    """Extract every item with ``extractor`` (one ``pipeline.Extractor``: models loaded once), build the
    model inputs and run the model in batches of ``batch_size``.

    An item whose extraction fails (InputError) is recorded in ``failures`` and left out; ``on_item(item,
    failure or None)`` is called after each item.
    """
    aligned = bool(extractor.config.aligned)
    outputs: list[np.ndarray] = []
    ids: list[str] = []
    kept: list[float] = []
    failures: list[dict[str, str]] = []
    buf: list[dict[str, np.ndarray]] = []
    hits = 0
    for item, target in zip(items, targets, strict=True):
        failure = None
        try:
            bundle = extractor.extract_clip(
                item.media, start=item.start, end=item.end, transcript=item.transcript, use_cache=use_cache
            )
            x = model.inputs(bundle, aligned=aligned)
        except InputError as exc:
            failure = {"id": item.id, "file": str(item.media), "stage": exc.stage, "reason": exc.reason}
            failures.append(failure)
        else:
            hits += int(bool(bundle.metadata.get("cache", {}).get("hit")))
            buf.append(x)
            ids.append(item.id)
            kept.append(float(target))
            if len(buf) >= batch_size:
                outputs.append(model.predict(buf, calibrated=False))
                buf = []
        if on_item is not None:
            on_item(item, failure)
    if buf:
        outputs.append(model.predict(buf, calibrated=False))
    n_out = int(model.config.num_classes)
    out = np.concatenate(outputs) if outputs else np.zeros((0, n_out), np.float32)
    return MediaEvaluation(ids, out, np.asarray(kept, dtype=np.float64), failures, hits)


# ---------------------------------------------------------------------------------------------- metrics


def score_outputs(
    model: LoadedModel, outputs: np.ndarray, targets: np.ndarray
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """(metrics, classification report or None).

    Classification: ``accuracy``, ``uar``, ``macro_f1``, ``weighted_f1`` and the full
    :func:`~dmd_pipeline.training.metrics.classification_report`; regression: the MMSA metrics.
    """
    from dmd_pipeline.training.metrics import classification_report, regression_metrics

    if len(targets) == 0:
        raise ConfigError("nothing to evaluate: no item could be scored")
    n_cls = int(model.config.num_classes)
    if n_cls > 1:
        pred = np.asarray(outputs).argmax(axis=1)
        report = classification_report(np.asarray(targets).astype(np.int64), pred, n_cls)
        metrics = {k: report[k] for k in ("accuracy", "uar", "macro_f1", "weighted_f1")}
        return metrics, report
    return regression_metrics(np.asarray(outputs)[:, 0], targets), None


def calibration_of(model: LoadedModel, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any] | None:
    """A classifier's calibration on raw ``outputs`` (logits) and their ``targets``: ECE and NLL before and
    after its temperature (``*_after`` None when it has none), with the reliability bins
    (:func:`~dmd_pipeline.calibration.calibration_figures`); None for a regression model or no items."""
    if model.task != "classification" or len(targets) == 0:
        return None
    return calibration_figures(np.asarray(outputs), np.asarray(targets), model.calibration)


def remap_pickle_labels(
    labels: np.ndarray, data_names: Sequence[str] | None, model: LoadedModel
) -> np.ndarray:
    """Class indices of a pickle (in its sidecar's ``class_names`` order) re-indexed into the model's order.

    Unchanged when the pickle names no classes, or its names are not all the model's (e.g. a model with
    generic ``class_i`` names).
    """
    names = list(model.class_names or [])
    if not data_names or not names or list(data_names) == names:
        return labels
    try:
        mapping = class_index_map(data_names, names)
    except DataError:
        return labels
    table = np.array([mapping[str(n)] for n in data_names], dtype=np.int64)
    arr = np.asarray(labels).astype(np.int64)
    ok = (arr >= 0) & (arr < len(table))
    return np.where(ok, table[np.clip(arr, 0, len(table) - 1)], arr)
