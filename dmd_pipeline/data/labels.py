"""Label-file readers: turn a dataset folder + label CSV into a list of items to extract.

Three input layouts are understood:

* ``mmsa``   -- MMSA raw layout: ``label.csv`` with ``video_id, clip_id, text, label, ..., mode`` and the clips
  in ``Raw/<video_id>/<clip_id>.<ext>`` (any media extension).
* ``mosi``   -- CMU-MOSI raw layout: full videos ``Raw/<video_id>.<ext>`` (or ``<video_id>.<ext>``) plus
  ``start``/``end`` columns in seconds; segments are cut on the fly at extraction time.
* ``folder`` -- any folder of media plus a CSV mapping ``file`` -> ``label`` (numeric or categorical), with
  optional ``transcript``/``text``, ``split``/``mode`` and ``start``/``end`` columns.

Labels: when every label parses as a number the task is regression; otherwise it is classification and
the class names are the sorted distinct label strings (class index = position in that list). A file that mixes
numeric and categorical labels (e.g. ``../shared/data/clips/labels.csv``: CMU-MOSI scores beside CREMA-D
emotions) keeps the rows of one kind: ``task="regression"`` or ``"classification"`` chooses, and ``"auto"``
takes the kind with more rows (categorical on a tie). The other rows are listed in ``LabelSet.skipped``.

Items without a split get a deterministic one: items are ordered by ``sha256(id)`` and cut 70/15/15 into
train/valid/test, with at least one valid and one test item when there are three or more items. The same
set of ids always gives the same split, whatever the CSV row order.

Bounds: a label file over :data:`MAX_LABEL_FILE_BYTES` or :data:`MAX_LABEL_ROWS` rows is refused with a
:class:`DataError` naming the file and the limit. Confinement: with ``allow_outside=False`` (what
``dmd extract`` passes unless ``--allow-outside``) every media path must lie inside the input folder; an
absolute path or a ``..`` leading out is refused, naming the row's item (symlinks inside the folder are
the folder owner's choice and are followed).
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from dmd_pipeline.errors import DataError
from dmd_pipeline.utils import format_bytes, path_problem

MAX_LABEL_FILE_BYTES = 64 * 1024 * 1024  # CMU-MOSEI's label.csv is ~3 MB
MAX_LABEL_ROWS = 1_000_000

MEDIA_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".mpg", ".mpeg", ".m4v", ".wmv",
              ".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aac", ".opus")  # fmt: skip
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "dev": "valid",
                 "validation": "valid", "test": "test", "testing": "test"}  # fmt: skip
FILE_COLUMNS = ("file", "path", "filename", "media", "video", "clip")
TEXT_COLUMNS = ("transcript", "text", "sentence", "utterance")
SPLIT_COLUMNS = ("split", "mode", "fold")
LAYOUTS = ("auto", "mmsa", "mosi", "folder")


@dataclass
class LabelItem:
    """One clip to extract: media path, optional span inside it, optional transcript, label, split."""

    id: str
    media: Path
    label: float | str | None
    split: str
    start: float | None = None
    end: float | None = None
    transcript: str | None = None


@dataclass
class LabelSet:
    """Items read from a label file, with the task kind and (for classification) the class names."""

    items: list[LabelItem]
    task: str  # "regression" | "classification"
    layout: str
    source: Path
    class_names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason) of rows left out

    def class_index(self, label: float | str | None) -> int:
        """Index of a categorical label in :attr:`class_names` (-1 when unknown/missing)."""
        key = _label_key(label)
        return self.class_names.index(key) if key in self.class_names else -1

    def regression_value(self, label: float | str | None) -> float:
        """The numeric value of a label, NaN when it is not a number (categorical labels)."""
        num = _as_float(label)
        return math.nan if num is None else num

    def split_counts(self) -> dict[str, int]:
        """Number of items per split."""
        counts = {"train": 0, "valid": 0, "test": 0}
        for it in self.items:
            counts[it.split] = counts.get(it.split, 0) + 1
        return counts


# ----------------------------------------------------------------------------------------------------------


TASKS = ("auto", "regression", "classification")


def read_labels(
    input_path: str | Path,
    labels: str | Path | None = None,
    layout: str = "auto",
    task: str = "auto",
    allow_outside: bool = True,
) -> LabelSet:
    """Read a dataset: ``input_path`` is the media root; ``labels`` the CSV (default: ``<root>/label.csv``
    or ``<root>/labels.csv``). ``layout`` is one of auto/mmsa/mosi/folder; auto looks at the CSV columns.
    ``task`` (auto/regression/classification) picks which labels to keep when numeric and categorical mix.
    ``allow_outside=False`` refuses media paths that resolve outside ``input_path`` (DataError); the
    library default keeps them (``dmd extract`` confines unless ``--allow-outside``).
    """
    if task not in TASKS:
        raise DataError(labels or input_path, f"unknown task {task!r}; choose one of {', '.join(TASKS)}")

    root = Path(input_path)
    if layout not in LAYOUTS:
        raise DataError(labels or root, f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not root.exists():
        raise DataError(root, "input folder not found")
    csv_path = _find_csv(root, labels)
    header, rows = _read_csv(csv_path)
    if layout == "auto":
        layout = detect_layout(root, header)
    if layout == "mmsa":
        label_set = read_mmsa_layout(root, csv_path, task)
    elif layout == "mosi":
        label_set = read_mosi_layout(root, csv_path, task)
    else:
        label_set = read_folder_layout(root, csv_path, task)
    if not allow_outside:
        confine_items(label_set, root)
    return label_set


def confine_items(label_set: LabelSet, root: str | Path) -> None:
    """Raise DataError for the first item whose media path leads outside ``root``.

    The check is on the path as the label file writes it (absolute paths and ``..`` normalised away), not
    on symlink targets: a symlink placed inside the input folder is the folder owner's choice, a path in
    a label file may come from anyone.
    """
    import os

    base = Path(os.path.abspath(root))
    for it in label_set.items:
        target = Path(os.path.abspath(it.media))
        if target != base and base not in target.parents:
            raise DataError(
                label_set.source,
                f"item {it.id!r}: media {it.media} is outside the input folder {base} "
                "(pass --allow-outside to accept media outside it)",
            )


def detect_layout(root: Path, header: list[str]) -> str:
    """mosi when video_id + start/end and no ``Raw/<video_id>/`` folders; mmsa for video_id + clip_id;
    folder when a file column is present."""
    cols = {h.lower() for h in header}
    if {"video_id", "clip_id"} <= cols:
        if {"start", "end"} <= cols and not _has_clip_folders(root):
            return "mosi"
        return "mmsa"
    if "video_id" in cols and {"start", "end"} <= cols:
        return "mosi"
    return "folder"


def _has_clip_folders(root: Path) -> bool:
    raw = root / "Raw"
    return raw.is_dir() and any(p.is_dir() for p in raw.iterdir())


def read_mmsa_layout(root: str | Path, csv_path: str | Path | None = None, task: str = "auto") -> LabelSet:
    """MMSA raw layout: ``label.csv`` (video_id, clip_id, text, label, mode) + ``Raw/<vid>/<clip>.<ext>``."""
    root = Path(root)
    csv_path = _find_csv(root, csv_path)
    header, rows = _read_csv(csv_path)
    _require(csv_path, header, ("video_id", "clip_id", "label"))
    items = []
    for i, row in rows:
        vid, clip = row["video_id"].strip(), row["clip_id"].strip()
        _nonempty(csv_path, i, "video_id", vid)
        _nonempty(csv_path, i, "clip_id", clip)
        media = _find_media(root / "Raw" / vid, clip) or _find_media(root / vid, clip)
        items.append(
            LabelItem(
                id=f"{vid}$_${clip}",
                media=media or root / "Raw" / vid / f"{clip}.mp4",
                label=_parse_label(row.get("label")),
                split=_split_of(csv_path, i, row),
                transcript=_text_of(row),
            )
        )
    return _finish(items, "mmsa", csv_path, task)


def read_mosi_layout(root: str | Path, csv_path: str | Path | None = None, task: str = "auto") -> LabelSet:
    """CMU-MOSI raw layout: full videos ``Raw/<vid>.<ext>`` or ``<vid>.<ext>`` + start/end seconds per row."""
    root = Path(root)
    csv_path = _find_csv(root, csv_path)
    header, rows = _read_csv(csv_path)
    _require(csv_path, header, ("video_id", "label", "start", "end"))
    items = []
    media_of: dict[str, Path] = {}
    for i, row in rows:
        vid = row["video_id"].strip()
        _nonempty(csv_path, i, "video_id", vid)
        clip = (row.get("clip_id") or str(i)).strip()
        if vid not in media_of:
            media_of[vid] = (
                _find_media(root / "Raw", vid) or _find_media(root, vid) or root / "Raw" / f"{vid}.mp4"
            )
        start, end = (
            _float_cell(csv_path, i, "start", row["start"]),
            _float_cell(csv_path, i, "end", row["end"]),
        )
        if end < start:  # end == start occurs in the real CMU-MOSI file; extraction reports it per item
            raise DataError(csv_path, f"row {i}: end ({end}) is before start ({start})")
        items.append(
            LabelItem(
                id=f"{vid}$_${clip}",
                media=media_of[vid],
                label=_parse_label(row.get("label")),
                split=_split_of(csv_path, i, row),
                start=start,
                end=end,
                transcript=_text_of(row),
            )
        )
    return _finish(items, "mosi", csv_path, task)


def read_folder_layout(root: str | Path, csv_path: str | Path | None = None, task: str = "auto") -> LabelSet:
    """A folder of media + a CSV mapping file -> label (optional transcript, split, start/end columns)."""
    root = Path(root)
    csv_path = _find_csv(root, csv_path)
    header, rows = _read_csv(csv_path)
    file_col = next((c for c in FILE_COLUMNS if c in header), None)
    if file_col is None:
        raise DataError(csv_path, f"missing column 'file' (one of {', '.join(FILE_COLUMNS)}); found {header}")
    _require(csv_path, header, ("label",))
    items = []
    seen: set[str] = set()
    for i, row in rows:
        name = row[file_col].strip()
        _nonempty(csv_path, i, file_col, name)
        media = Path(name) if Path(name).is_absolute() else root / name
        start = _float_cell(csv_path, i, "start", row["start"]) if (row.get("start") or "").strip() else None
        end = _float_cell(csv_path, i, "end", row["end"]) if (row.get("end") or "").strip() else None
        item_id = (
            Path(name).stem
            if start is None
            else f"{Path(name).stem}_{start:g}_{end if end is None else f'{end:g}'}"
        )
        if item_id in seen:
            item_id = f"{item_id}_{i}"
        seen.add(item_id)
        items.append(
            LabelItem(
                id=item_id,
                media=media,
                label=_parse_label(row.get("label")),
                split=_split_of(csv_path, i, row),
                start=start,
                end=end,
                transcript=_text_of(row),
            )
        )
    return _finish(items, "folder", csv_path, task)


# ----------------------------------------------------------------------------------------------------------


def deterministic_splits(ids: list[str], valid_frac: float = 0.15, test_frac: float = 0.15) -> dict[str, str]:
    """Split ids 70/15/15 by their sha256 order (at least one valid and one test when there are >= 3;
    two ids: one train, one valid)."""
    order = sorted(ids, key=lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest())
    n = len(order)
    n_valid = round(valid_frac * n)
    n_test = round(test_frac * n)
    if n >= 3:
        n_valid, n_test = max(1, n_valid), max(1, n_test)
    elif n == 2:  # too few for three splits: one train, one valid (training needs both), no test
        n_valid, n_test = 1, 0
    out = {}
    for pos, item_id in enumerate(order):
        if pos < n_test:
            out[item_id] = "test"
        elif pos < n_test + n_valid:
            out[item_id] = "valid"
        else:
            out[item_id] = "train"
    return out


def _finish(items: list[LabelItem], layout: str, csv_path: Path, task: str) -> LabelSet:
    if not items:
        raise DataError(csv_path, "the label file has no rows")
    missing = [it.id for it in items if not it.split]
    if missing:
        assigned = deterministic_splits(missing)
        for it in items:
            if not it.split:
                it.split = assigned[it.id]
    return _select_task(LabelSet(items=items, task="", layout=layout, source=csv_path), task)


def _select_task(label_set: LabelSet, task: str) -> LabelSet:
    """Decide regression vs classification, keep the rows of that kind, number the classes."""
    items = label_set.items
    numeric = [it for it in items if it.label is not None and _as_float(it.label) is not None]
    categorical = [it for it in items if it.label is not None and _as_float(it.label) is None]
    if task == "auto":
        task = "regression" if len(numeric) > len(categorical) else "classification"
        if not categorical:
            task = "regression"
    if task == "regression":
        kept, dropped, why = numeric, categorical, "categorical label in a regression dataset"
    else:
        # Classification keeps categorical rows; a purely numeric file classifies its distinct values.
        kept, dropped, why = (
            (categorical, numeric, "numeric label in a classification dataset")
            if categorical
            else (numeric, [], "")
        )
    if not kept:
        raise DataError(label_set.source, f"no {task} labels in the label file")
    drop_ids = {id(it) for it in dropped}
    label_set.skipped = [(it.id, why) for it in dropped]
    label_set.items = [it for it in items if id(it) not in drop_ids]
    label_set.task = task
    if task == "regression":
        for it in label_set.items:
            if it.label is not None:
                it.label = _as_float(it.label)
        label_set.class_names = []
    else:
        label_set.class_names = sorted(
            {_label_key(it.label) for it in label_set.items if it.label is not None}
        )
    return label_set


def _find_csv(root: Path, labels: str | Path | None) -> Path:
    if labels is not None:
        p = Path(labels)
        if not p.is_file():
            raise DataError(p, "label file not found")
        return p
    for name in ("label.csv", "labels.csv"):
        if (root / name).is_file():
            return root / name
    raise DataError(root, "no label file given and no label.csv/labels.csv in the folder")


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (lower-cased, stripped) and (row number, row dict) pairs; row numbers are 1-based data rows."""
    problem = path_problem(path)  # never open a FIFO or a device
    if problem is not None:
        raise DataError(path, f"cannot read the label file: {problem}")
    size = path.stat().st_size
    if size > MAX_LABEL_FILE_BYTES:
        raise DataError(
            path,
            f"label file is {format_bytes(size)}, over the limit of {format_bytes(MAX_LABEL_FILE_BYTES)}",
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise DataError(path, "empty CSV (no header row)")
            header = [h.strip().lower() for h in header]
            rows = []
            for i, rec in enumerate(reader, start=1):
                if not any(c.strip() for c in rec):
                    continue
                if len(rec) > len(header):
                    raise DataError(path, f"row {i} has {len(rec)} fields, the header has {len(header)}")
                if i > MAX_LABEL_ROWS:
                    raise DataError(path, f"more than {MAX_LABEL_ROWS} rows (the limit of a label file)")
                rows.append((i, dict(zip(header, rec + [""] * (len(header) - len(rec)), strict=True))))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a UTF-8 CSV file: {exc}") from exc
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV: {exc}") from exc
    return header, rows


def _require(path: Path, header: list[str], cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(repr(c) for c in missing)}; found {header}")


def _nonempty(path: Path, row: int, col: str, value: str) -> None:
    if not value:
        raise DataError(path, f"row {row}: empty '{col}'")


def _float_cell(path: Path, row: int, col: str, value: str) -> float:
    num = _as_float(value)
    if num is None or not math.isfinite(num):
        raise DataError(path, f"row {row}: column '{col}' is not a number: {value!r}")
    return num


def _as_float(value: float | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value.strip())
    except ValueError:
        return None


def _parse_label(value: str | None) -> float | str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def _label_key(value: float | str | None) -> str:
    return "" if value is None else str(value).strip()


def _text_of(row: dict[str, str]) -> str | None:
    for c in TEXT_COLUMNS:
        if (row.get(c) or "").strip():
            return row[c].strip()
    return None


def _split_of(path: Path, row_no: int, row: dict[str, str]) -> str:
    for c in SPLIT_COLUMNS:
        raw = (row.get(c) or "").strip().lower()
        if raw:
            if raw not in SPLIT_ALIASES:
                raise DataError(
                    path, f"row {row_no}: unknown split {raw!r} in column '{c}' (train/valid/test)"
                )
            return SPLIT_ALIASES[raw]
    return ""


def _find_media(folder: Path, stem: str) -> Path | None:
    """``folder/stem.<ext>`` for the first known media extension present (case-insensitive)."""
    if not folder.is_dir():
        return None
    for ext in MEDIA_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None
