"""Calibrated class probabilities: temperature scaling fitted on validation data, and the expected calibration
error (ECE) that measures how far a classifier's confidence is from its accuracy.

A trained classifier's softmax is usually over-confident (its top probability is higher than how often it is
right). Temperature scaling (Guo et al., 2017) divides the logits by one number ``T > 0`` before the softmax:
``T > 1`` softens the distribution, ``T < 1`` sharpens it, and the argmax, so accuracy, UAR and F1, never
changes. ``T`` is fitted by minimising the negative log-likelihood (NLL) of held-out labels. The NLL is
convex in ``1/T``, so it is unimodal in ``log T`` and a bounded golden-section search over ``log T`` finds
its minimum (:func:`fit_temperature`); no optimiser library is involved.

A calibrated channel's probabilities are what a later fusion multiplies, so the temperature travels with the
model: a ``calibration`` block in its ``config.json`` (:meth:`Calibration.to_meta`), validated when the model
is read (:meth:`Calibration.from_meta`) and applied by :class:`dmd_pipeline.model.LoadedModel` wherever it
produces logits or probabilities::

    "calibration": {"method": "temperature", "temperature": 1.84,
                    "fitted_on": {"split": "valid", "n": 120, ...},
                    "n_bins": 15, "ece_before": 0.16, "ece_after": 0.05, "nll_before": 1.3, "nll_after": 1.1}

ECE (:func:`expected_calibration_error`) uses equal-width bins of the top-class probability (15 by default,
as in Guo et al.): the sample-weighted mean of ``|accuracy - mean confidence|`` over the bins.
:func:`reliability_bins` gives the per-bin figures a reliability diagram plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmd_pipeline.errors import ConfigError, ModelConfigError

#: Bins of the ECE and of the reliability diagram (Guo et al., 2017).
ECE_BINS = 15
#: The temperature search range; a stored temperature must lie in it.
T_MIN, T_MAX = 0.05, 20.0
METHOD = "temperature"
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (non-finite logits become finite first)."""
    z = np.nan_to_num(np.asarray(logits, dtype=np.float64))
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """``log p`` (clipped away from 0): probabilities a model gives directly (e.g. the face model's mirrored
    average) as the logits a temperature divides, ``softmax(log p / T)``; ``softmax(log p) = p``."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.nan_to_num(np.asarray(logits, dtype=np.float64))
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ConfigError(f"calibration needs (N, C >= 2) class logits, got shape {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ConfigError(
            f"calibration needs one label per row: {z.shape[0]} rows, labels of shape {y.shape}"
        )
    if len(y) == 0:
        raise ConfigError("calibration needs at least one labelled example")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ConfigError(f"calibration labels must be class indices in 0..{z.shape[1] - 1}")
    return z, y


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z, y = _check(logits, labels)
    s = z / float(temperature)
    m = s.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
    return float(np.mean(lse - s[np.arange(len(y)), y]))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (T_MIN, T_MAX), tol: float = 1e-5
) -> float:
    """The temperature in ``bounds`` that minimises :func:`nll` on (``logits``, ``labels``).

    Golden-section search over ``log T`` (the NLL is convex in ``1/T``, hence unimodal in ``log T``) to a
    bracket narrower than ``tol`` in ``log T``; the minimum may sit on a bound (e.g. a perfectly separated
    set wants ``T -> 0``).
    """
    z, y = _check(logits, labels)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    if not lo < hi:
        raise ConfigError(f"temperature bounds must be increasing and positive, got {bounds}")

    def f(log_t: float) -> float:
        return nll(z, y, math.exp(log_t))

    a, b = lo, hi
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = f(d)
    best = min((f(lo), lo), (f(hi), hi), (f(0.5 * (a + b)), 0.5 * (a + b)))
    return float(math.exp(best[1]))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per equal-width bin of the top-class probability: ``lo``, ``hi``, ``n`` (examples in the bin),
    ``confidence`` (their mean top probability) and ``accuracy`` (how often the top class is the label);
    the last two are None for an empty bin. Bin ``k`` holds confidences in ``(k/n, (k+1)/n]`` (the first
    also 0)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ConfigError(
            f"reliability bins need (N, C) probabilities and N labels, got {p.shape}, {y.shape}"
        )
    if n_bins < 1:
        raise ConfigError(f"n_bins must be at least 1, got {n_bins}")
    conf = p.max(axis=1) if len(p) else np.zeros(0)
    right = (p.argmax(axis=1) == y) if len(p) else np.zeros(0, bool)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    out = []
    for k in range(n_bins):
        mask = idx == k
        n = int(mask.sum())
        out.append(
            {
                "lo": k / n_bins,
                "hi": (k + 1) / n_bins,
                "n": n,
                "confidence": float(conf[mask].mean()) if n else None,
                "accuracy": float(right[mask].mean()) if n else None,
            }
        )
    return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE: ``sum_k n_k / N * |accuracy_k - confidence_k|`` over :func:`reliability_bins` (0: calibrated)."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(b["n"] for b in bins)
    if total == 0:
        raise ConfigError("ECE needs at least one example")
    return float(sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"]))


@dataclass(frozen=True)
class Calibration:
    """A classifier's temperature and what is known about its fit (see the module docstring)."""

    temperature: float = 1.0
    #: Where and how it was fitted, and the ECE/NLL before and after on that data (recorded as they are).
    details: dict[str, Any] = field(default_factory=dict)
    method: str = METHOD

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The calibrated logits: ``logits / T`` (the argmax is unchanged)."""
        return np.asarray(logits) / np.asarray(self.temperature, dtype=np.asarray(logits).dtype)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities of raw logits: ``softmax(logits / T)``."""
        return softmax(self.apply(logits))

    def to_meta(self) -> dict[str, Any]:
        """The ``calibration`` block of a model's ``config.json``."""
        return {**self.details, "method": self.method, "temperature": float(self.temperature)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], where: Any, classifier: bool = True) -> Calibration | None:
        """The ``calibration`` block of a model's meta (None when it has none), validated: a mapping with
        ``method`` ``"temperature"`` and a finite ``temperature`` in [:data:`T_MIN`, :data:`T_MAX`], on a
        classifier only. ModelConfigError names ``where`` (the config.json) and the problem."""
        block = meta.get("calibration")
        if block is None:
            return None
        if not isinstance(block, Mapping):
            raise ModelConfigError(f"{where}: 'calibration' must be an object, got {type(block).__name__}")
        if not classifier:
            raise ModelConfigError(
                f"{where}: a 'calibration' block on a regression model (only class probabilities are calibrated)"
            )
        method = block.get("method", METHOD)
        if method != METHOD:
            raise ModelConfigError(
                f"{where}: calibration.method must be {METHOD!r}, got {str(method)[:40]!r}"
            )
        t = block.get("temperature")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(float(t)):
            raise ModelConfigError(
                f"{where}: calibration.temperature must be a finite number, got {str(t)[:40]!r}"
            )
        if not T_MIN <= float(t) <= T_MAX:
            raise ModelConfigError(
                f"{where}: calibration.temperature {float(t)} is outside [{T_MIN}, {T_MAX}] (a corrupt or "
                "hand-edited config.json)"
            )
        details = {k: v for k, v in block.items() if k not in ("method", "temperature")}
        return cls(float(t), details, METHOD)


def check_model_meta(meta: Mapping[str, Any], where: Any) -> Calibration | None:
    """Validate the ``calibration`` block of a DMD model's ``config.json`` (see :meth:`Calibration.from_meta`)
    when the file is read, before anything is built; a classifier is a model whose ``task`` is
    ``classification``, or which has no ``task`` and more than one class."""
    config = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
    n_classes = config.get("num_classes", 1)
    task = meta.get("task") or (
        "classification" if isinstance(n_classes, int) and n_classes > 1 else "regression"
    )
    return Calibration.from_meta(meta, where, classifier=task == "classification")


def calibration_figures(
    logits: np.ndarray, labels: np.ndarray, calibration: Calibration | None, n_bins: int = ECE_BINS
) -> dict[str, Any]:
    """ECE and NLL of raw ``logits`` before and after ``calibration`` (``*_after`` None without one), with
    the reliability bins of both: what ``dmd evaluate`` reports and ``dmd train`` records."""
    z, y = _check(logits, labels)
    before = softmax(z)
    out: dict[str, Any] = {
        "n_bins": n_bins,
        "temperature": None if calibration is None else calibration.temperature,
        "n": len(y),
        "ece_before": expected_calibration_error(before, y, n_bins),
        "ece_after": None,
        "nll_before": nll(z, y),
        "nll_after": None,
        "mean_confidence_before": float(before.max(axis=1).mean()),
        "mean_confidence_after": None,
        "accuracy": float((before.argmax(axis=1) == y).mean()),
        "bins_before": reliability_bins(before, y, n_bins),
        "bins_after": None,
    }
    if calibration is not None:
        after = calibration.probabilities(z)
        out.update(
            ece_after=expected_calibration_error(after, y, n_bins),
            nll_after=nll(z, y, calibration.temperature),
            mean_confidence_after=float(after.max(axis=1).mean()),
            bins_after=reliability_bins(after, y, n_bins),
        )
    return out


def fit_calibration(
    logits: np.ndarray, labels: np.ndarray, fitted_on: Mapping[str, Any] | None = None, n_bins: int = ECE_BINS
) -> Calibration:
    """Fit a temperature on held-out (``logits``, ``labels``) and record where (``fitted_on``: e.g. split,
    data file) with the ECE/NLL before and after on that data."""
    t = round(fit_temperature(logits, labels), 6)
    cal = Calibration(t)
    fig = calibration_figures(logits, labels, cal, n_bins)
    details = {
        "fitted_on": {**dict(fitted_on or {}), "n": fig["n"]},
        "n_bins": n_bins,
        **{k: _round(fig[k]) for k in ("ece_before", "ece_after", "nll_before", "nll_after")},
    }
    return Calibration(t, details)


def _round(v: float) -> float:
    return float(f"{v:.6g}")
