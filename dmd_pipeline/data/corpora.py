"""One table of the emotional-speech corpora, their partial label sets and the speaker/corpus-out splits.

The voice-emotion model is trained on five corpora at once: RAVDESS (English, ``ravdess/labels.csv``) and
nEMO, EMOVO, TurEV-DB and URDU (Polish, Italian, Turkish, Urdu; ``speech/labels.csv``). Every label is in the
8-class RAVDESS vocabulary :data:`CLASSES`, but each corpus has only a subset of it (EMOVO has no calm,
TurEV-DB has four classes, ...). Two things follow, and this module owns both:

* **Partial label sets**: :meth:`CorpusTable.class_mask` gives, per clip, the classes its corpus has. A loss
  that normalises the softmax over those classes only (:func:`dmd_pipeline.training.partial_labels`) does
  not teach the model that "calm" is wrong for every EMOVO clip just because EMOVO never uses the word; a
  corpus's metrics are computed on its own classes.
* **Splits that never leak a speaker or a corpus**: the fixed speaker-independent ``split`` of each CSV
  (RAVDESS actors 17-18 valid, 19-21 test; the speech corpora's valid speakers), and leave-one-corpus-out
  folds (:meth:`CorpusTable.loco_folds`): train on four corpora, measure on the fifth, the best predictor of a
  user's own recordings. RAVDESS's test actors are never part of any training or validation fold.

No pandas: the table is a list of frozen :class:`Clip` rows plus numpy views of its columns.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmd_pipeline.errors import DataError

__all__ = ["CLASSES", "CORPORA", "Clip", "CorpusTable", "Fold", "read_corpora"]

#: The label vocabulary (RAVDESS's 8 classes, sorted: the class order of the voice models).
CLASSES: tuple[str, ...] = ("angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
#: The corpora :func:`read_corpora` reads, in table order.
CORPORA: tuple[str, ...] = ("ravdess", "nemo", "emovo", "turev", "urdu")
SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Clip:
    """One labelled clip: ``path`` is absolute; ``speaker`` is prefixed with its corpus (``ravdess:07``)."""

    path: Path
    label: str
    corpus: str
    language: str
    speaker: str
    split: str


@dataclass(frozen=True)
class Fold:
    """Row indices of one cross-validation fold and what it holds out."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    held_out: str


class CorpusTable:
    """The clips of several corpora with their label masks and splits (see the module docstring)."""

    def __init__(self, clips: Sequence[Clip]) -> None:
        self.clips: list[Clip] = list(clips)
        for c in self.clips:
            if c.label not in CLASSES:
                raise DataError(c.path, f"label {c.label!r} is not one of {', '.join(CLASSES)}")
            if c.split not in SPLITS:
                raise DataError(c.path, f"split {c.split!r} is not one of {', '.join(SPLITS)}")
        self.y = np.array([CLASSES.index(c.label) for c in self.clips], dtype=np.int64)
        self.corpus = np.array([c.corpus for c in self.clips])
        self.speaker = np.array([c.speaker for c in self.clips])
        self.split = np.array([c.split for c in self.clips])
        self.corpora: list[str] = [k for k in CORPORA if k in set(self.corpus)] + sorted(
            set(self.corpus) - set(CORPORA)
        )

    def __len__(self) -> int:
        return len(self.clips)

    def classes_of(self, corpus: str) -> list[str]:
        """The classes ``corpus`` uses (in :data:`CLASSES` order)."""
        present = set(self.y[self.corpus == corpus].tolist())
        if not present:
            raise KeyError(f"no clips of corpus {corpus!r}")
        return [k for i, k in enumerate(CLASSES) if i in present]

    def corpus_masks(self) -> dict[str, np.ndarray]:
        """Per corpus, a boolean vector over :data:`CLASSES`: True where the corpus has the class."""
        return {
            k: np.isin(np.arange(len(CLASSES)), [CLASSES.index(c) for c in self.classes_of(k)])
            for k in self.corpora
        }

    def class_mask(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, 8) bool: per clip (all, or ``rows``), the classes its corpus has."""
        masks = self.corpus_masks()
        idx = np.arange(len(self)) if rows is None else np.asarray(rows)
        return (
            np.stack([masks[k] for k in self.corpus[idx]]) if len(idx) else np.zeros((0, len(CLASSES)), bool)
        )

    def rows(self, split: str | None = None, corpus: str | None = None) -> np.ndarray:
        """Row indices of a split and/or a corpus."""
        keep = np.ones(len(self), bool)
        if split is not None:
            keep &= self.split == split
        if corpus is not None:
            keep &= self.corpus == corpus
        return np.flatnonzero(keep)

    def speaker_valid_fold(self) -> Fold:
        """The fixed speaker-independent split: train rows vs valid rows of every corpus (test never used)."""
        return Fold("speaker-valid", self.rows("train"), self.rows("valid"), held_out="valid speakers")

    def loco_folds(self, corpora: Sequence[str] | None = None) -> Iterator[Fold]:
        """Leave-one-corpus-out: per corpus, train on the train+valid rows of all others, measure on all of its
        non-test rows. RAVDESS's test actors stay out of both sides."""
        usable = self.split != "test"
        for k in corpora or self.corpora:
            out = self.corpus == k
            yield Fold(f"loco-{k}", np.flatnonzero(usable & ~out), np.flatnonzero(usable & out), held_out=k)

    def summary(self) -> list[dict]:
        """Per corpus: language, clips, speakers, classes and clips per split (for tables and logs)."""
        out = []
        for k in self.corpora:
            r = self.corpus == k
            out.append(
                {
                    "corpus": k,
                    "language": self.clips[int(np.flatnonzero(r)[0])].language,
                    "clips": int(r.sum()),
                    "speakers": len(set(self.speaker[r])),
                    "classes": self.classes_of(k),
                    **{s: int((r & (self.split == s)).sum()) for s in SPLITS},
                }
            )
        return out


def read_corpora(data_root: str | Path, corpora: Sequence[str] = CORPORA) -> CorpusTable:
    """The table of ``corpora`` under ``data_root`` (the layout of ``../shared/data``: ``ravdess/labels.csv``
    and ``speech/labels.csv``). A missing CSV or column raises :class:`~dmd_pipeline.errors.DataError` naming
    the file."""
    root = Path(data_root)
    unknown = set(corpora) - set(CORPORA)
    if unknown:
        raise DataError(root, f"unknown corpus {', '.join(sorted(unknown))}; known: {', '.join(CORPORA)}")
    clips: list[Clip] = []
    if "ravdess" in corpora:
        clips += _ravdess(root / "ravdess" / "labels.csv")
    others = [k for k in corpora if k != "ravdess"]
    if others:
        clips += [c for c in _speech(root / "speech" / "labels.csv") if c.corpus in others]
    return CorpusTable(clips)


def _rows(path: Path, need: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(path, "labels file not found")
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)}")
        return list(reader)


def _ravdess(path: Path) -> list[Clip]:
    rows = _rows(path, ("file", "label", "actor", "split"))
    return [
        Clip(
            path.parent / r["file"], r["label"], "ravdess", "en", f"ravdess:{int(r['actor']):02d}", r["split"]
        )
        for r in rows
    ]


def _speech(path: Path) -> list[Clip]:
    rows = _rows(path, ("file", "label", "corpus", "language", "speaker", "split"))
    return [
        Clip(path.parent / r["file"], r["label"], r["corpus"], r["language"], r["speaker"], r["split"])
        for r in rows
    ]
