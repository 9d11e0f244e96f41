"""A result's fused answer: the channels of each span picked from the result, fused by
:func:`dmd_pipeline.fusion.fuse`, and the headline that leads with it.

The channels (any subset may be present):

* **face**: the span's ``face`` (:class:`~dmd_pipeline.analysis.result.FaceChannel`, schema 1.3; a dict of
  the same fields is read too): its ``probabilities`` and ``visible_fraction`` (the weight);
* **voice**: the first classification model that listens to audio only (:func:`voice_run`): its
  ``probabilities`` for the span (weight 1; none when it says n/a: no speech, no audio);
* **words**: the first regression (sentiment) model with a score (:func:`words_run`): its ``score``, as
  valence evidence weighted by the model's own sign accuracy on its validation split.

A segment's fused answer comes from the segment's channels, the file's from the file's (the face's file-level
summary, each model's ``overall``), the same way each channel aggregates itself.

The headline leads with the fused answer and its reasons, then each channel (the 1.2 headline)::

    happy 0.74 — face 0.6 · voice 0.3 · words 0.1 | face: happy 0.81 · voice: happy 0.56 · words: positive +1.20
    sad 0.48, uncertain (conflict: face happy, voice sad) — face 0.3 · voice 0.6 · words 0.1 | ...

A result with no face or voice to name an emotion from keeps the 1.2 headline.

Where the primary model is a multimodal DMD model (it was fed two or more modalities), the file's fused
answer also carries ``model_account`` (:func:`model_account`): the model's own account of which modality
informed which, its strongest HomoGD and HeteroGD graph edges (teacher -> student, mean over the segments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from dmd_pipeline.analysis.result import AnalysisResult, ModelRun, Prediction
from dmd_pipeline.fusion import CHANNELS, fuse

__all__ = ["fuse_result", "fused_phrase", "model_account", "voice_run", "words_run"]

#: The channel word of each edge end (``V->L``: face -> words).
_EDGE_WORDS = {"L": "words", "A": "voice", "V": "face"}
_EDGE_MODALITY = {"L": "text", "A": "audio", "V": "vision"}


def voice_run(runs: Sequence[ModelRun]) -> ModelRun | None:
    """The voice channel's model: the first classifier whose only modality is audio (None without one)."""
    return next((r for r in runs if r.task != "regression" and list(r.info.modalities) == ["audio"]), None)


def words_run(runs: Sequence[ModelRun]) -> ModelRun | None:
    """The words channel's model: the first sentiment (regression) model that scored the file."""
    return next((r for r in runs if r.task == "regression" and r.has_prediction), None)


def _face(obj: Any) -> tuple[Mapping[str, float] | None, float]:
    """(probabilities, visible fraction) of a span's ``face`` (a FaceChannel or a dict); (None, 0) without."""
    face = getattr(obj, "face", None)
    if face is None:
        return None, 0.0
    if is_dataclass(face) and not isinstance(face, type):
        face = asdict(face)
    if not isinstance(face, Mapping):
        return None, 0.0
    return (face.get("probabilities") or None), float(face.get("visible_fraction") or 0.0)


def _fuse(
    face_of: Any, voice: Prediction | None, words: Prediction | None, accuracy: float | None
) -> dict[str, Any]:
    face, seen = _face(face_of)
    probs = voice.probabilities if voice is not None else None
    score = words.score if words is not None else None
    return fuse(face, seen, probs, 1.0 if probs else 0.0, score, accuracy)


def fuse_result(result: AnalysisResult, words_accuracy: Mapping[str, float | None] | None = None) -> None:
    """Fill ``fused`` of every segment and of the file, and lead the headline with it.

    ``words_accuracy``: model name -> its sign accuracy (:attr:`dmd_pipeline.model.LoadedModel.sign_accuracy`);
    a model not in it gets :data:`dmd_pipeline.fusion.DEFAULT_WORDS_ACCURACY`."""
    voice, words = voice_run(result.models), words_run(result.models)
    acc = (words_accuracy or {}).get(words.name) if words is not None else None
    for seg in result.segments:
        seg.fused = _fuse(
            seg,
            seg.predictions.get(voice.name) if voice is not None else None,
            seg.predictions.get(words.name) if words is not None else None,
            acc,
        )
    result.fused = _fuse(
        result,
        voice.overall if voice is not None else None,
        words.overall if words is not None else None,
        acc,
    )
    result.fused["model_account"] = model_account(result)
    phrase = fused_phrase(result.fused)
    if phrase:
        result.headline = f"{phrase} | {result.headline}" if result.headline else phrase


def fused_phrase(fused: Mapping[str, Any] | None) -> str | None:
    """``happy 0.74 — face 0.6 · voice 0.3 · words 0.1`` (channels whose share rounds to 0.0 left out), with
    ``, uncertain (conflict: face happy, voice sad)`` after the probability when so; None without a fused
    label."""
    if not fused or not fused.get("label"):
        return None
    head = f"{fused['label']} {fused['probability']:.2f}"
    if fused.get("uncertain"):
        reason = fused.get("uncertain_reason") or "uncertain"
        head += (
            f", uncertain ({reason}: {fused['detail']})"
            if reason == "conflict"
            else f", uncertain ({reason})"
        )
    tenths = _tenths(fused.get("contributions") or {})
    why = " · ".join(f"{k} {tenths[k] / 10:.1f}" for k in CHANNELS if tenths.get(k, 0) > 0)
    return f"{head} — {why}" if why else head


def _tenths(shares: Mapping[str, Any]) -> dict[str, int]:
    """The shares in whole tenths that add up to 10 when the shares add up to 1 (largest remainder), so the
    headline's ``face 0.6 · voice 0.3 · words 0.1`` never reads as 1.1 or 0.9 in all."""
    vals = {k: max(0.0, float(shares.get(k) or 0.0)) for k in CHANNELS}
    total = sum(vals.values())
    if total <= 0:
        return dict.fromkeys(CHANNELS, 0)
    scaled = {k: 10.0 * v / total for k, v in vals.items()}
    out = {k: int(v) for k, v in scaled.items()}
    for k in sorted(CHANNELS, key=lambda c: out[c] - scaled[c])[: 10 - sum(out.values())]:
        out[k] += 1
    return out


def _edge_phrase(name: str, weight: float) -> str:
    src, dst = name.split("->")
    return f"{_EDGE_WORDS[src]} -> {_EDGE_WORDS[dst]} {weight:.2f}"


def model_account(result: AnalysisResult) -> str | None:
    """``<model>'s graph: HomoGD mostly words -> voice 0.41; HeteroGD mostly face -> words 0.38`` for a
    primary model fed two or more modalities (the edges among those, mean over the segments); else None."""
    primary = result.models[0] if result.models else None
    if primary is None or len(primary.modalities_used) < 2:
        return None
    edges = [s.edges for s in result.segments if s.edges is not None]
    if not edges:
        return None
    used = set(primary.modalities_used)
    parts = []
    for kind, label in (("homo", "HomoGD"), ("hetero", "HeteroGD")):
        mean: dict[str, float] = {}
        for e in edges:
            for name, w in getattr(e, kind).items():
                src, dst = name.split("->")
                if _EDGE_MODALITY[src] in used and _EDGE_MODALITY[dst] in used:
                    mean[name] = mean.get(name, 0.0) + float(w) / len(edges)
        if mean:
            top = max(mean, key=mean.__getitem__)
            parts.append(f"{label} mostly {_edge_phrase(top, mean[top])}")
    return f"{primary.name}'s graph: " + "; ".join(parts) if parts else None
