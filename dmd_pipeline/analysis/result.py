"""Typed results of ``dmd analyze`` and their versioned JSON form (schema ``analysis_result`` 1.5).

One :class:`AnalysisResult` describes one media file, scored by one or several models over one extraction
(e.g. sentiment from the words and emotion from the voice). ``to_dict()`` gives the JSON document described
by ``dmd_pipeline/schemas/analysis_result.schema.json``; ``from_dict()`` reads it back (1.5, 1.4, 1.3, 1.2 and 1.1
documents, and 1.0 documents, which it upgrades in memory: their one model becomes ``models[0]``).
Conventions:

* Times are seconds from the start of the file.
* ``score`` is the DMD regression output clipped to [-3, 3] (``raw_score`` keeps the unclipped value).
* ``label7`` is the CMU-MOSI 7-class label of the score, ``round`` (half to even, as numpy/MMSA do) then
  clipped to [-3, 3]: -3 strongly negative, -2 negative, -1 weakly negative, 0 neutral, 1 weakly positive,
  2 positive, 3 strongly positive.
* ``label2`` is the binary label: ``positive`` when score >= 0, else ``negative``. This equals MMSA's Non0
  binarisation (``pred > 0``) for every score that is not exactly 0, and its Has0 one (``>= 0``) always.
* For classification models ``score``/``label7``/``label2`` are null and ``probabilities`` (softmax, one
  entry per class name) plus ``predicted_class`` are given instead.
* The overall result is the duration-weighted mean of the segment scores (or probabilities).
* Missing observations (no face in a frame, unvoiced pitch) are ``null``, never NaN.

Versions:

* **1.0** one model: ``model`` (its :class:`ModelInfo`), ``overall``, ``segments[].prediction``.
* **1.1** several models. The 1.0 fields keep their meaning and describe the FIRST (primary)
  model. New:

  - ``models``: one entry per model run, in order: ``name``, ``role`` (``sentiment`` for a regression
    model, ``emotion`` for a classification model), ``task``, ``class_names``, ``modalities_used`` (its
    modalities present in this file), ``zero_filled`` (the input modalities fed as zeros), ``info`` (its
    :class:`ModelInfo`), ``overall``, ``note`` (why it has no prediction, what was fed as zeros; may be
    empty) and ``windows`` (see below). A model none of whose modalities is present has an all-null
    ``overall`` and segment predictions.
  - ``segments[].predictions``: ``{model name: Prediction}`` for every model (the primary's equals
    ``segments[].prediction``).
  - ``headline``: one short line, e.g. ``"voice: angry 0.71 · words: neutral -0.12"`` (see
    :func:`make_headline`).
  - ``models[].windows``: for a model with an analysis window (``analysis_window_s`` in its meta, e.g. a
    voice-emotion model trained on ~4 s clips) the spans it scored: every segment longer than 1.5 windows
    is cut into ``n = round(duration / window)`` equal windows, a shorter one is one window; each has
    ``start``, ``end``, ``segment`` (index) and ``prediction``, and a segment's prediction is the
    duration-weighted mean of its windows'. Empty for a model without a window (it scores the segments).
* **1.2** the 1.1 fields keep their meaning. New:

  - ``generator``: always ``"dmd-pipeline"``: marks the document as this tool's output, which is never read
    back as an input (a sidecar transcript, :func:`dmd_pipeline.extractors.transcribe.is_tool_output`).
  - ``options.media`` (size, mtime_ns, sha256 of the whole file or of a bounded sample, ``hashed``) and
    ``options.transcript`` now also for a sidecar transcript (``"sidecar": true``): a re-run redoes the
    file when the media or any transcript source changed (:mod:`dmd_pipeline.analysis.options`).
* **1.3** the 1.2 fields keep their meaning. New:

  - ``fused`` (per file) and ``segments[].fused``: one emotion from the face, voice and words channels
    (:mod:`dmd_pipeline.fusion` documents the rule and every field): ``label`` / ``probability`` /
    ``probabilities`` over the 7 fused classes (null when neither face nor voice spoke), ``contributions``
    ``{face, voice, words}`` summing to 1, ``agreement`` in [0, 1] (null with fewer than two channels),
    ``uncertain`` and ``uncertain_reason`` (``conflict`` | ``low confidence`` | ``missing channel`` | null),
    ``detail`` (what each channel said), ``valence`` / ``arousal`` in [-1, 1], derived from the fused
    distribution on Russell's circumplex (``derived_note`` says so: no dimensional model was trained), and
    per file ``model_account`` (a multimodal DMD model's own graph edges, summarised; null otherwise).
  - ``headline`` now leads with the fused answer and its contributions
    (``happy 0.74 — face 0.6 · voice 0.3 · words 0.1 | face: … · voice: … · words: …``) when the face or
    the voice spoke; otherwise it is the 1.2 headline.
  - ``warnings`` are about the user's file (damaged input, no speech, fallbacks); how a model was built and
    what it was fed as zeros stay in ``models[].note`` (and, for the primary model, ``modalities.note``, as
    in 1.0), never in ``warnings``.
  - ``face`` (top level, the whole file) and ``segments[].face``: the face channel
    (:class:`FaceChannel`): the facial-expression model's duration-weighted class probabilities over the
    frames in which the face is visible, its top class, the visible fraction of the span's frame time, the
    frames in the span, the face box ``[x, y, w, h]`` (fractions of the frame) and how many faces were
    seen; with no visible face the probabilities, label and probability are null and ``note`` says
    ``n/a (no face)`` (``n/a (no video)`` for a file without video). Null when no face model ran
    (``--no-face``).
  - ``face_timeline``: the face model's class probabilities on a regular grid (the report's
    face-over-time plot); null without a face model or video.
  - ``models[]`` lists the face model too (``role`` ``expression``, modalities ``vision``; its segment
    predictions are in ``segments[].predictions`` like every model's); every entry has ``card`` (what
    its config.json records: description, licence, training data, validation metrics) and
    ``calibration`` (``{"calibrated": bool, "temperature": T or null}``).
  - The channels' part of the headline (after the fused answer) leads with the face: ``face: happy 0.81 ·
    voice: calm 0.56 · words: positive +1.20``.
  - ``language`` (file) and ``segments[].language``: the spoken language, ``{"code", "probability",
    "source"}`` (:mod:`dmd_pipeline.extractors.language`); ``transcript.asr_model``: the Whisper model that
    transcribed (``whisper-tiny.en`` for English, ``whisper-base`` for other languages; since 1.5 English is
    ``whisper-base``'s unless ``--asr-model tiny.en``).
* **1.4** the 1.3 fields keep their meaning. New:

  - ``transcript.asr_models``: every speech model the result used, one record each
    (:func:`dmd_pipeline.extractors.language.speech_models`): ``name``, ``use`` (``transcribed English``,
    ``identified the language``, ...), ``languages`` (``["en"]`` or ``"any"``), ``package`` (the pinned
    wheels) and ``sha256`` of its files; empty when no speech model ran (a given transcript with
    ``--language en``, pocketsphinx, ``--asr none``). Not in ``models[]``: that list holds the models that
    score (each with a role, a task and predictions), which a speech model does not.
* **1.5** (current) the 1.4 fields keep their meaning. New:

  - ``options.asr_model``: ``--asr-model``, the Whisper model that transcribes English (``base`` or
    ``tiny.en``); a re-run with another one redoes a file whose English Whisper may transcribe (a result
    without it was made with tiny.en). English is now transcribed by Whisper base by default, so
    ``transcript.asr_model`` says ``whisper-base`` for English too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dmd_pipeline.analysis.export import plot, segments_csv, srt, to_pandas, vtt
from dmd_pipeline.analysis.predictions import top_class
from dmd_pipeline.utils import OUTPUT_MARKER, json_safe

SCHEMA_VERSION = "1.5"
#: Older versions :meth:`AnalysisResult.from_dict` still reads.
READABLE_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3", "1.4", SCHEMA_VERSION)
SCHEMA_FILE = "analysis_result.schema.json"

#: 7-class label names, index = rounded score + 3.
LABEL7_NAMES: tuple[str, ...] = (
    "strongly negative",
    "negative",
    "weakly negative",
    "neutral",
    "weakly positive",
    "positive",
    "strongly positive",
)
#: DMD graph edges (teacher -> student) in the order of the model's (6, B) edge tensors.
EDGE_NAMES: tuple[str, ...] = ("V->L", "A->L", "L->V", "A->V", "L->A", "V->A")
MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
#: Headline word of each modality: what the model listened to / read / looked at.
SOURCE_WORDS: dict[str, str] = {"text": "words", "audio": "voice", "vision": "face"}
#: What a file lacks when a modality is absent (headline of a model that has nothing to score).
MISSING_WORDS: dict[str, str] = {"text": "words", "audio": "audio", "vision": "video"}


def clip_score(score: float) -> float:
    """Clip a regression output to the sentiment range [-3, 3]."""
    return float(min(3.0, max(-3.0, score)))


def label7_index(score: float) -> int:
    """MOSI 7-class index in [-3, 3]: round half to even (numpy/MMSA), then clip."""
    return int(min(3, max(-3, round(score))))


def label7(score: float) -> str:
    """Name of the 7-class label of a score."""
    return LABEL7_NAMES[label7_index(score) + 3]


def label2(score: float) -> str:
    """Binary label: ``positive`` when score >= 0, else ``negative`` (see module docstring)."""
    return "positive" if score >= 0 else "negative"


def _finite(x: float | None) -> float | None:
    """Turn NaN/inf into None so the JSON never carries non-finite numbers."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class WordResult:
    """One word with its time span and where the times came from (forced|asr|proportional|sidecar)."""

    text: str
    start: float
    end: float
    source: str


@dataclass
class GraphEdges:
    """Normalised HomoGD / HeteroGD edge weights of one segment, keyed by ``EDGE_NAMES``."""

    homo: dict[str, float]
    hetero: dict[str, float]


@dataclass
class Prediction:
    """A score (regression) or class probabilities (classification) with the derived labels."""

    score: float | None = None
    raw_score: float | None = None
    label7: str | None = None
    label7_index: int | None = None
    label2: str | None = None
    probabilities: dict[str, float] | None = None
    predicted_class: str | None = None

    @classmethod
    def from_score(cls, raw: float) -> Prediction:
        """Regression prediction from the raw model output."""
        s = clip_score(raw)
        return cls(
            score=s,
            raw_score=float(raw),
            label7=label7(s),
            label7_index=label7_index(s),
            label2=label2(s),
        )

    @classmethod
    def from_probabilities(cls, probs: dict[str, float]) -> Prediction:
        """Classification prediction from class probabilities."""
        probs = {k: float(v) for k, v in probs.items()}
        best = max(probs, key=probs.__getitem__) if probs else None
        return cls(probabilities=probs, predicted_class=best)


#: ``note`` of a face channel over a span in which no face was visible.
NO_FACE = "n/a (no face)"
#: ``note`` of a face channel of a file without video.
NO_VIDEO = "n/a (no video)"


@dataclass
class FaceChannel:
    """The face channel over one span (a segment or the whole file), schema 1.3.

    ``probabilities`` are the facial-expression model's duration-weighted class probabilities over the
    frames of the span in which the face is visible (None when none is: then ``label`` and ``probability``
    are None too and ``note`` says why, never zeros presented as an answer); ``visible_fraction`` the share
    of the span's frame time with a visible face; ``box`` ``[x, y, w, h]`` of the face used, fractions of
    the frame (None without a face); ``faces_seen`` how many faces were seen in the span (the most in one
    frame); ``chosen_by`` the rule that chose the face among several (:mod:`dmd_pipeline.face.speaking`:
    ``only face``, ``speech correlation``, ``mouth activity`` (either ending ``(uncertain)`` when another face
    could be the speaker), ``largest face (no speech)``, ``largest face (no clear speaker)``; for the whole file the segments' rule when they share one, else None).
    """

    model: str
    probabilities: dict[str, float] | None
    label: str | None
    probability: float | None
    visible_fraction: float
    n_frames: int
    box: list[float] | None = None
    faces_seen: int = 0
    note: str | None = None
    chosen_by: str | None = None

    @classmethod
    def absent(cls, model: str, note: str, n_frames: int = 0) -> FaceChannel:
        """A span without an answer: ``note`` says why (:data:`NO_FACE`, :data:`NO_VIDEO`)."""
        return cls(model, None, None, None, 0.0, int(n_frames), None, 0, note)

    def phrase(self) -> str:
        """``happy 0.81``, or the note (``n/a (no face)``)."""
        if not self.probabilities or self.label is None or self.probability is None:
            return self.note or NO_FACE
        return f"{self.label} {self.probability:.2f}"

    def prediction(self) -> Prediction:
        """The same numbers as a model's :class:`Prediction` (``segments[].predictions``)."""
        return Prediction.from_probabilities(self.probabilities) if self.probabilities else Prediction()


@dataclass
class FaceTimeline:
    """The face model's class probabilities on a regular grid (``rate_hz``): each point the mean over the
    visible frames within half a step of it; None where no face was visible."""

    model: str
    rate_hz: float
    times: list[float]
    probabilities: dict[str, list[float | None]]


@dataclass
class SegmentResult:
    """One utterance: its span, text, words, prediction and graph edges."""

    index: int
    start: float
    end: float
    text: str
    prediction: Prediction
    words: list[WordResult] = field(default_factory=list)
    edges: GraphEdges | None = None
    predictions: dict[str, Prediction] = field(default_factory=dict)  # every model's, by model name
    fused: dict[str, Any] | None = None  # the fused answer of the span (1.3; dmd_pipeline.fusion)
    face: FaceChannel | None = None  # the face channel over the segment (1.3; None: no face model ran)
    #: the spoken language (1.3): ``{"code", "probability", "source"}``; None when unknown
    language: dict[str, Any] | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class CueSeries:
    """One descriptive cue sampled on the common cue time grid."""

    unit: str
    description: str
    values: list[float | None]


@dataclass
class KeyFrame:
    """A representative frame time and the face box there (x0, y0, x1, y1 as fractions of width/height)."""

    time: float
    box: list[float] | None = None


@dataclass
class Cues:
    """Descriptive cues (smile, brows, head pose, pitch, loudness) on a regular time grid."""

    rate_hz: float
    times: list[float]
    series: dict[str, CueSeries]


@dataclass
class ModalityInfo:
    """Which modalities the file has, which the model used, and which were fed as zeros."""

    present: list[str]
    model_trained_with: list[str]
    used: list[str]
    zero_filled: list[str]
    note: str = ""


@dataclass
class MediaSummary:
    """What ffprobe said about the file."""

    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


@dataclass
class TranscriptInfo:
    """Where the transcript and the word times came from."""

    source: str
    n_words: int
    word_time_sources: dict[str, int]
    asr_model: str | None = None  # 1.3: the Whisper model that transcribed (None: no speech recognition ran)
    #: 1.4: every speech model used (language.speech_models): name, use, languages, package, sha256
    asr_models: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ModelInfo:
    """Which model produced the scores."""

    name: str
    path: str
    task: str  # "regression" | "classification"
    num_classes: int
    class_names: list[str] | None
    modalities: list[str]
    preset: str | None = None
    feature_dims: list[int] | None = None
    seq_lens: list[int] | None = None
    aligned: bool | None = None


def model_role(task: str) -> str:
    """``sentiment`` for a regression model, ``emotion`` for a classification model."""
    return "sentiment" if task == "regression" else "emotion"


#: Meta keys a model's card in a result takes from its config.json, when present.
_CARD_KEYS = ("description", "licence_note", "training_data", "metrics", "measured_with")


def model_card(meta: dict[str, Any]) -> dict[str, Any]:
    """What a result says about a model (``models[].card``), from its config.json meta: ``description``,
    ``licence`` (its licence note), ``trained_on`` (the training data as recorded) and ``valid`` (the
    validation metrics it records: accuracy, UAR, macro-F1 for a classifier; the MMSA metrics of a
    sentiment model; per-class details left out)."""
    card: dict[str, Any] = {}
    if meta.get("description"):
        card["description"] = str(meta["description"])
    if meta.get("licence_note"):
        card["licence"] = str(meta["licence_note"])
    training = meta.get("training")
    data = (training or {}).get("data") if isinstance(training, dict) else None
    if data is None and isinstance(meta.get("training_data"), dict):
        data = meta["training_data"].get("path")
    if data:
        card["trained_on"] = str(data)
    valid = (meta.get("metrics") or {}).get("valid") if isinstance(meta.get("metrics"), dict) else None
    if isinstance(valid, dict):
        card["valid"] = {
            k: v for k, v in valid.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    return card


def calibration_summary(calibration: Any) -> dict[str, Any]:
    """``{"calibrated": bool, "temperature": T or None}`` of a model's calibration (None: uncalibrated)."""
    t = getattr(calibration, "temperature", None)
    return {"calibrated": t is not None, "temperature": None if t is None else round(float(t), 6)}


@dataclass
class WindowResult:
    """One analysis window of a short-clip model: a span inside segment ``segment`` and its prediction."""

    start: float
    end: float
    segment: int
    prediction: Prediction

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class ModelRun:
    """One model's part of a multi-model analysis (an entry of ``models``)."""

    name: str
    role: str  # "sentiment" (regression) | "emotion" (classification)
    task: str
    class_names: list[str] | None
    modalities_used: list[str]
    zero_filled: list[str]
    info: ModelInfo
    overall: Prediction
    note: str = ""
    windows: list[WindowResult] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)  # 1.3: description, licence, data, valid metrics
    calibration: dict[str, Any] = field(  # 1.3: whether a temperature is applied, and T
        default_factory=lambda: {"calibrated": False, "temperature": None}
    )

    @property
    def has_prediction(self) -> bool:
        """Whether the model scored anything (False when none of its modalities is present)."""
        o = self.overall
        return o.score is not None or bool(o.probabilities)

    @classmethod
    def from_info(
        cls, info: ModelInfo, overall: Prediction, used: list[str], zero: list[str], note: str = ""
    ) -> ModelRun:
        """An entry built from a model's :class:`ModelInfo` (name, task and classes taken from it)."""
        return cls(
            name=info.name,
            role=model_role(info.task),
            task=info.task,
            class_names=list(info.class_names) if info.class_names else None,
            modalities_used=list(used),
            zero_filled=list(zero),
            info=info,
            overall=overall,
            note=note,
        )


def source_word(modalities: list[str]) -> str:
    """``voice`` (audio), ``words`` (text), ``face`` (vision); several joined with ``+`` (text, audio, vision
    order)."""
    mods = [m for m in MODALITIES if m in modalities]
    return "+".join(SOURCE_WORDS[m] for m in mods) or "none"


def prediction_phrase(p: Prediction) -> str | None:
    """``neutral -0.12`` (regression: label7 + signed score) or ``angry 0.71`` (top class + its
    probability); None without a prediction."""
    if p.score is not None:
        return f"{p.label7 or ''} {p.score:+.2f}".strip()
    if p.probabilities:
        best = top_class(p.probabilities, p.predicted_class)
        return f"{best} {p.probabilities[best]:.2f}"
    return None


def make_headline(
    models: list[ModelRun],
    present: list[str] | None = None,
    missing: dict[str, str] | None = None,
    reasons: dict[str, str] | None = None,
) -> str:
    """One short line leading with what the models can support, e.g. ``face: happy 0.81 · voice: angry 0.71
    · words: neutral -0.12``.

    Each model gives ``<source>: <phrase>``; the source word comes from the modalities it used (``voice``,
    ``words``, ``face``, joined with ``+``). Models with a prediction come first (the face expression, then
    emotion, then sentiment, else in model order), models without one last as e.g. ``voice: n/a (no
    audio)``; ``missing`` overrides what a modality's absence is called (``{"audio": "speech"}``: ``voice:
    n/a (no speech)``), ``reasons`` the whole phrase of a model without a prediction (``{name: "n/a (no
    face)"}``). A source word two models share is followed by the model name.
    """
    words = {**MISSING_WORDS, **(missing or {})}
    items: list[tuple[int, int, str, str]] = []  # (rank, order, source, phrase)
    for i, run in enumerate(models):
        phrase = prediction_phrase(run.overall)
        if phrase is not None:
            src = source_word(run.modalities_used or run.info.modalities)
            rank = 0 if run.role == "expression" else 1 if run.task != "regression" else 2
            items.append((rank, i, src, phrase))
        else:
            src = source_word(run.info.modalities)
            gone = [m for m in MODALITIES if m in run.info.modalities and m not in (present or [])]
            why = " ".join(["no", " or ".join(words[m] for m in gone)]) if gone else "no input"
            items.append((3, i, src, (reasons or {}).get(run.name) or f"n/a ({why})"))
    items.sort(key=lambda t: (t[0], t[1]))
    counts: dict[str, int] = {}
    for _, _, src, _ in items:
        counts[src] = counts.get(src, 0) + 1
    parts = []
    for _, i, src, phrase in items:
        label = f"{src} ({models[i].name})" if counts[src] > 1 else src
        parts.append(f"{label}: {phrase}")
    return " · ".join(parts)


@dataclass
class AnalysisResult:
    """Everything ``dmd analyze`` found in one media file (schema version ``SCHEMA_VERSION``)."""

    file: str
    duration: float
    media: MediaSummary
    overall: Prediction
    segments: list[SegmentResult]
    modalities: ModalityInfo
    transcript: TranscriptInfo
    cues: Cues
    model: ModelInfo
    key_frames: list[KeyFrame] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tool_version: str = ""
    created_at: str = ""
    aggregation: str = "duration_weighted_mean"
    models: list[ModelRun] = field(default_factory=list)  # every model run; [0] is the primary (``model``)
    headline: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # what it was made with (analysis/options.py)
    fused: dict[str, Any] | None = None  # the file's fused answer (1.3; dmd_pipeline.fusion)
    face: FaceChannel | None = None  # 1.3: the face channel over the whole file (None: no face model ran)
    face_timeline: FaceTimeline | None = None  # 1.3: face probabilities on a grid (None: no face model/video)
    #: the spoken language of the file (1.3): ``{"code", "probability", "source"}``; None when unknown
    language: dict[str, Any] | None = None
    schema_version: str = SCHEMA_VERSION
    generator: str = OUTPUT_MARKER  # marks the tool's own output (never read back as an input)

    def __post_init__(self) -> None:
        self.complete()

    def complete(self) -> None:
        """Fill the 1.1 fields a one-model result lacks (``models``, ``segments[].predictions``,
        ``headline``) from the 1.0 ones, which describe the primary model."""
        if not self.models:
            mods = self.modalities
            self.models = [
                ModelRun.from_info(
                    self.model, self.overall, list(mods.used), list(mods.zero_filled), mods.note
                )
            ]
        primary = self.models[0].name
        for seg in self.segments:
            if primary not in seg.predictions:
                seg.predictions = {primary: seg.prediction, **seg.predictions}
        if not self.headline:
            self.headline = make_headline(self.models, list(self.modalities.present))

    def run(self, name: str) -> ModelRun | None:
        """The ``models`` entry of a model name (None when no such model ran)."""
        return next((m for m in self.models if m.name == name), None)

    # ---- conversion -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document (plain dicts/lists/str/float/None; no NaN)."""
        self.complete()
        d = asdict(self)
        out = {"schema_version": d.pop("schema_version"), "headline": d.pop("headline")}
        out.update(d)
        return json_safe(out)

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict` (strict: raises on NaN/inf)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    def to_pandas(self, kind: str = "segments") -> Any:
        """A pandas DataFrame of the ``segments`` (default), ``words`` or ``cues`` (needs pandas)."""
        return to_pandas(self.to_dict(), kind)

    def to_csv(self) -> str:
        """The segment timeline as CSV (a ``file`` column, rounded numbers)."""
        return segments_csv(self.to_dict())

    def to_srt(self) -> str:
        """SubRip subtitles: each segment's text and every model's prediction."""
        return srt(self.to_dict())

    def to_vtt(self) -> str:
        """WebVTT subtitles (as :meth:`to_srt`)."""
        return vtt(self.to_dict())

    def plot(self, path: str | Path | None = None) -> Any:
        """A matplotlib figure of each model's prediction over time (saved to ``path`` when given)."""
        return plot(self.to_dict(), path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnalysisResult:
        """Rebuild a result from its JSON document (no validation; see :func:`validate_result`).

        A 1.0 document is upgraded: its model becomes the only ``models`` entry, the headline is derived,
        and the result carries the current ``schema_version``.
        """
        segs = []
        for s in d["segments"]:
            edges = s.get("edges")
            segs.append(
                SegmentResult(
                    index=s["index"],
                    start=s["start"],
                    end=s["end"],
                    text=s["text"],
                    prediction=Prediction(**s["prediction"]),
                    words=[WordResult(**w) for w in s.get("words", [])],
                    edges=GraphEdges(**edges) if edges else None,
                    predictions={k: Prediction(**v) for k, v in (s.get("predictions") or {}).items()},
                    fused=s.get("fused"),
                    face=FaceChannel(**s["face"]) if s.get("face") else None,
                    language=s.get("language"),
                )
            )
        runs = []
        for m in d.get("models") or []:
            runs.append(
                ModelRun(
                    name=m["name"],
                    role=m["role"],
                    task=m["task"],
                    class_names=m.get("class_names"),
                    modalities_used=list(m.get("modalities_used", [])),
                    zero_filled=list(m.get("zero_filled", [])),
                    info=ModelInfo(**m["info"]),
                    overall=Prediction(**m["overall"]),
                    note=m.get("note", ""),
                    windows=[
                        WindowResult(w["start"], w["end"], w["segment"], Prediction(**w["prediction"]))
                        for w in m.get("windows", [])
                    ],
                    card=dict(m.get("card") or {}),
                    calibration=dict(m.get("calibration") or {"calibrated": False, "temperature": None}),
                )
            )
        cues = d["cues"]
        return cls(
            schema_version=SCHEMA_VERSION,
            models=runs,
            headline=d.get("headline", ""),
            file=d["file"],
            duration=d["duration"],
            media=MediaSummary(**d["media"]),
            overall=Prediction(**d["overall"]),
            segments=segs,
            modalities=ModalityInfo(**d["modalities"]),
            transcript=TranscriptInfo(**d["transcript"]),
            cues=Cues(
                rate_hz=cues["rate_hz"],
                times=list(cues["times"]),
                series={k: CueSeries(**v) for k, v in cues["series"].items()},
            ),
            model=ModelInfo(**d["model"]),
            key_frames=[KeyFrame(**k) for k in d.get("key_frames", [])],
            timings=dict(d.get("timings", {})),
            warnings=list(d.get("warnings", [])),
            tool_version=d.get("tool_version", ""),
            created_at=d.get("created_at", ""),
            aggregation=d.get("aggregation", "duration_weighted_mean"),
            options=dict(d.get("options") or {}),
            fused=d.get("fused"),
            face=FaceChannel(**d["face"]) if d.get("face") else None,
            face_timeline=FaceTimeline(**d["face_timeline"]) if d.get("face_timeline") else None,
            language=d.get("language"),
        )

    @classmethod
    def from_json(cls, text: str) -> AnalysisResult:
        return cls.from_dict(json.loads(text))


# ---- schema and validation ------------------------------------------------------------------------
def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the result document."""
    text = resources.files("dmd_pipeline").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def validate_result(doc: dict[str, Any]) -> list[str]:
    """Problems found in a result document; empty when it is a complete, valid current-version result
    (a 1.0 document is reported as an older version: :meth:`AnalysisResult.from_dict` still reads it).

    Uses ``jsonschema`` when it is installed, else checks the version and required top-level keys.
    """
    if not isinstance(doc, dict):
        return ["document is not a JSON object"]
    if doc.get("schema_version") != SCHEMA_VERSION:
        return [f"schema_version is {doc.get('schema_version')!r}, expected {SCHEMA_VERSION!r}"]
    schema = load_schema()
    try:
        import jsonschema
    except ImportError:  # runtime install without the dev extra
        missing = [k for k in schema.get("required", []) if k not in doc]
        return [f"missing key {k!r}" for k in missing]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)
    ]


def read_result_file(path: str | Path) -> tuple[dict[str, Any] | None, list[str]]:
    """Load a result JSON and validate it: (document or None, problems)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"cannot read {path}: {exc}"]
    problems = validate_result(doc)
    return (doc if not problems else None), problems
