"""Normalising encoder states per speaker, per utterance or by running statistics over a file.

Speaker normalisation (z-scoring every state dimension with the speaker's own mean and standard deviation)
removes much of what makes one voice differ from another and leaves how it changes; it is the single largest
gain on unseen speakers. All modes work on the per-clip statistics the feature store keeps (per layer mean
and std over frames, :mod:`dmd_pipeline.data.corpus_features`): a clip's frames ``h`` become
``(h - mu) / sd``, so its pooled mean becomes ``(mean - mu) / sd`` and its pooled std ``std / sd``.

Modes (:func:`normalise_stats`):

* ``none``: ``mu = 0, sd = 1``;
* ``global``: the training set's frame statistics (a fixed affine map: what a model does with no context);
* ``speaker``: the speaker's frame statistics over all of its clips (needs to know who speaks: an oracle for
  corpora, a diarised long file in use);
* ``utterance``: the clip's own statistics (pooled mean becomes 0: only the shape over time is left);
* ``running:K``: what the model can do on a user's file: the statistics of the speaker's clips seen so far
  (at most ``K`` clips, this one included, in a fixed random order), blended with the global statistics
  through a prior worth :data:`PRIOR_CLIPS` clips. With one clip and nothing before it, this is the
  single-clip case.

A trained model declares the normalisation of its input frames with a :class:`FrameNorm` (``audio_norm`` in
its ``config.json``), applied by the model object (:meth:`dmd_pipeline.model.LoadedModel.inputs`) exactly as
the training data adapter (:mod:`dmd_pipeline.data.store_inputs`) applied it: ``none``, or ``clip`` (the
``running:1`` case on the frames themselves: the statistics of the frames the model is about to read, one
clip or analysis window, blended with the training set's through a prior worth :data:`PRIOR_CLIPS` clips).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FRAME_NORMS",
    "PRIOR_CLIPS",
    "FrameNorm",
    "RunningStats",
    "frame_stats",
    "normalise_stats",
    "pooled_from_stats",
]

#: The modes a model may declare for its input frames (:class:`FrameNorm`).
FRAME_NORMS: tuple[str, ...] = ("none", "clip")

#: Weight (in clips) of the global statistics in the running estimate.
PRIOR_CLIPS = 2.0
_EPS = 1e-4


def frame_stats(
    mean: np.ndarray, std: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the frames of several clips from their per-clip ``mean``/``std`` (n, ...), each clip
    weighted by ``weights`` (its frame count; equal by default)."""
    w = np.ones(len(mean)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    shape = (-1,) + (1,) * (mean.ndim - 1)
    mu = (mean * w.reshape(shape)).sum(0)
    second = ((std**2 + mean**2) * w.reshape(shape)).sum(0)
    return mu, np.sqrt(np.maximum(second - mu**2, 0.0)) + _EPS


class RunningStats:
    """Frame statistics over the clips seen so far, starting from a prior (the global statistics)."""

    def __init__(
        self, prior_mean: np.ndarray, prior_std: np.ndarray, prior_clips: float = PRIOR_CLIPS
    ) -> None:
        self.n = float(prior_clips)
        self.s1 = prior_mean * self.n
        self.s2 = (prior_std**2 + prior_mean**2) * self.n

    def update(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Add one clip's statistics."""
        self.n += 1.0
        self.s1 = self.s1 + mean
        self.s2 = self.s2 + std**2 + mean**2

    def current(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sd) now."""
        mu = self.s1 / self.n
        return mu, np.sqrt(np.maximum(self.s2 / self.n - mu**2, 0.0)) + _EPS


def normalise_stats(
    mean: np.ndarray,
    std: np.ndarray,
    speaker: np.ndarray,
    mode: str,
    train_rows: np.ndarray,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip (mean, std) after normalising the frames in ``mode`` (see the module docstring).

    ``train_rows`` gives the clips whose statistics are the global ones (never a held-out clip's).
    """
    mean = mean.astype(np.float64)
    std = std.astype(np.float64)
    if mode == "none":
        return mean, std
    g_mu, g_sd = frame_stats(mean[train_rows], std[train_rows])
    if mode == "global":
        return (mean - g_mu) / g_sd, std / g_sd
    if mode == "utterance":
        sd = std + _EPS
        return np.zeros_like(mean), std / sd
    mu_out, sd_out = np.empty_like(mean), np.empty_like(std)
    if mode == "speaker":
        for s in np.unique(speaker):
            r = speaker == s
            mu_out[r], sd_out[r] = frame_stats(mean[r], std[r])
    elif mode.startswith("running:"):
        k = int(mode.split(":", 1)[1])
        rng = np.random.default_rng(seed)
        for s in np.unique(speaker):
            rows = rng.permutation(np.flatnonzero(speaker == s))
            for j, i in enumerate(rows):
                rs = RunningStats(g_mu, g_sd)
                for p in rows[max(0, j - k + 1) : j + 1]:
                    rs.update(mean[p], std[p])
                mu_out[i], sd_out[i] = rs.current()
    else:
        raise ValueError(f"unknown normalisation {mode!r}: none, global, speaker, utterance or running:K")
    return (mean - mu_out) / sd_out, std / sd_out


def pooled_from_stats(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(n, 2 * prod(rest)) mean+std pooled feature vectors."""
    return np.concatenate([mean.reshape(len(mean), -1), std.reshape(len(std), -1)], axis=1)


@dataclass(frozen=True)
class FrameNorm:
    """How a model's input frames ``(T, F)`` are normalised before they are fed (see the module docstring).

    ``mode`` ``none`` leaves them as they are; ``clip`` z-scores every column with the statistics of these
    frames blended with the prior ``mean``/``std`` (F,) (the training frames' statistics) worth
    ``prior_clips`` clips. The same object normalises training clips and a user's analysis windows.
    """

    mode: str = "none"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    prior_clips: float = PRIOR_CLIPS

    def __post_init__(self) -> None:
        if self.mode not in FRAME_NORMS:
            raise ValueError(f"unknown frame normalisation {self.mode!r}: one of {', '.join(FRAME_NORMS)}")
        if self.mode == "clip":
            if self.mean is None or self.std is None or np.shape(self.mean) != np.shape(self.std):
                raise ValueError("frame normalisation 'clip' needs a prior mean and std of the same shape")
            if not (np.all(np.isfinite(self.mean)) and np.all(np.asarray(self.std) > 0)):
                raise ValueError("frame normalisation 'clip': the prior must be finite with std > 0")

    @property
    def dim(self) -> int | None:
        """The number of columns the prior is for (None for ``none``)."""
        return None if self.mean is None else int(np.size(self.mean))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (T, F) normalised (float32; ``none``: unchanged). T = 0 stays empty."""
        x = np.asarray(values, dtype=np.float32)
        if self.mode == "none" or x.shape[0] == 0:
            return x
        if x.shape[-1] != self.dim:
            raise ValueError(f"frame normalisation is for {self.dim} columns, the frames have {x.shape[-1]}")
        x64 = x.astype(np.float64)
        rs = RunningStats(
            np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64), self.prior_clips
        )
        rs.update(x64.mean(0), x64.std(0))
        mu, sd = rs.current()
        return ((x64 - mu) / sd).astype(np.float32)

    def to_meta(self) -> dict[str, Any]:
        """The JSON block a model's config records (``audio_norm``)."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "clip":
            out["prior_clips"] = float(self.prior_clips)
            out["mean"] = [float(f"{v:.6g}") for v in np.asarray(self.mean).reshape(-1)]
            out["std"] = [float(f"{v:.6g}") for v in np.asarray(self.std).reshape(-1)]
        return out

    @classmethod
    def from_meta(cls, block: Mapping[str, Any] | None) -> FrameNorm:
        """The normalisation a config block declares (None or absent: ``none``); ValueError when malformed."""
        if not block:
            return cls()
        mode = str(block.get("mode", "none"))
        if mode == "none":
            return cls()
        mean, std = block.get("mean"), block.get("std")
        return cls(
            mode,
            None if mean is None else np.asarray(mean, np.float64),
            None if std is None else np.asarray(std, np.float64),
            float(block.get("prior_clips", PRIOR_CLIPS)),
        )
