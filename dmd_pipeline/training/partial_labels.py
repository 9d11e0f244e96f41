"""Training and scoring with partial label sets: each corpus uses only some of the classes.

A clip of a corpus without "calm" is not evidence against calm, it is silence about it. The loss therefore
normalises the softmax over the classes the clip's corpus has (:func:`masked_cross_entropy`: the logits of
the other classes are set to -inf before log-softmax), and a corpus is scored on its own classes
(:func:`per_corpus_reports`). At prediction time the model still answers over all classes.

Class balance: :func:`balanced_sample_weights` gives every (corpus, class) cell the same total weight within
its corpus, and each corpus a total weight proportional to ``n_corpus ** corpus_power`` (0: every corpus
counts the same; 1: by size), so nEMO's 4,481 clips do not drown URDU's 400.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmd_pipeline.training.metrics import classification_report

__all__ = ["balanced_sample_weights", "masked_cross_entropy", "masked_logits", "per_corpus_reports"]

_NEG = -1e4  # finite "minus infinity": float16-safe and NaN-free when a row's mask is all False


def masked_logits(logits: Any, mask: Any) -> Any:
    """``logits`` with the classes outside ``mask`` (same shape, bool) pushed to a large negative value.

    Works on torch tensors and numpy arrays alike.
    """
    if hasattr(logits, "masked_fill"):
        return logits.masked_fill(~mask, _NEG)
    return np.where(np.asarray(mask, bool), logits, _NEG)


def masked_cross_entropy(logits: Any, target: Any, mask: Any, weight: Any = None) -> Any:
    """Mean (or ``weight``-weighted mean) cross-entropy with the softmax over each row's allowed classes.

    ``logits`` (n, C) float tensor, ``target`` (n,) long, ``mask`` (n, C) bool (the target must be allowed),
    ``weight`` (n,) per-sample weights or None.
    """
    import torch

    if not bool(mask.gather(1, target[:, None]).all()):
        raise ValueError("a target class is outside its row's mask")
    logp = torch.log_softmax(masked_logits(logits, mask), dim=1)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    if weight is None:
        return nll.mean()
    return (nll * weight).sum() / weight.sum().clamp_min(1e-12)


def balanced_sample_weights(y: np.ndarray, corpus: np.ndarray, corpus_power: float = 0.5) -> np.ndarray:
    """Per-sample weights, mean 1: classes balanced within each corpus, corpora weighted by size**power."""
    y, corpus = np.asarray(y), np.asarray(corpus)
    w = np.zeros(len(y), np.float64)
    for k in np.unique(corpus):
        rk = corpus == k
        classes = np.unique(y[rk])
        total = rk.sum() ** corpus_power
        for c in classes:
            cell = rk & (y == c)
            w[cell] = total / len(classes) / cell.sum()
    return (w * len(w) / w.sum()).astype(np.float32) if len(w) else w.astype(np.float32)


def per_corpus_reports(
    y: np.ndarray,
    scores: np.ndarray,
    corpus: np.ndarray,
    masks: dict[str, np.ndarray],
    restrict: bool = False,
) -> dict[str, dict]:
    """Per corpus, :func:`classification_report` over its own classes.

    ``scores`` (n, C) logits or probabilities over all classes. ``restrict=False`` (the honest default: what a
    user gets) takes the argmax over all classes, so predicting a class the corpus lacks is an error;
    ``restrict=True`` takes it over the corpus's classes only. UAR averages the recalls of the classes present.
    """
    out = {}
    for k, m in masks.items():
        r = corpus == k
        if not r.any():
            continue
        s = scores[r]
        pred = np.argmax(masked_logits(s, np.broadcast_to(m, s.shape)) if restrict else s, axis=1)
        out[k] = classification_report(y[r], pred, scores.shape[1])
    return out
