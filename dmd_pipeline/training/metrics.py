"""Evaluation metrics, computed the way MMSA's ``metricsTop`` computes them (numpy only, no sklearn).

Regression (MOSI/MOSEI convention, labels in [-3, 3]):

* ``Has0_acc_2`` / ``Has0_F1_score``: binary accuracy / weighted F1 with ``label >= 0`` vs ``< 0``.
* ``Non0_acc_2`` / ``Non0_F1_score``: the same on the samples whose label is not exactly 0, with ``> 0``.
* ``Mult_acc_5`` / ``Mult_acc_7``: clip predictions and labels to [-2, 2] / [-3, 3], then ``np.round``
  (round half to even: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2) and compare.
* ``MAE``: mean absolute error; ``Corr``: Pearson correlation.

Differences from MMSA, on purpose: values are not rounded to 4 decimals (display code rounds), ``Corr`` is
0.0 instead of NaN when predictions or labels are constant (np.corrcoef is undefined there), and the
Non0 metrics are NaN when every label is 0 (MMSA crashes).

Classification: ``Acc_<N>`` and weighted ``F1_score_<N>``; with 3 classes (Negative=0, Neutral=1,
Positive=2, MMSA's order) also MMSA's derived 2-class metrics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

REGRESSION_KEYS = (
    "Has0_acc_2",
    "Has0_F1_score",
    "Non0_acc_2",
    "Non0_F1_score",
    "Mult_acc_5",
    "Mult_acc_7",
    "MAE",
    "Corr",
)


def _as_1d(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of equal entries (NaN for empty input)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return math.nan
    return float(np.mean(y_true == y_pred))


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Support-weighted mean of per-class F1, as ``sklearn.metrics.f1_score(average='weighted')``.

    Classes are the union of true and predicted labels; a class with no prediction (or no support) has
    precision (recall) 0, and F1 is 0 where precision + recall is 0. Weights are the true-class counts,
    so a class that only appears in the predictions lowers the score through the other classes' precision
    but carries no weight of its own.
    """
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.size == 0:
        return math.nan
    classes = np.union1d(y_true, y_pred)
    total = 0.0
    for c in classes:
        t, p = y_true == c, y_pred == c
        tp = float(np.sum(t & p))
        support, predicted = float(np.sum(t)), float(np.sum(p))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += f1 * support
    return total / y_true.size


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (or there are fewer than 2 samples)."""
    x, y = _as_1d(x), _as_1d(y)
    if x.size < 2:
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.dot(xc, xc)) * float(np.dot(yc, yc)))
    if denom == 0.0 or not math.isfinite(denom):
        return 0.0
    return float(np.dot(xc, yc) / denom)


def multiclass_acc(y_pred: np.ndarray, y_true: np.ndarray, clip: float) -> float:
    """MMSA's Mult_acc_N: clip both to [-clip, clip], round half to even, compare."""
    p = np.round(np.clip(_as_1d(y_pred), -clip, clip))
    t = np.round(np.clip(_as_1d(y_true), -clip, clip))
    return accuracy(t, p)


def regression_metrics(y_pred: Any, y_true: Any) -> dict[str, float]:
    """All MMSA regression metrics for predictions and labels (arrays or tensors of any shape, N values)."""
    pred, true = _as_1d(y_pred), _as_1d(y_true)
    if pred.shape != true.shape:
        raise ValueError(f"predictions {pred.shape} and labels {true.shape} differ in size")
    nz = true != 0
    return {
        "Has0_acc_2": accuracy(true >= 0, pred >= 0),
        "Has0_F1_score": weighted_f1(true >= 0, pred >= 0),
        "Non0_acc_2": accuracy(true[nz] > 0, pred[nz] > 0),
        "Non0_F1_score": weighted_f1(true[nz] > 0, pred[nz] > 0),
        "Mult_acc_5": multiclass_acc(pred, true, 2.0),
        "Mult_acc_7": multiclass_acc(pred, true, 3.0),
        "MAE": float(np.mean(np.abs(pred - true))) if pred.size else math.nan,
        "Corr": pearson(pred, true),
    }


def classification_metrics(logits: Any, y_true: Any) -> dict[str, float]:
    """Accuracy and weighted F1 from (N, C) scores and (N,) integer labels; with C > 3 also ``UAR`` and
    ``Macro_F1`` (see :func:`classification_report`).

    With C == 3 (MMSA's Negative/Neutral/Positive) also ``Has0_*`` (neutral counted as negative, the
    prediction is argmax over the negative/positive scores) and ``Non0_*`` (neutral samples dropped).
    """
    if hasattr(logits, "detach"):
        logits = logits.detach().cpu().numpy()
    scores = np.asarray(logits, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"classification scores must be (N, C), got {scores.shape}")
    true = _as_1d(y_true).astype(np.int64)
    n_cls = scores.shape[1]
    pred = scores.argmax(axis=1)
    out = {f"Acc_{n_cls}": accuracy(true, pred), f"F1_score_{n_cls}": weighted_f1(true, pred)}
    if n_cls > 3:  # emotion-style tasks: class-balanced metrics (UAR = mean per-class recall)
        rep = classification_report(true, pred, n_cls)
        out["UAR"] = rep["uar"]
        out["Macro_F1"] = rep["macro_f1"]
    if n_cls == 3:
        pred2 = (scores[:, 2] > scores[:, 0]).astype(np.int64)  # argmax over [neg, pos]; ties -> neg
        true2 = (true > 1).astype(np.int64)
        keep = true != 1
        out.update(
            {
                "Has0_acc_2": accuracy(true2, pred2),
                "Has0_F1_score": weighted_f1(true2, pred2),
                "Non0_acc_2": accuracy(true2[keep], pred2[keep]),
                "Non0_F1_score": weighted_f1(true2[keep], pred2[keep]),
            }
        )
    return out


def compute_metrics(outputs: Any, labels: Any, num_classes: int = 1) -> dict[str, float]:
    """Regression metrics when ``num_classes == 1``, classification metrics otherwise."""
    if num_classes <= 1:
        return regression_metrics(outputs, labels)
    return classification_metrics(outputs, labels)


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    true = _as_1d(y_true).astype(np.int64)
    pred = _as_1d(y_pred).astype(np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    ok = (true >= 0) & (true < n_classes) & (pred >= 0) & (pred < n_classes)
    np.add.at(cm, (true[ok], pred[ok]), 1)
    return cm


def classification_report(y_true: Any, y_pred: Any, n_classes: int) -> dict[str, Any]:
    """Accuracy, unweighted average recall (UAR: the mean of the per-class recalls, over classes present in
    ``y_true``), macro and weighted F1, per-class recall/precision/F1/support and the confusion matrix.

    The usual speech-emotion metrics: UAR and macro-F1 do not reward predicting the frequent classes.
    Fractions in [0, 1]; NaN-free (a class never predicted has precision 0).
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n_classes), where=denom > 0)
    present = support > 0
    n = int(support.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else math.nan,
        "uar": float(recall[present].mean()) if present.any() else math.nan,
        "macro_f1": float(f1[present].mean()) if present.any() else math.nan,
        "weighted_f1": float((f1 * support).sum() / n) if n else math.nan,
        "per_class": {
            "recall": recall.tolist(),
            "precision": precision.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
        },
        "confusion_matrix": cm.tolist(),
    }
