"""torch Datasets over MMSA-layout splits: items are ``(text, audio, vision, label)``.

``text`` is the float feature sequence ``(L, Dt)`` or, when ``config.use_bert``, the ``(3, L)`` token ids /
attention mask / segment ids (MMSA's ``text_bert``), as DMDSystem expects. The label is a ``(1,)`` float
(regression) or a scalar long class index (``num_classes > 1``), so the default collate gives ``(B, 1)`` /
``(B,)``. Shapes are checked against the model config up front (the DMD heads flatten time, so a length
mismatch would otherwise fail deep inside the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dmd_pipeline.config import DMDConfig
from dmd_pipeline.data.mmsa import load_mmsa_pickle, read_sidecar
from dmd_pipeline.errors import ConfigError, DataError
from dmd_pipeline.utils import sha256_file


class MMSADataset(Dataset):
    """In-memory dataset of one split; every array is converted to a torch tensor once."""

    def __init__(
        self,
        text: np.ndarray,
        audio: np.ndarray,
        vision: np.ndarray,
        labels: np.ndarray,
        ids: list[str] | None = None,
        raw_text: list[str] | None = None,
    ) -> None:
        n = len(labels)
        for name, arr in (("text", text), ("audio", audio), ("vision", vision)):
            if len(arr) != n:
                raise DataError(None, f"'{name}' has {len(arr)} rows but there are {n} labels")
        self.text = torch.as_tensor(text)
        self.audio = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        self.vision = torch.as_tensor(np.asarray(vision, dtype=np.float32))
        self.labels = torch.as_tensor(labels)
        self.ids = list(ids) if ids is not None else [str(i) for i in range(n)]
        self.raw_text = list(raw_text) if raw_text is not None else [""] * n
        self.augment: AudioAugment | None = None  # set on a training split only

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        audio = self.audio[index]
        if self.augment is not None:
            audio = self.augment(audio)
        return self.text[index], audio, self.vision[index], self.labels[index]


@dataclass
class AudioAugment:
    """Training-time augmentation of the audio sequence (T, D); NOT part of the official recipe.

    ``time_mask``: up to this fraction of the sequence is zeroed, in 2 random spans (SpecAugment-style
    time masking on feature frames); ``noise``: Gaussian noise of this standard deviation (in feature units)
    is added to the non-zero (real, not padded) frames. Draws come from torch's global generator, which
    the trainer seeds, so a run is reproducible.
    """

    time_mask: float = 0.0
    noise: float = 0.0

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        out = audio.clone()
        real = out.abs().sum(dim=-1) > 0
        n = int(real.sum())
        if self.time_mask > 0 and n > 4:
            for _ in range(2):
                width = int(torch.randint(0, max(1, int(self.time_mask * n / 2)) + 1, (1,)))
                if width:
                    start = int(torch.randint(0, max(1, n - width), (1,)))
                    out[start : start + width] = 0.0
        if self.noise > 0:
            out[real] += self.noise * torch.randn_like(out[real])
        return out


def _labels(labels: Any, num_classes: int, where: str) -> np.ndarray:
    arr = np.asarray(labels).reshape(-1)
    if num_classes > 1:
        if not np.all(np.isfinite(arr.astype(np.float64))) or np.any(arr != np.round(arr)):
            raise DataError(None, f"{where}: classification labels must be whole numbers")
        out = arr.astype(np.int64)
        if out.size and (out.min() < 0 or out.max() >= num_classes):
            raise ConfigError(
                f"{where}: class labels span {out.min()}..{out.max()} but the model has {num_classes} classes"
            )
        return out
    out = arr.astype(np.float32).reshape(-1, 1)
    if not np.all(np.isfinite(out)):
        raise DataError(None, f"{where}: regression labels contain NaN/inf")
    return out


def check_shapes(
    config: Any, text: np.ndarray, audio: np.ndarray, vision: np.ndarray, where: str = "data"
) -> None:
    """Raise ConfigError when the arrays do not fit ``config.feature_dims`` / ``config.seq_lens``."""
    problems = []
    dt, da, dv = (int(x) for x in config.feature_dims)
    lt, la, lv = (int(x) for x in config.seq_lens)
    if config.use_bert:
        if text.ndim != 3 or text.shape[1] != 3:
            problems.append(f"text_bert shape {tuple(text.shape)} is not (N, 3, L)")
        elif text.shape[2] != lt:
            problems.append(f"text length {text.shape[2]} != seq_lens[0] = {lt}")
    else:
        if text.ndim != 3 or text.shape[1:] != (lt, dt):
            problems.append(f"text shape {tuple(text.shape[1:])} != (seq_len {lt}, dim {dt})")
    if audio.ndim != 3 or audio.shape[1:] != (la, da):
        problems.append(f"audio shape {tuple(audio.shape[1:])} != (seq_len {la}, dim {da})")
    if vision.ndim != 3 or vision.shape[1:] != (lv, dv):
        problems.append(f"vision shape {tuple(vision.shape[1:])} != (seq_len {lv}, dim {dv})")
    if problems:
        raise ConfigError(
            f"{where}: features do not match the model config '{getattr(config, 'name', '?')}' "
            f"(feature_dims={tuple(config.feature_dims)}, seq_lens={tuple(config.seq_lens)}): "
            + "; ".join(problems)
        )


def dataset_from_arrays(
    config: Any,
    text: np.ndarray,
    audio: np.ndarray,
    vision: np.ndarray,
    labels: Any,
    ids: list[str] | None = None,
    raw_text: list[str] | None = None,
    where: str = "arrays",
) -> MMSADataset:
    """Build a dataset from plain arrays (e.g. text-only training from a label CSV with zero audio/vision).

    ``text`` is (N, L, Dt) float, or (N, 3, L) integer ids/mask/segments when ``config.use_bert``.
    """
    text = np.asarray(text)
    audio = np.asarray(audio, dtype=np.float32)
    vision = np.asarray(vision, dtype=np.float32)
    check_shapes(config, text, audio, vision, where)
    for name, arr in (("text", text), ("audio", audio), ("vision", vision)):
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DataError(
                None, f"{where}: {name} has NaN/inf values (load_mmsa_pickle / sanitize_split zero them)"
            )
    text = text.astype(np.int64, copy=False) if config.use_bert else text.astype(np.float32, copy=False)
    y = _labels(labels, int(config.num_classes), where)
    return MMSADataset(text, audio, vision, y, ids=ids, raw_text=raw_text)


def dataset_from_split(config: Any, split: dict[str, Any], name: str = "split") -> MMSADataset:
    """Dataset over one MMSA split; ``text_bert`` vs ``text`` by ``config.use_bert``; labels by num_classes."""
    text_key = "text_bert" if config.use_bert else "text"
    if text_key not in split:
        raise DataError(
            None, f"split '{name}' has no '{text_key}' (needed because use_bert={config.use_bert})"
        )
    if config.num_classes > 1:
        if "classification_labels" not in split:
            raise DataError(
                None, f"split '{name}' has no 'classification_labels' (num_classes={config.num_classes})"
            )
        labels = split["classification_labels"]
    else:
        labels = split["regression_labels"]
    ids = [str(x) for x in split["id"]] if "id" in split else None
    raw = [str(x) for x in split["raw_text"]] if "raw_text" in split else None
    return dataset_from_arrays(
        config, split[text_key], split["audio"], split["vision"], labels, ids=ids, raw_text=raw, where=name
    )


def infer_num_classes(splits: dict[str, dict[str, Any]]) -> int:
    """Number of classes from ``classification_labels`` (max label + 1 over all splits)."""
    values = [np.asarray(s["classification_labels"]) for s in splits.values() if "classification_labels" in s]
    if not values:
        raise DataError(
            None, "no 'classification_labels' in the data, so the number of classes cannot be inferred"
        )
    return int(max(int(np.max(v)) for v in values if v.size) + 1)


@dataclass
class DataSource:
    """Splits loaded from a training/evaluation data file plus where they came from (for checkpoints)."""

    splits: dict[str, dict[str, Any]]
    path: str
    sha256: str
    kind: str  # "mmsa" (an MMSA feature pickle)
    sidecar: dict | None = None

    def provenance(self) -> dict[str, Any]:
        """What a checkpoint records about its training data."""
        return {"path": self.path, "sha256": self.sha256, "kind": self.kind}


def load_data_source(path: str | Path) -> DataSource:
    """Load the splits of a data file (today: an MMSA ``.pkl``); one entry point for train and evaluate."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "data file not found")
    if p.suffix.lower() not in (".pkl", ".pickle"):
        raise DataError(p, "unsupported data file type (expected an MMSA feature pickle, .pkl)")
    splits = load_mmsa_pickle(p)
    return DataSource(splits, str(p.resolve()), sha256_file(p), "mmsa", read_sidecar(p))


def data_shapes(split: dict[str, Any], use_bert: bool) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(feature_dims, seq_lens) of a split; with use_bert the text dim is left 0 (the encoder decides)."""
    a, v = np.asarray(split["audio"]), np.asarray(split["vision"])
    if use_bert:
        tb = np.asarray(split["text_bert"])
        return (0, int(a.shape[2]), int(v.shape[2])), (int(tb.shape[2]), int(a.shape[1]), int(v.shape[1]))
    t = np.asarray(split["text"])
    return (int(t.shape[2]), int(a.shape[2]), int(v.shape[2])), (
        int(t.shape[1]),
        int(a.shape[1]),
        int(v.shape[1]),
    )


def fit_config_to_data(config: Any, splits: dict[str, dict[str, Any]]) -> tuple[Any, list[str]]:
    """Return a copy of ``config`` whose feature_dims/seq_lens match the data, and notes on what changed.

    The text dim is kept when ``use_bert`` (it is the encoder's hidden size, not a data shape).
    """
    train = splits["train"]
    if config.use_bert and "text_bert" not in train:
        raise DataError(None, "use_bert needs 'text_bert' in the data, but the train split has none")
    dims, lens = data_shapes(train, config.use_bert)
    if config.use_bert:
        dims = (int(config.feature_dims[0]), dims[1], dims[2])
    notes = []
    if tuple(dims) != tuple(config.feature_dims):
        notes.append(f"feature_dims {tuple(config.feature_dims)} -> {dims} (taken from the data)")
    if tuple(lens) != tuple(config.seq_lens):
        notes.append(f"seq_lens {tuple(config.seq_lens)} -> {lens} (taken from the data)")
    d = config.to_dict()
    d["feature_dims"], d["seq_lens"] = list(dims), list(lens)
    return DMDConfig.from_dict(d), notes
