"""Typed results of ``dmd analyze`` and their versioned JSON form (schema ``analysis_result`` 1.0).

One :class:`AnalysisResult` describes one media file. ``to_dict()`` gives the JSON document described by
``dmd_pipeline/schemas/analysis_result.schema.json``; ``from_dict()`` reads it back. Conventions:

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
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.0"
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
    schema_version: str = SCHEMA_VERSION

    # ---- conversion -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document (plain dicts/lists/str/float/None; no NaN)."""
        d = asdict(self)
        out = {"schema_version": d.pop("schema_version")}
        out.update(d)
        return _clean(out)

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict` (strict: raises on NaN/inf)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnalysisResult:
        """Rebuild a result from its JSON document (no validation; see :func:`validate_result`)."""
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
                )
            )
        cues = d["cues"]
        return cls(
            schema_version=d["schema_version"],
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
        )

    @classmethod
    def from_json(cls, text: str) -> AnalysisResult:
        return cls.from_dict(json.loads(text))


def _clean(obj: Any) -> Any:
    """Recursively replace non-finite floats with None and tuples with lists."""
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


# ---- schema and validation ------------------------------------------------------------------------
def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the result document."""
    text = resources.files("dmd_pipeline").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def validate_result(doc: dict[str, Any]) -> list[str]:
    """Problems found in a result document; empty when it is a complete, valid version-1.0 result.

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
