"""DMD model inputs straight from a corpus feature store: training a voice model without re-extracting.

A feature store (:mod:`dmd_pipeline.data.corpus_features`) keeps every clip's encoder states time-pooled
(``frames``: (L, T', D) float16, e.g. Whisper base's 7 states at 10 Hz). An audio-only DMD model with
``audio_layers = L`` reads the same states as the ``whisper-base-layers-s5`` acoustic setting gives them to
``dmd analyze``: (T', L * D) layer-major columns. This module turns a store row into exactly that model input,
as :meth:`dmd_pipeline.model.LoadedModel.inputs` builds it for a span of a user's file:

1. the frames, layer-major (:func:`layer_major`);
2. normalised by the model's declared :class:`~dmd_pipeline.data.feature_norm.FrameNorm`;
3. fitted to the model's audio length by :func:`~dmd_pipeline.features.resample_to_length` (zero-padded
   when shorter, average-pooled into equal bins when longer);
4. text and vision as zeros of the model's shapes (an audio-only model).

:func:`join_stores` puts the rows of several stores (each over a subset of the corpora, e.g. one extracted
later) into one table's order. :class:`StoreDataset` serves (text, audio, vision, label, mask, weight) rows to
a torch ``DataLoader``, building each row when asked (the float32 inputs of all clips would be GBs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dmd_pipeline.data.corpora import CorpusTable
from dmd_pipeline.data.corpus_features import ClipFeatures, load_store
from dmd_pipeline.data.feature_norm import FrameNorm, frame_stats
from dmd_pipeline.features import resample_to_length

if TYPE_CHECKING:
    import torch

__all__ = ["StoreDataset", "audio_input", "join_stores", "layer_major", "prior_stats"]


def layer_major(frames: np.ndarray) -> np.ndarray:
    """(L, T, D) stored states -> (T, L * D) float32, column ``D * l + i`` = dimension i of state l (the
    column order of the ``whisper-base-layers*`` settings)."""
    f = np.asarray(frames)
    if f.ndim != 3:
        raise ValueError(f"expected (L, T, D) frames, got shape {f.shape}")
    n_l, n_t, d = f.shape
    return np.ascontiguousarray(f.transpose(1, 0, 2).reshape(n_t, n_l * d), dtype=np.float32)


def audio_input(frames: np.ndarray, norm: FrameNorm, length: int) -> np.ndarray:
    """One clip's audio model input (``length``, L * D) from its stored (L, T, D) frames (steps 1-3 of the
    module docstring)."""
    x = norm.apply(layer_major(frames))
    out, _ = resample_to_length(_Frames(x), int(length))
    return out


class _Frames:
    """The one attribute :func:`resample_to_length` reads of a FrameFeatures."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


def prior_stats(feats: ClipFeatures, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the layer-major frames of the clips ``rows`` (each frame weighted equally): the prior of
    a ``clip`` :class:`FrameNorm`. Computed from the stored (pooled) frames, the rate the model reads."""
    means, stds, counts = [], [], []
    for i in rows:
        x = layer_major(feats.frames[i]).astype(np.float64)
        means.append(x.mean(0))
        stds.append(x.std(0))
        counts.append(len(x))
    return frame_stats(np.stack(means), np.stack(stds), np.asarray(counts, np.float64))


def join_stores(
    table: CorpusTable, parts: Sequence[tuple[str | Path, Sequence[Path]]], frames: bool = True
) -> ClipFeatures:
    """One :class:`ClipFeatures` in ``table``'s row order from several stores, each given with the ordered
    file list it was extracted from (``frames=False``: the pooled statistics only). Every table row must be
    in exactly one store (ValueError naming the first missing file otherwise)."""
    want_frames = frames
    index = {str(c.path): i for i, c in enumerate(table.clips)}
    n = len(table)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    clips: list[np.ndarray | None] = [None] * n
    n_frames = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    seen = np.zeros(n, bool)
    for folder, files in parts:
        f = load_store(folder, frames=want_frames)
        if len(f.ok) != len(files):
            raise ValueError(f"{folder}: the store has {len(f.ok)} clips, its file list {len(files)}")
        if mean is None:
            mean = np.zeros((n, *f.mean.shape[1:]), np.float32)
            std = np.zeros_like(mean)
        assert std is not None
        for j, path in enumerate(files):
            i = index.get(str(path))
            if i is None:
                continue
            if seen[i]:
                raise ValueError(f"{path}: in more than one store")
            seen[i] = True
            mean[i], std[i] = f.mean[j], f.std[j]
            if want_frames:
                clips[i] = f.frames[j]
            n_frames[i], ok[i] = f.n_frames[j], f.ok[j]
    if not seen.all():
        raise ValueError(f"{table.clips[int(np.flatnonzero(~seen)[0])].path}: in none of the stores")
    assert mean is not None and std is not None
    return ClipFeatures(mean, std, [x for x in clips if x is not None], n_frames, ok)


class StoreDataset:
    """Rows of a store as audio-only DMD model inputs, with the partial-label mask and sample weight of each.

    ``__getitem__(k)`` returns float32 ``text`` (lt, dt) zeros, ``audio`` (la, L * D), ``vision`` (lv, dv) zeros,
    the label (int64), the class mask (bool, the classes the clip's corpus has) and the sample weight.
    """

    def __init__(
        self,
        feats: ClipFeatures,
        rows: np.ndarray,
        labels: np.ndarray,
        masks: np.ndarray,
        weights: np.ndarray | None,
        norm: FrameNorm,
        seq_lens: tuple[int, int, int],
        dims: tuple[int, int, int],
    ) -> None:
        self.feats, self.rows = feats, np.asarray(rows)
        self.labels, self.masks = np.asarray(labels), np.asarray(masks, bool)
        self.weights = (
            np.ones(len(self.rows), np.float32) if weights is None else np.asarray(weights, np.float32)
        )
        if not (len(self.labels) == len(self.masks) == len(self.weights) == len(self.rows)):
            raise ValueError("rows, labels, masks and weights must have one entry per row")
        self.norm, self.seq_lens, self.dims = norm, seq_lens, dims
        #: training-time augmentation of the audio input (a training set only; see ``AudioAugment``)
        self.augment: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[np.ndarray, ...]:
        lt, la, lv = self.seq_lens
        dt, da, dv = self.dims
        audio = audio_input(self.feats.frames[int(self.rows[k])], self.norm, la)
        if audio.shape[1] != da:
            raise ValueError(f"the store's frames have {audio.shape[1]} columns, the model takes {da}")
        if self.augment is not None:
            import torch

            audio = self.augment(torch.from_numpy(audio)).numpy()
        return (
            np.zeros((lt, dt), np.float32),
            audio,
            np.zeros((lv, dv), np.float32),
            np.int64(self.labels[k]),
            self.masks[k],
            np.float32(self.weights[k]),
        )
