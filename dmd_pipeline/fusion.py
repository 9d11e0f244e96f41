"""One emotion per span from the face, the voice and the words: a product of calibrated experts.

Pure functions (no I/O, no model): :func:`fuse` takes what each channel said about one span (a segment or
the whole file) and returns the ``fused`` dict of a result (schema 1.3).

**The fused classes.** The face model speaks FER2013's 7 classes (angry, disgust, fear, happy, sad,
surprise, neutral), the voice model RAVDESS's 8 (angry, calm, disgust, fearful, happy, neutral, sad,
surprised). The fused set is the face's 7 (:data:`FUSED_CLASSES`); the voice's classes map onto it
(:data:`CLASS_MAP`): ``fearful`` -> ``fear``, ``surprised`` -> ``surprise``, and ``calm`` folds into
``neutral`` (its probability is added to neutral's). Calm is not kept as a voice-only class: the face has no
calm, so a fused calm could only ever come from the voice, and RAVDESS's calm and neutral are both the
low-arousal, non-emotional portrayals of the same sentences. A class name the map does not know is dropped
and the rest renormalised; a channel none of whose classes map is treated as absent.

**The rule.** Each channel's probabilities are calibrated (temperature scaling, :mod:`dmd_pipeline.calibration`)
before they arrive here, so a confident channel is one that is right that often. The fused distribution is
their weighted geometric pool (a product of experts under a flat class prior)::

    log q(c) = w_face * log p_face(c) + w_voice * log p_voice(c) + w_words * log L_words(c) + const

The weights are each channel's *availability* over the span, not numbers tuned on our clips: ``w_face`` is
the fraction of the span's frame time in which a face was visible (a face seen 30 % of the time counts 0.3),
``w_voice`` is 1 when the voice model scored the span (speech present) and 0 when it says n/a, ``w_words``
is 1 when the words model scored it. Each channel's *confidence* needs no weight: it is in its calibrated
distribution (a flat distribution moves nothing). The product assumes the channels are independent given the
emotion; they are not quite (one person makes both the face and the voice), so two agreeing channels make
the fused probability higher than it should be: read it as "the channels agree", not as a calibrated figure.

**The words as valence evidence.** The sentiment model says how positive the words are (a score in
[-3, 3]), not which emotion. Its likelihood of class ``c`` (:func:`words_likelihood`) uses the model's own
binary accuracy ``acc`` on its validation split (how often the sign of its score is right)::

    L_words(c) = 0.5 + (acc - 0.5) * valence(c) * clip(score, -1, 1)

A class whose circumplex valence agrees with the words' sign gets up to ``acc``, an opposite one down to
``1 - acc``, a neutral-valence class (or a score of 0) 0.5: the words alone can move the odds between a
pleasant and an unpleasant class by at most ``acc / (1 - acc)``, and can never tell anger from fear. A score
of magnitude 1 (the MOSI "weakly positive/negative" boundary) or more counts fully. Without face or voice the
words give no class: the fused label is null and the valence is the words' (score / 3).

**Contributions** (how much each channel moved the answer): channel ``k``'s influence is the total-variation
distance between the fused distribution and the one pooled without ``k`` (``d_k = 1/2 sum_c |q(c) -
q_-k(c)|``; without any channel the pool is flat); ``contributions[k] = d_k / sum_j d_j``. A channel that
argued *against* the answer (the words pulling a happy voice towards neutral) moved it too and counts. They
sum to 1; when no channel moved anything, the available channels share equally; when none is available all
are 0.

**Agreement** in [0, 1] (None with fewer than two channels): the mean over pairs of available channels of
their pairwise agreement: face vs voice ``1 - JSD(p_face, p_voice)`` (Jensen-Shannon divergence in bits,
itself in [0, 1]), a categorical channel vs the words ``1 - |valence(p) - score / 3| / 2``.

**Uncertain** (``uncertain_reason``, first that applies):

* ``missing channel``: no face or voice evidence to name a class from (their weights sum below
  :data:`MIN_CATEGORICAL_WEIGHT`, e.g. no voice and a face seen under half the time);
* ``conflict``: face and voice each confident (top probability >= :data:`CONFIDENT`) in different classes,
  or the words clearly positive/negative (``|score| >= 1``) against a clearly unpleasant/pleasant fused label
  (circumplex valence of the opposite sign, at least 0.3 in size);
* ``low confidence``: the fused probability is below :data:`LOW_CONFIDENCE`.

The label is given whenever the face or the voice spoke, uncertain or not (the best guess); ``detail`` says
what each channel said, or for a conflict which channels contradict each other (``face happy, voice sad``).

**Valence and arousal, derived** (:func:`circumplex`): no dimensional model was trained here (there is no
valence/arousal training data); the estimate is the expected position on Russell's (1980) circumplex of
affect under the fused distribution, ``(sum_c q(c) cos θ_c, sum_c q(c) sin θ_c)``, each class on the unit
circle at the angle of the affect word closest to it in Russell's scaling of 28 affect words (pleasure 0°,
arousal 90°; :data:`CIRCUMPLEX_DEG`) and neutral at the centre. Both are in [-1, 1]. The words enter through
the fused distribution (their valence evidence), not a second time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = [
    "CHANNELS",
    "CIRCUMPLEX_DEG",
    "CLASS_MAP",
    "FUSED_CLASSES",
    "circumplex",
    "fuse",
    "to_fused_classes",
    "words_likelihood",
]

#: The fused class set: the face model's (FER2013) 7 classes.
FUSED_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: The channels, in the order they are reported.
CHANNELS: tuple[str, ...] = ("face", "voice", "words")
#: A channel's class name (lower case) -> its fused class. RAVDESS's calm folds into neutral (module docstring).
CLASS_MAP: dict[str, str] = {
    **{c: c for c in FUSED_CLASSES},
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "calm": "neutral",
}
#: Angle (degrees, pleasure 0°, arousal 90°) of each class on Russell's (1980) circumplex, from the affect word
#: of his 28-word scaling closest to it: happy ("happy" 7.8°), surprise ("astonished" 69.8°), angry ("angry"
#: 99.0°), fear ("afraid" 116.8°), sad ("sad" 207.5°). Disgust is not among Russell's words: it is placed at
#: 135°, his "distress" axis between anger and displeasure (our assumption). Neutral sits at the centre.
CIRCUMPLEX_DEG: dict[str, float] = {
    "happy": 7.8,
    "surprise": 69.8,
    "angry": 99.0,
    "fear": 116.8,
    "disgust": 135.0,
    "sad": 207.5,
}
#: A channel is confident in its top class at this calibrated probability (conflict test).
CONFIDENT = 0.5
#: A fused probability below this is ``low confidence`` (chance over 7 classes is 0.14).
LOW_CONFIDENCE = 0.4
#: Face + voice weight below which there is too little categorical evidence (``missing channel``).
MIN_CATEGORICAL_WEIGHT = 0.5
#: A words score of at least this magnitude is clearly positive/negative (MOSI's weakly positive/negative).
CLEAR_SCORE = 1.0
#: The words model's binary accuracy when its metrics do not say (a modest sentiment model's).
DEFAULT_WORDS_ACCURACY = 0.75
#: Probability floor before taking logs (a calibrated 0 is never certain).
_EPS = 1e-6
DERIVED_NOTE = (
    "derived: the expected position on Russell's (1980) circumplex of affect under the fused class "
    "distribution (valence = pleasant +1 / unpleasant -1, arousal = activated +1 / deactivated -1); "
    "no valence/arousal model was trained"
)
WORDS_ONLY_NOTE = (
    "derived: the words' sentiment score / 3 (no face or voice to place the emotion on the circumplex); "
    "no valence/arousal model was trained"
)


def _valence_arousal(cls: str) -> tuple[float, float]:
    deg = CIRCUMPLEX_DEG.get(cls)
    if deg is None:
        return 0.0, 0.0
    rad = math.radians(deg)
    return math.cos(rad), math.sin(rad)


def circumplex(probabilities: Mapping[str, float]) -> tuple[float, float]:
    """(valence, arousal) in [-1, 1]: the expected circumplex position of a fused class distribution."""
    v = a = 0.0
    for c, p in probabilities.items():
        cv, ca = _valence_arousal(c)
        v += p * cv
        a += p * ca
    return v, a


def to_fused_classes(probabilities: Mapping[str, float] | None) -> dict[str, float] | None:
    """A channel's class probabilities on :data:`FUSED_CLASSES` (calm added to neutral, fearful -> fear...);
    unknown classes dropped, the rest renormalised; None when nothing maps (or no probabilities)."""
    if not probabilities:
        return None
    out = dict.fromkeys(FUSED_CLASSES, 0.0)
    for name, p in probabilities.items():
        cls = CLASS_MAP.get(str(name).strip().lower())
        if cls is not None and p is not None and math.isfinite(float(p)):
            out[cls] += max(0.0, float(p))
    total = sum(out.values())
    if total <= 0:
        return None
    return {c: v / total for c, v in out.items()}


def words_likelihood(score: float, accuracy: float = DEFAULT_WORDS_ACCURACY) -> dict[str, float]:
    """L_words(c) for every fused class from a sentiment score (module docstring): within
    [1 - accuracy, accuracy], 0.5 for a neutral-valence class or a score of 0."""
    edge = min(0.5, max(0.0, float(accuracy) - 0.5))
    strength = min(1.0, max(-1.0, float(score) / CLEAR_SCORE))
    return {c: 0.5 + edge * _valence_arousal(c)[0] * strength for c in FUSED_CLASSES}


def _top(p: Mapping[str, float]) -> str:
    return max(p, key=p.__getitem__)


def _logs(p: Mapping[str, float]) -> dict[str, float]:
    return {c: math.log(max(_EPS, p[c])) for c in FUSED_CLASSES}


def _jsd(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon divergence in bits (in [0, 1])."""
    out = 0.0
    for c in FUSED_CLASSES:
        m = 0.5 * (p[c] + q[c])
        for x in (p[c], q[c]):
            if x > 0:
                out += 0.5 * x * math.log2(x / m)
    return min(1.0, max(0.0, out))


def _agreement(cats: dict[str, dict[str, float]], words_valence: float | None) -> float | None:
    pairs: list[float] = []
    names = list(cats)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pairs.append(1.0 - _jsd(cats[a], cats[b]))
        if words_valence is not None:
            pairs.append(1.0 - abs(circumplex(cats[a])[0] - words_valence) / 2.0)
    return sum(pairs) / len(pairs) if pairs else None


def _pool(experts: dict[str, dict[str, float]], weights: Mapping[str, float]) -> dict[str, float]:
    """The normalised weighted geometric pool of the experts' log-probabilities (flat without any)."""
    pooled = {c: sum(weights[k] * logs[c] for k, logs in experts.items()) for c in FUSED_CLASSES}
    peak = max(pooled.values())
    expo = {c: math.exp(v - peak) for c, v in pooled.items()}
    total = sum(expo.values())
    return {c: v / total for c, v in expo.items()}


def _contributions(
    experts: dict[str, dict[str, float]], weights: Mapping[str, float], q: Mapping[str, float]
) -> dict[str, float]:
    """Each channel's leave-one-out total-variation share (module docstring)."""
    moved = {}
    for k in experts:
        rest = _pool({j: e for j, e in experts.items() if j != k}, weights)
        moved[k] = 0.5 * sum(abs(q[c] - rest[c]) for c in FUSED_CLASSES)
    total = sum(moved.values())
    if total > 0:
        return {k: moved.get(k, 0.0) / total for k in CHANNELS}
    return {k: 1.0 / len(experts) if k in experts else 0.0 for k in CHANNELS}


def _conflict(cats: dict[str, dict[str, float]], label: str, score: float | None) -> str | None:
    """``face happy, voice sad`` when the channels contradict each other (module docstring), else None."""
    tops = {k: _top(p) for k, p in cats.items()}
    sure = {k: t for k, t in tops.items() if cats[k][t] >= CONFIDENT}
    if len(sure) >= 2 and len(set(sure.values())) > 1:
        return ", ".join(f"{k} {t}" for k, t in sure.items())
    if score is not None and abs(score) >= CLEAR_SCORE:
        v = _valence_arousal(label)[0]
        if v * score < 0 and abs(v) >= 0.3:
            said = ", ".join(f"{k} {t}" for k, t in tops.items())
            return f"{said}, words {'positive' if score > 0 else 'negative'} {score:+.2f}"
    return None


def _empty(detail: str, valence: float | None, note: str | None) -> dict[str, object]:
    return {
        "label": None,
        "probability": None,
        "probabilities": None,
        "contributions": dict.fromkeys(CHANNELS, 0.0),
        "agreement": None,
        "uncertain": True,
        "uncertain_reason": "missing channel",
        "detail": detail,
        "valence": valence,
        "arousal": None,
        "derived_note": note,
    }


def fuse(
    face: Mapping[str, float] | None = None,
    face_weight: float = 1.0,
    voice: Mapping[str, float] | None = None,
    voice_weight: float = 1.0,
    words_score: float | None = None,
    words_accuracy: float | None = None,
) -> dict[str, object]:
    """The fused answer of one span (module docstring for the rule and every field).

    ``face``/``voice``: the channel's calibrated class probabilities in its own class names (None: absent);
    ``face_weight``: the visible fraction of the span; ``voice_weight``: 1 when the voice scored it (0 or a
    None ``voice``: n/a); ``words_score``: the sentiment score in [-3, 3] (None: no words);
    ``words_accuracy``: the words model's binary validation accuracy (None: :data:`DEFAULT_WORDS_ACCURACY`).

    Returns ``{label, probability, probabilities, contributions: {face, voice, words}, agreement, uncertain,
    uncertain_reason, detail, valence, arousal, derived_note}``.
    """
    cats: dict[str, dict[str, float]] = {}
    weights: dict[str, float] = {}
    for name, probs, w in (("face", face, face_weight), ("voice", voice, voice_weight)):
        mapped = to_fused_classes(probs)
        w = min(1.0, max(0.0, float(w or 0.0)))
        if mapped is not None and w > 0:
            cats[name], weights[name] = mapped, w
    score = None if words_score is None or not math.isfinite(float(words_score)) else float(words_score)
    words_valence = None if score is None else min(1.0, max(-1.0, score / 3.0))
    if not cats:
        if score is None:
            return _empty("no channel: no face, voice or words", None, None)
        out = _empty("words only: no face or voice to name an emotion from", words_valence, WORDS_ONLY_NOTE)
        out["contributions"] = {k: 1.0 if k == "words" else 0.0 for k in CHANNELS}
        return out

    experts = {k: _logs(p) for k, p in cats.items()}
    if score is not None:
        lik = words_likelihood(score, DEFAULT_WORDS_ACCURACY if words_accuracy is None else words_accuracy)
        experts["words"], weights["words"] = _logs(lik), 1.0
    q = _pool(experts, weights)
    label = _top(q)
    conflict = _conflict(cats, label, score)
    if sum(weights[k] for k in cats) < MIN_CATEGORICAL_WEIGHT:
        reason: str | None = "missing channel"
    elif conflict:
        reason = "conflict"
    elif q[label] < LOW_CONFIDENCE:
        reason = "low confidence"
    else:
        reason = None
    valence, arousal = circumplex(q)
    said = ", ".join(f"{k} {_top(p)} {p[_top(p)]:.2f}" for k, p in cats.items())
    if score is not None:
        said += f", words {score:+.2f}"
    return {
        "label": label,
        "probability": q[label],
        "probabilities": q,
        "contributions": _contributions(experts, weights, q),
        "agreement": _agreement(cats, words_valence),
        "uncertain": reason is not None,
        "uncertain_reason": reason,
        "detail": conflict if reason == "conflict" else said,
        "valence": valence,
        "arousal": arousal,
        "derived_note": DERIVED_NOTE,
    }
