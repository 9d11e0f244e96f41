"""Scoring utterances with one model: each utterance's model input (:meth:`LoadedModel.inputs`), one batched
forward pass (:meth:`LoadedModel.forward`), predictions from the logits, windows of a short-clip model averaged back
onto their utterance (:func:`score_model`) and the duration-weighted mean over a file
(:func:`weighted_prediction`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dmd_pipeline.analysis.registry import LoadedModel
from dmd_pipeline.analysis.result import (
    EDGE_NAMES,
    GraphEdges,
    Prediction,
    SegmentResult,
    WindowResult,
    clip_score,
    label2,
    label7,
    label7_index,
)
from dmd_pipeline.analysis.utterances import analysis_windows, input_span, window_segment


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _prediction(model: LoadedModel, logit: np.ndarray) -> Prediction:
    if model.task == "regression":
        return Prediction.from_score(float(np.nan_to_num(logit[0])))
    probs = _softmax(np.nan_to_num(logit.astype(np.float64)))
    return Prediction.from_probabilities(dict(zip(model.class_names or [], probs.tolist(), strict=True)))


def weighted_prediction(
    model: LoadedModel, preds: Sequence[Prediction], durations: Sequence[float]
) -> Prediction:
    """Duration-weighted mean of scores (regression) or probabilities (classification); empty when none of
    ``preds`` holds a prediction."""
    keep = [(p, d) for p, d in zip(preds, durations, strict=True) if p.score is not None or p.probabilities]
    if not keep:
        return Prediction()
    w = np.array([max(float(d), 1e-3) for _, d in keep], dtype=np.float64)
    w = w / w.sum()
    if model.task == "regression":
        score = clip_score(float(np.dot(w, [p.score for p, _ in keep])))
        raw = float(np.dot(w, [p.raw_score for p, _ in keep]))
        return Prediction(score, raw, label7(score), label7_index(score), label2(score))
    names = model.class_names or []
    mat = np.array([[p.probabilities[n] for n in names] for p, _ in keep])  # type: ignore[index]
    return Prediction.from_probabilities(dict(zip(names, (w @ mat).tolist(), strict=True)))


def aggregate(model: LoadedModel, segs: Sequence[SegmentResult]) -> Prediction:
    """Duration-weighted mean of the segment scores (regression) or probabilities (classification)."""
    return weighted_prediction(model, [s.prediction for s in segs], [s.duration for s in segs])


@dataclass
class ModelScores:
    """One model's scores over a clip's segments (what :func:`score_model` returns)."""

    segments: list[Prediction]  # one per segment
    edges: list[GraphEdges | None]  # one per segment (duration-weighted mean over its windows)
    windows: list[WindowResult]  # only for a windowed (short-clip) model
    seconds_features: float = 0.0
    seconds_model: float = 0.0


def _edges(homo: np.ndarray, hetero: np.ndarray) -> GraphEdges:
    return GraphEdges(
        homo={e: float(v) for e, v in zip(EDGE_NAMES, np.nan_to_num(homo), strict=True)},
        hetero={e: float(v) for e, v in zip(EDGE_NAMES, np.nan_to_num(hetero), strict=True)},
    )


def score_model(
    model: LoadedModel,
    bundle: Any,
    segs: Sequence[Any],
    ext: Any,
    present: Sequence[str],
    columns: dict[str, list[str] | None] | None = None,
    batch_size: int = 16,
    predict: bool = True,
) -> ModelScores:
    """Score every segment with one model; a short-clip model (``analysis_window_s``) scores windows of long
    segments and each segment gets their duration-weighted mean. ``predict=False`` (none of the model's
    modalities present) keeps the edges but gives empty predictions."""
    window = model.analysis_window_s
    duration = float((bundle.metadata.get("source") or {}).get("duration") or 0.0)
    spans: list[tuple[int, Any]] = []  # (segment index, the window as scored: its own span and words)
    fed: list[Any] = []  # what the model sees for each: the window widened by input_span
    for i, s in enumerate(segs):
        wins = analysis_windows(float(s.start), float(s.end), window)
        for k, (a, b) in enumerate(wins):
            core = s if len(wins) == 1 else window_segment(s, a, b, k == len(wins) - 1)
            spans.append((i, core))
            wide = input_span(float(core.start), float(core.end), window, duration)
            fed.append(replace(core, start=wide[0], end=wide[1]))  # same words, wider span
    t0 = time.perf_counter()
    inputs = [model.inputs(bundle, sp, ext=ext, present=present, columns=columns) for sp in fed]
    t1 = time.perf_counter()
    out = model.forward(inputs, batch_size)
    t2 = time.perf_counter()
    preds = [_prediction(model, out["logits"][k]) if predict else Prediction() for k in range(len(spans))]
    seg_preds: list[Prediction] = []
    seg_edges: list[GraphEdges | None] = []
    by_segment: dict[int, list[int]] = {}
    for k, (j, _) in enumerate(spans):
        by_segment.setdefault(j, []).append(k)
    for i in range(len(segs)):
        ks = by_segment[i]
        durs = [max(float(spans[k][1].end - spans[k][1].start), 1e-3) for k in ks]
        if len(ks) == 1:
            seg_preds.append(preds[ks[0]])
        else:
            seg_preds.append(weighted_prediction(model, [preds[k] for k in ks], durs))
        w = np.asarray(durs, np.float64) / sum(durs)
        seg_edges.append(_edges(w @ out["edges_homo"][ks], w @ out["edges_hetero"][ks]))
    windows = []
    if window:  # every scored span of a short-clip model (a segment that fits 1.5 windows is one window)
        windows = [
            WindowResult(round(float(sp.start), 4), round(float(sp.end), 4), j, preds[k])
            for k, (j, sp) in enumerate(spans)
        ]
    return ModelScores(seg_preds, seg_edges, windows, t1 - t0, t2 - t1)
