"""One media file -> :class:`~dmd_pipeline.analysis.result.AnalysisResult`, scored by one or several models.

Steps: build ONE extractor whose settings serve every model (:func:`get_extractor`: the acoustic setting
from the models that use audio, ``whisper+librosa`` when one needs Whisper features, so the librosa cue
columns stay; ConfigError when two audio models need incompatible settings), extract the whole file once
(``pipeline.Extractor``: probe, audio, transcript, word alignment, acoustic and visual frames), cut the
transcript into utterances (``align.segment_transcript``; shared by all models), then per model: build each
utterance's input from the columns it was trained on (:func:`model_columns`; its words re-encoded by the
text encoder, the frames inside its span pooled onto the words or resampled, as it was trained), score all
utterances in one batched forward pass, and aggregate (duration-weighted mean). A short-clip model
(``analysis_window_s`` in its meta) scores long utterances in equal windows (:func:`analysis_windows`).
Modalities a model was not trained with are fed as zeros, and the result says so; a model none of whose
modalities is present (e.g. a voice model on a file without audio, or whose audio track is digital
silence) gives null predictions and a note. Descriptive cues (smile, brows, head pose, pitch, loudness) are
resampled onto a regular grid (default 2 Hz) from the same frames.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.analysis.messages import rank_warnings
from dmd_pipeline.analysis.registry import LoadedModel
from dmd_pipeline.analysis.result import (
    EDGE_NAMES,
    MODALITIES,
    AnalysisResult,
    Cues,
    CueSeries,
    GraphEdges,
    KeyFrame,
    MediaSummary,
    ModalityInfo,
    ModelRun,
    Prediction,
    SegmentResult,
    TranscriptInfo,
    WindowResult,
    WordResult,
    clip_score,
    label2,
    label7,
    label7_index,
    make_headline,
    source_word,
)
from dmd_pipeline.errors import ConfigError, InputError


@dataclass
class AnalyzeOptions:
    """How to analyse a clip (the model is passed separately)."""

    asr: str = "whisper"  # whisper | pocketsphinx | none (used when no transcript/sidecar)
    transcript: str | Path | None = None  # transcript file (.txt/.srt/.vtt/.json) or literal text
    cue_rate_hz: float = 2.0
    max_segment_s: float = 10.0  # utterances longer than this are cut at pauses
    min_segment_s: float = 1.0  # shorter ones are merged into a close neighbour
    key_frames: int = 3
    batch_size: int = 16
    fps: float | None = None  # visual sampling rate; None: the model's feature spec, else 10 (4 if unused)
    # files longer than 1.5x this are extracted and scored in windows of about this length (memory bounded
    # by the window, not the file); 0 = always whole
    stream_window_s: float = 60.0


# ---- extractor set-up --------------------------------------------------------------------------------
#: Frame rate of each acoustic setting (the librosa columns of ``whisper+librosa`` are pooled to 50 Hz).
ACOUSTIC_RATES_HZ: dict[str, float] = {"librosa": 100.0, "whisper": 50.0, "whisper+librosa": 50.0}
#: The modality whose extraction each recorded setting shapes (a model constrains only its own modalities).
_SETTING_MODALITY: dict[str, str] = {
    "text_model": "text",
    "face_model": "vision",
    "keep_landmarks": "vision",
    "max_side": "vision",
    "sample_rate": "audio",
    "whisper_model": "audio",
}


def as_model_list(models: LoadedModel | Sequence[LoadedModel]) -> list[LoadedModel]:
    """A model or a sequence of models as a non-empty list (ConfigError when empty)."""
    out = [models] if isinstance(models, LoadedModel) else list(models)
    if not out:
        raise ConfigError("no model to analyse with")
    return out


def _feature_config(model: LoadedModel) -> dict[str, Any]:
    """The extraction settings recorded with the model (``meta.feature_spec.config``), if any."""
    from dmd_pipeline.analysis.registry import dataset_meta

    spec = dataset_meta(model.meta)
    cfg = spec.get("config")
    if not isinstance(cfg, dict):  # a model trained on a `dmd extract` pickle: one level further down
        inner = spec.get("feature_spec")
        cfg = inner.get("config") if isinstance(inner, dict) else None
    return dict(cfg) if isinstance(cfg, dict) else {}


def acoustic_setting(models: Sequence[LoadedModel]) -> str:
    """The one acoustic setting that serves every model using audio (models without audio never constrain
    it): all ``librosa`` -> ``librosa``; any ``whisper``/``whisper+librosa`` -> ``whisper+librosa`` (a superset
    that keeps the librosa columns for the pitch/loudness cues); ``librosa`` (100 Hz) next to a whisper
    setting (50 Hz) cannot share one extraction: ConfigError."""
    needs = [(m.name, m.acoustic_setting) for m in models if "audio" in m.modalities]
    settings = {s for _, s in needs}
    unknown = settings - set(ACOUSTIC_RATES_HZ)
    if unknown:
        raise ConfigError(
            f"model {next(n for n, s in needs if s in unknown)!r} was trained on the unknown acoustic setting "
            f"{sorted(unknown)[0]!r} (known: {', '.join(ACOUSTIC_RATES_HZ)})"
        )
    if not settings or settings == {"librosa"}:
        return "librosa"
    if "librosa" in settings:
        lib = [n for n, s in needs if s == "librosa"]
        other = [(n, s) for n, s in needs if s != "librosa"]
        raise ConfigError(
            "the models need incompatible acoustic features and one extraction cannot serve both: "
            f"{lib[0]!r} was trained on 'librosa' (25-d at {ACOUSTIC_RATES_HZ['librosa']:g} Hz), "
            f"{other[0][0]!r} on {other[0][1]!r} ({ACOUSTIC_RATES_HZ[other[0][1]]:g} Hz); "
            "analyse with them in separate runs"
        )
    return "whisper+librosa"


def _first_setting(
    models: Sequence[LoadedModel], specs: dict[int, dict[str, Any]], key: str, modality: str
) -> Any:
    """``key`` from the first model that uses ``modality`` and records it (None when none does)."""
    for m in models:
        if modality in m.modalities and key in specs[id(m)]:
            return specs[id(m)][key]
    return None


def _text_model(model: LoadedModel, spec: dict[str, Any]) -> str | None:
    """The text encoder a model's text features came from (None: the bundled one / not recorded)."""
    if spec.get("text_model"):
        return str(spec["text_model"])
    cfg = model.config
    if getattr(cfg, "use_bert", False) and getattr(cfg, "text_encoder", None):
        return str(cfg.text_encoder)
    return None


def get_extractor(models: LoadedModel | Sequence[LoadedModel], options: AnalyzeOptions) -> Any:
    """ONE ``pipeline.Extractor`` whose features serve every model (built once per settings and kept).

    Each setting comes from the models that use its modality: the acoustic setting from the audio models
    (:func:`acoustic_setting`), fps/face settings from the first vision model, the text encoder and token
    length from the first text model (two text models with different recorded encoders: ConfigError).
    Each model then takes the columns it was trained on (:func:`model_columns`).
    """
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    models = as_model_list(models)
    specs = {id(m): _feature_config(m) for m in models}
    first = models[0]
    text_models = [m for m in models if "text" in m.modalities]
    fps = options.fps or _first_setting(models, specs, "fps", "vision")
    if not fps:
        fps = 10.0 if any("vision" in m.modalities for m in models) else 4.0
    lens_from = text_models[0] if text_models else first
    kw: dict[str, Any] = {
        "fps": float(fps),
        "asr": options.asr,
        "aligned": bool(
            first.aligned if first.aligned is not None else specs[id(first)].get("aligned", True)
        ),
        "seq_lens": tuple(int(x) for x in lens_from.config.seq_lens),
        "acoustic": acoustic_setting(models),
    }
    encoders = {m.name: _text_model(m, specs[id(m)]) for m in text_models}
    named = {n: e for n, e in encoders.items() if e}
    if len(set(named.values())) > 1:
        raise ConfigError(
            "the text models were trained on different text encoders and one extraction cannot serve both: "
            + ", ".join(f"{n!r}: {e}" for n, e in named.items())
        )
    if named:
        kw["text_model"] = next(iter(named.values()))
    for key, modality in _SETTING_MODALITY.items():
        if key == "text_model":
            continue
        val = _first_setting(models, specs, key, modality)
        if val is None and key == "whisper_model":  # also the ASR model: any model may name it
            val = next((specs[id(m)][key] for m in models if specs[id(m)].get(key)), None)
        if val is not None:
            kw[key] = val
    key = repr(sorted(kw.items()))
    cache = first.extra.setdefault("extractors", {})
    if key not in cache:
        cache[key] = Extractor(ExtractionConfig(**kw), cache=None)
    return cache[key]


def model_columns(model: LoadedModel, ext: Any, modality: str) -> list[str] | None:
    """The ``modality`` ("audio"/"vision") columns of ``ext``'s frames the model was trained on; None: all of
    them, as they are. Recorded feature names win; a ``whisper`` model without recorded names served by a
    ``whisper+librosa`` extraction gets the ``whisper_*`` columns. ConfigError (naming the model) when the
    extraction lacks some of them."""
    feats = ext.acoustic if modality == "audio" else ext.visual
    avail = list(feats.feature_names)
    names = model.feature_names(modality)
    if names is None:
        if modality == "audio" and model.acoustic_setting == "whisper" and ext.config.acoustic != "whisper":
            names = [n for n in avail if n.startswith("whisper_")]
        else:
            return None
    if names == avail:
        return None
    have = set(avail)
    missing = [n for n in names if n not in have]
    if missing:
        raise ConfigError(
            f"model {model.name!r} needs {modality} feature columns that this extraction does not produce "
            f"({len(missing)} of {len(names)} missing, e.g. {', '.join(missing[:3])}): it was trained on "
            f"{_setting_text(model, modality, trained=True)}, the extraction is {_setting_text(ext, modality)}"
        )
    return names


def _setting_text(obj: Any, modality: str, trained: bool = False) -> str:
    """Words for the feature setting of a model (``trained``) or an extractor, for error messages."""
    if trained:
        if modality == "audio":
            return f"acoustic setting {obj.acoustic_setting!r}"
        if modality == "text":
            enc = _text_model(obj, _feature_config(obj))
            return f"text encoder {enc or 'bundled all-MiniLM-L6-v2'}"
        return f"visual setting keep_landmarks={bool(_feature_config(obj).get('keep_landmarks', False))}"
    cfg = obj.config
    if modality == "audio":
        return f"acoustic setting {cfg.acoustic!r}"
    if modality == "text":
        return f"text encoder {cfg.text_model or 'bundled all-MiniLM-L6-v2'}"
    return f"visual setting keep_landmarks={cfg.keep_landmarks}"


def _check_dims(
    model: LoadedModel,
    ext: Any,
    present: Sequence[str],
    columns: dict[str, list[str] | None] | None = None,
) -> dict[str, list[str] | None]:
    """The model's input dims (after taking its columns) must match what it was trained on, for the
    modalities it uses that are present; returns its columns per modality (see :func:`model_columns`).
    ConfigError names the model, the expected and the given dims and the settings involved."""
    want = dict(zip(MODALITIES, (int(x) for x in model.config.feature_dims), strict=True))
    cols: dict[str, list[str] | None] = dict(columns or {})
    for m in model.modalities:
        if m not in present or (m == "text" and getattr(model.config, "use_bert", False)):
            continue
        if m == "text":
            got = int(ext.text_encoder.dim)
        else:
            if m not in cols:
                cols[m] = model_columns(model, ext, m)
            names = cols[m]
            got = len(names) if names is not None else int((ext.acoustic if m == "audio" else ext.visual).dim)
        if got != want[m]:
            picked = " after taking its columns" if cols.get(m) is not None else ""
            raise ConfigError(
                f"model {model.name!r} expects {want[m]}-d {m} features but the extraction gives {got}-d{picked} "
                f"(extraction: {_setting_text(ext, m)}; model trained on {_setting_text(model, m, trained=True)}); "
                "the model was trained with other feature settings (see its config.json feature_spec)"
            )
    return cols


# ---- utterances ----------------------------------------------------------------------------------
def _given_transcript(value: str | Path | None, duration: float) -> tuple[str | None, list[Any], str | None]:
    """(text for the extractor, timed segments from a transcript file, transcript source label)."""
    if value is None:
        return None, [], None
    from dmd_pipeline.extractors.transcribe import SIDECAR_SUFFIXES, read_transcript_file

    p = Path(value)
    is_file = isinstance(value, Path) or (
        "\n" not in str(value) and p.suffix.lower() in SIDECAR_SUFFIXES and p.is_file()
    )
    if not is_file:
        return " ".join(str(value).split()), [], "given"
    tr = read_transcript_file(p, duration)
    text = " ".join(s.text.strip() for s in tr.segments if s.text.strip())
    if not text:
        raise InputError(p, "the transcript file holds no words", stage="transcript")
    timed = [s for s in tr.segments if s.end > s.start] if p.suffix.lower() != ".txt" else []
    return text, timed, f"file:{p}"


def _split_by_spans(words: list[Any], spans: list[Any]) -> list[Any]:
    """Regroup aligned words into the given timed segments (by word centre) — keeps a file's utterances."""
    from dmd_pipeline.extractors.transcribe import Segment

    out = [Segment(s.start, s.end, s.text, []) for s in spans]
    for w in words:
        c = 0.5 * (w.start + w.end)
        k = min(
            range(len(out)),
            key=lambda i: (
                0.0 if out[i].start <= c < out[i].end else min(abs(c - out[i].start), abs(c - out[i].end))
            ),
        )
        out[k].words.append(w)
    return [s for s in out if s.words or s.text.strip()]


def utterances(
    bundle: Any, duration: float, options: AnalyzeOptions, spans: list[Any] | None = None
) -> list[Any]:
    """The utterance segments to score, in time order; one whole-file segment when there are no words."""
    from dmd_pipeline.extractors.align import segment_transcript
    from dmd_pipeline.extractors.transcribe import Segment, Transcript

    segs = list(bundle.segments)
    if spans:
        segs = _split_by_spans(list(bundle.words), spans)
    segs = [s for s in segs if s.words]
    if not segs:
        return [Segment(0.0, duration, bundle.raw_text if bundle.words else "", [])]
    tr = Transcript(segs, str(bundle.metadata.get("transcript_source") or ""))
    cut = segment_transcript(
        tr,
        np.zeros(0, np.float32),
        16000,
        max_len_s=options.max_segment_s,
        min_len_s=options.min_segment_s,
        align=False,
    )
    out = []
    for s in cut:
        if s.words:
            start = min(s.start, s.words[0].start)
            end = max(s.end, s.words[-1].end)
        else:
            start, end = s.start, s.end
        start = min(max(0.0, float(start)), duration)
        end = min(max(start, float(end)), duration) if duration > 0 else max(start, float(end))
        out.append(Segment(start, end, s.text, list(s.words)))
    out.sort(key=lambda s: (s.start, s.end))
    return out


# ---- model inputs --------------------------------------------------------------------------------
def _slice(frames: Any, start: float, end: float) -> Any:
    """Frames whose time lies in [start, end); the nearest frame when none does; None stays None."""
    if frames is None or frames.n_frames == 0:
        return frames
    from dmd_pipeline.extractors.base import FrameFeatures

    t = frames.times
    mask = (t >= start) & (t < end)
    if not mask.any():
        mask = np.zeros(len(t), bool)
        mask[int(np.argmin(np.abs(t - 0.5 * (start + end))))] = True
    return FrameFeatures(frames.values[mask], t[mask], list(frames.names), {})


def segment_inputs(
    bundle: Any,
    seg: Any,
    ext: Any,
    model: LoadedModel,
    present: Sequence[str],
    columns: dict[str, list[str] | None] | None = None,
) -> dict[str, np.ndarray]:
    """One utterance's (or window's) model input (text or text_bert, audio, vision), unused modalities as
    zeros. Audio/vision frames are restricted to the columns the model was trained on (``columns``, see
    :func:`model_columns`; default: its recorded feature names) and shaped as it was trained (aligned or not).
    """
    from dmd_pipeline.features import FeatureBundle
    from dmd_pipeline.pipeline import select_columns, to_model_inputs

    cfg = model.config
    lt = int(cfg.seq_lens[0])
    dims = dict(zip(MODALITIES, (int(x) for x in cfg.feature_dims), strict=True))
    use = set(model.modalities)

    def cols(m: str) -> list[str] | None:
        return columns[m] if columns is not None and m in columns else model.feature_names(m)

    text = None
    if "text" in use and "text" in present and seg.words:
        text = ext.text_encoder.encode([w.text for w in seg.words], max_len=lt)
    acoustic = visual = None
    if "audio" in use and "audio" in present:  # a silent track is left out of present: zeros
        acoustic = select_columns(_slice(bundle.acoustic, seg.start, seg.end), cols("audio"), "audio")
    if "vision" in use and "vision" in present:
        visual = select_columns(_slice(bundle.visual, seg.start, seg.end), cols("vision"), "vision")
    sub = FeatureBundle(
        text=text,
        acoustic=acoustic,
        visual=visual,
        words=list(seg.words),
        segments=[seg],
        metadata={"dims": dims},
    )
    aligned = model.aligned if model.aligned is not None else bool(ext.config.aligned)
    inputs = to_model_inputs(sub, aligned=bool(aligned), seq_lens=tuple(cfg.seq_lens), dims=dims)
    key_text = "text_bert" if getattr(cfg, "use_bert", False) else "text"
    return {"text": inputs[key_text], "audio": inputs["audio"], "vision": inputs["vision"]}


def analysis_windows(start: float, end: float, window_s: float | None) -> list[tuple[float, float]]:
    """The spans a segment is scored over: itself, or, for a short-clip model (``window_s``) and a segment
    longer than 1.5 windows, ``n = round(duration / window_s)`` equal windows."""
    dur = end - start
    if not window_s or window_s <= 0 or dur <= 1.5 * window_s:
        return [(start, end)]
    n = max(1, int(round(dur / window_s)))
    edges = np.linspace(start, end, n + 1)
    return [(float(edges[k]), float(edges[k + 1])) for k in range(n)]


def input_span(start: float, end: float, window_s: float | None, duration: float) -> tuple[float, float]:
    """The audio/vision span a short-clip model sees for the window ``[start, end)``: widened around its
    centre to ``window_s`` (clamped to ``[0, duration]``) when shorter, as the model saw whole ~4 s clips
    with their pauses in training (a 1.5 s utterance alone would be stretched 2.5x in time by the
    fixed-length resampling); unchanged otherwise or without ``window_s``."""
    if not window_s or window_s <= 0 or end - start >= window_s or duration <= 0:
        return start, end
    if duration <= window_s:
        return 0.0, float(duration)
    centre = 0.5 * (start + end)
    a = min(max(0.0, centre - 0.5 * window_s), duration - window_s)
    return float(a), float(a + window_s)


def _window_segment(seg: Any, start: float, end: float, last: bool) -> Any:
    """A window of a segment as a Segment holding the words whose centre lies in it."""
    from dmd_pipeline.extractors.transcribe import Segment

    def inside(w: Any) -> bool:
        c = 0.5 * (w.start + w.end)
        return start <= c < end or (last and c >= end)

    words = [w for w in seg.words if inside(w)]
    return Segment(start, end, " ".join(w.text for w in words), words)


def run_model(
    model: LoadedModel, batch: list[dict[str, np.ndarray]], batch_size: int = 16
) -> dict[str, np.ndarray]:
    """Forward all utterances: ``logits`` (N, C), ``edges_homo``/``edges_hetero`` (N, 6)."""
    import torch

    system = model.system
    device = next(system.parameters()).device
    logits, homo, hetero = [], [], []
    for i in range(0, len(batch), batch_size):
        chunk = batch[i : i + batch_size]
        tens = {}
        for k in ("text", "audio", "vision"):
            arr = np.stack([b[k] for b in chunk])
            tens[k] = torch.from_numpy(arr).to(device)
            if k != "text" or arr.dtype.kind == "f":
                tens[k] = tens[k].float()
        with torch.inference_mode():
            out = system(tens["text"], tens["audio"], tens["vision"])
        logits.append(out["output_logit"].float().cpu().numpy())
        homo.append(out["edges_homo"].float().cpu().numpy().T)
        hetero.append(out["edges_hetero"].float().cpu().numpy().T)
    return {
        "logits": np.concatenate(logits),
        "edges_homo": np.concatenate(homo),
        "edges_hetero": np.concatenate(hetero),
    }


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
            core = s if len(wins) == 1 else _window_segment(s, a, b, k == len(wins) - 1)
            spans.append((i, core))
            wide = input_span(float(core.start), float(core.end), window, duration)
            fed.append(replace(core, start=wide[0], end=wide[1]))  # same words, wider span
    t0 = time.perf_counter()
    inputs = [segment_inputs(bundle, sp, ext, model, present, columns) for sp in fed]
    t1 = time.perf_counter()
    out = run_model(model, inputs, batch_size)
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


# ---- cues ----------------------------------------------------------------------------------------
def _col(frames: Any, *candidates: str) -> np.ndarray | None:
    """A column by exact name, else by case-insensitive suffix (``bs_mouthSmileLeft`` matches)."""
    if frames is None:
        return None
    lower = [n.lower() for n in frames.names]
    for c in candidates:
        if c in frames.names:
            return frames.values[:, frames.names.index(c)]
    for c in candidates:
        cl = c.lower()
        for i, n in enumerate(lower):
            if n.endswith(cl):
                return frames.values[:, i]
    return None


def _mean_cols(frames: Any, groups: Sequence[Sequence[str]]) -> np.ndarray | None:
    cols = [_col(frames, *g) for g in groups]
    cols = [c for c in cols if c is not None]
    return np.mean(np.stack(cols), axis=0) if cols else None


def _grid_mean(
    times: np.ndarray, values: np.ndarray, valid: np.ndarray, grid_edges: np.ndarray
) -> list[float | None]:
    """Mean of valid values per grid cell [e_k, e_k+1); None when a cell holds no valid frame (or a
    non-finite one). Vectorised (bincount): an hour of 100 Hz frames on a 2 Hz grid takes milliseconds."""
    n = len(grid_edges) - 1
    if n <= 0:
        return []
    idx = np.searchsorted(grid_edges, times, side="right") - 1
    inside = (idx >= 0) & (idx < n) & np.asarray(valid, bool)
    ii, v = idx[inside], np.asarray(values, np.float64)[inside]
    finite = np.isfinite(v)
    count = np.bincount(ii, minlength=n)
    bad = np.bincount(ii[~finite], minlength=n)
    sums = np.bincount(ii[finite], weights=v[finite], minlength=n)
    return [float(sums[k] / count[k]) if count[k] and not bad[k] else None for k in range(n)]


CUE_SPECS: dict[str, tuple[str, str]] = {
    "smile": ("blendshape score 0-1", "mean of the mouthSmileLeft/Right blendshapes (frames with a face)"),
    "brow_raise": ("blendshape score 0-1", "mean of browInnerUp, browOuterUpLeft/Right"),
    "brow_down": ("blendshape score 0-1", "mean of browDownLeft/Right"),
    "head_yaw": ("degrees", "head yaw from the facial transformation matrix (left/right turn)"),
    "head_pitch": ("degrees", "head pitch (nod up/down)"),
    "head_roll": ("degrees", "head roll (tilt)"),
    "f0": ("Hz", "fundamental frequency (YIN), mean over voiced frames"),
    "loudness": ("dB", "A-weighted spectral power in dB (relative loudness proxy)"),
}


CueFrames = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None]


def cue_frames(acoustic: Any, visual: Any, offset: float = 0.0) -> CueFrames:
    """Per cue, the (file times, values, valid) of the frames it is measured on (None without them)."""
    out: CueFrames = {}

    def add(name: str, frames: Any, values: np.ndarray | None, valid: np.ndarray | None) -> None:
        if frames is None or values is None or frames.n_frames == 0:
            out[name] = None
            return
        ok = np.ones(len(values), bool) if valid is None else np.asarray(valid, bool)
        out[name] = (np.asarray(frames.times, np.float64) + offset, np.asarray(values, np.float64), ok)

    face = None
    if visual is not None:
        fp = _col(visual, "face_present")
        face = (fp > 0.5) if fp is not None else np.ones(visual.n_frames, bool)
    add("smile", visual, _mean_cols(visual, [["mouthSmileLeft"], ["mouthSmileRight"]]), face)
    add(
        "brow_raise",
        visual,
        _mean_cols(visual, [["browInnerUp"], ["browOuterUpLeft"], ["browOuterUpRight"]]),
        face,
    )
    add("brow_down", visual, _mean_cols(visual, [["browDownLeft"], ["browDownRight"]]), face)
    for axis in ("yaw", "pitch", "roll"):
        add(
            f"head_{axis}",
            visual,
            _col(visual, f"head_{axis}_deg", f"head_{axis}", f"{axis}_deg", axis),
            face,
        )
    f0 = _col(acoustic, "f0_hz")
    voiced = _col(acoustic, "voiced")
    add("f0", acoustic, f0, None if f0 is None else ((voiced > 0.5) if voiced is not None else f0 > 0))
    add("loudness", acoustic, _col(acoustic, "loudness_db", "rms_db"), None)
    return out


def cues_on_grid(parts: Sequence[CueFrames], duration: float, rate_hz: float = 2.0) -> Cues:
    """Descriptive cues on a grid of cells of 1/rate_hz seconds (times = centres of the cells' parts inside
    the clip, so the last, partial cell's time never lies past the end), from the cue frames of one or
    several consecutive stretches of the file (:func:`cue_frames`)."""
    n = max(1, int(np.ceil(duration * rate_hz - 1e-9))) if duration > 0 else 0
    edges = np.arange(n + 1, dtype=np.float64) / rate_hz
    times = [round(float(0.5 * (edges[k] + min(edges[k + 1], duration))), 4) for k in range(n)]
    series: dict[str, CueSeries] = {}
    for name, (unit, desc) in CUE_SPECS.items():
        got = [p[name] for p in parts if p.get(name) is not None]
        if not got:
            vals: list[float | None] = [None] * n
        else:
            t = np.concatenate([g[0] for g in got])  # type: ignore[index]
            v = np.concatenate([g[1] for g in got])  # type: ignore[index]
            ok = np.concatenate([g[2] for g in got])  # type: ignore[index]
            vals = _grid_mean(t, v, ok, edges)
        series[name] = CueSeries(unit, desc, vals)
    return Cues(rate_hz=float(rate_hz), times=times, series=series)


def compute_cues(acoustic: Any, visual: Any, duration: float, rate_hz: float = 2.0) -> Cues:
    """Descriptive cues of one clip's frames (see :func:`cues_on_grid`)."""
    return cues_on_grid([cue_frames(acoustic, visual)], duration, rate_hz)


# ---- key frames ----------------------------------------------------------------------------------
def _face_boxes(visual: Any) -> np.ndarray | None:
    """Per-frame face boxes (T, 4) as fractions [x0, y0, x1, y1] from the visual extras, NaN without a face."""
    if visual is None:
        return None
    for key in ("face_boxes", "face_box", "boxes", "bbox"):
        if key in visual.extras:
            arr = np.asarray(visual.extras[key], dtype=np.float64)
            if arr.ndim == 2 and arr.shape[1] == 4 and len(arr) == visual.n_frames:
                return arr
    return None


Faces = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def face_frames(visual: Any, offset: float = 0.0) -> Faces | None:
    """(file times, has a face, face boxes or None) of the visual frames: what key frames are picked from."""
    if visual is None or visual.n_frames == 0:
        return None
    boxes = _face_boxes(visual)
    fp = _col(visual, "face_present")
    has = (fp > 0.5) if fp is not None else np.zeros(visual.n_frames, bool)
    if boxes is not None:
        has = has & np.isfinite(boxes).all(axis=1)
    return np.asarray(visual.times, np.float64) + offset, has, boxes


def key_frames_from(parts: Sequence[Faces | None], duration: float, n: int = 3) -> list[KeyFrame]:
    """``n`` frame times spread over the clip (preferring frames with a face) with their face boxes, from
    the face frames of one or several consecutive stretches of the file (:func:`face_frames`)."""
    got = [p for p in parts if p is not None]
    if n <= 0 or duration <= 0 or not got:
        return []
    times = np.concatenate([g[0] for g in got])
    has = np.concatenate([g[1] for g in got])
    boxes = np.concatenate([g[2] for g in got]) if all(g[2] is not None for g in got) else None
    cand = np.flatnonzero(has) if has.any() else np.arange(len(times))
    picks = cand[np.unique(np.linspace(0, len(cand) - 1, num=min(n, len(cand))).round().astype(int))]
    out = []
    for i in picks:
        box = None
        if boxes is not None and has[i]:
            b = np.clip(boxes[i], 0.0, 1.0)
            box = [round(float(x), 4) for x in b]
        out.append(KeyFrame(time=round(float(times[i]), 4), box=box))
    return out


def _word(w: Any, seg_start: float, seg_end: float, offset: float = 0.0) -> WordResult:
    """A word with its times clamped into its segment (which lies inside the file's duration), moved by
    ``offset`` seconds (a streaming window's start)."""
    start = min(max(float(w.start), seg_start), seg_end)
    end = min(max(float(w.end), start), seg_end)
    return WordResult(str(w.text), round(start + offset, 4), round(end + offset, 4), str(w.source))


# ---- the analysis --------------------------------------------------------------------------------
#: Why a model whose modalities are all absent has nothing to score.
_ABSENT: dict[str, str] = {
    "text": "no words (no transcript, or none recognised)",
    "audio": "no audio track",
    "vision": "no video track",
}


#: Seconds of detected speech (Silero VAD, ``metadata["speech_s"]`` of a bundle) below which a voice model
#: has no evidence to answer from and says ``n/a``. Measured (benchmarks/voice_evidence.py, BENCHMARKS.md):
#: 30 s of tones, chords, sweeps, beeps, clicks, noise, hum and silence all give 0.00 s, speech cut to 0.3 s
#: at most 0.06 s; the shortest real utterances, single Turkish words (TurEV-DB), give 0.22-0.70 s.
MIN_VOICE_SPEECH_S = 0.2


#: An audio track whose frames never exceed this RMS level (dBFS) is digital silence (e.g. the "video-only"
#: RAVDESS files carry a -91 dBFS track): no model scores it as a voice.
SILENT_AUDIO_DBFS = -70.0


def silent_audio_peak(acoustic: Any) -> float | None:
    """The peak RMS level (dBFS) of an audio track that is digital silence (never above
    :data:`SILENT_AUDIO_DBFS`), else None (also when the frames carry no ``rms_db`` column)."""
    if acoustic is None or acoustic.n_frames == 0:
        return None
    rms = _col(acoustic, "rms_db")
    if rms is None:
        return None
    peak = float(np.max(rms))
    return peak if peak < SILENT_AUDIO_DBFS else None


def _run_names(models: Sequence[LoadedModel]) -> list[str]:
    """Model names made unique (``name``, ``name#2``...): they key ``segments[].predictions``."""
    out: list[str] = []
    for m in models:
        name, k = m.name, 2
        while name in out:
            name, k = f"{m.name}#{k}", k + 1
        out.append(name)
    return out


def model_notes(
    model: LoadedModel, present: Sequence[str], absent: dict[str, str] | None = None
) -> tuple[list[str], str | None]:
    """(notes on zero-filled inputs, the reason it has nothing to score or None) of a model on a file;
    ``absent`` overrides the words for why a modality is missing (e.g. a silent audio track)."""
    reasons = {**_ABSENT, **(absent or {})}
    used = [m for m in MODALITIES if m in model.modalities and m in present]
    notes = []
    unused_present = [m for m in present if m not in model.modalities]
    if unused_present:
        notes.append(
            f"the model was trained with {'+'.join(model.modalities)} only: "
            f"{', '.join(unused_present)} present but fed as zeros (still used for the descriptive cues)"
        )
    missing = [m for m in model.modalities if m not in present]
    if missing and used:
        notes.append(f"the model uses {', '.join(missing)} but the file has none: fed as zeros")
    nothing = None
    if not used:
        why = " and ".join(reasons[m] for m in missing)
        nothing = f"{why}: the {source_word(list(model.modalities))} model has nothing to score"
    return notes, nothing


@dataclass
class _Part:
    """What one stretch of a file (the whole file, or one window of a streamed one) adds to the result:
    scored segments with file times, per-model scores, and the few per-frame series the cues and key frames
    need (a streamed file keeps no other frames once its window is scored)."""

    meta: dict[str, Any]
    duration: float  # of this stretch (s)
    present: list[str]
    silent_peak: float | None
    speech_s: float | None  # seconds of detected speech (None: not measured)
    segments: list[SegmentResult]
    durations: list[float]  # unrounded segment durations: the aggregation weights
    scores: list[ModelScores]
    used: list[list[str]]  # per model: the modalities it was fed here
    n_words: int
    word_sources: dict[str, int]
    cue_frames: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None]
    faces: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None  # (times, has face, boxes)
    timings: dict[str, float]


def _score_part(
    path: Path,
    bundle: Any,
    models: Sequence[LoadedModel],
    names: Sequence[str],
    ext: Any,
    options: AnalyzeOptions,
    spans: list[Any],
    offset: float = 0.0,
) -> _Part:
    """Score one bundle (times relative to ``offset`` seconds into the file) with every model."""
    from dmd_pipeline.features import word_source_counts

    meta = bundle.metadata
    timings = {k: float(v) for k, v in (meta.get("timings") or {}).items()}
    mi = meta.get("media") or {}
    duration = float(meta.get("source", {}).get("duration") or mi.get("duration") or 0.0)
    present = list(bundle.modalities)
    if not present:
        raise InputError(path, "no usable modality: no audio, no video and no words", stage="analyze")
    # what the models may score: a digitally silent audio track is no voice
    scorable = list(present)
    peak = silent_audio_peak(bundle.acoustic) if "audio" in present else None
    speech = meta.get("speech_s")
    speech = float(speech) if speech is not None and "audio" in present else None
    if peak is not None or (speech is not None and speech < MIN_VOICE_SPEECH_S):
        scorable.remove("audio")  # no voice to score: digital silence, or too little speech
    columns = [_check_dims(m, ext, scorable) for m in models]

    t0 = time.perf_counter()
    segs = utterances(bundle, duration, options, spans)
    timings["segment"] = time.perf_counter() - t0

    scores: list[ModelScores] = []
    used_by: list[list[str]] = []
    timings["segment_features"] = timings["model"] = 0.0
    for k, (m, name) in enumerate(zip(models, names, strict=True)):
        used = [x for x in MODALITIES if x in m.modalities and x in scorable]
        if used or k == 0:  # the primary always runs: its graph edges describe the segments (as in 1.0)
            sc = score_model(
                m, bundle, segs, ext, scorable, columns[k], options.batch_size, predict=bool(used)
            )
        else:
            sc = ModelScores([Prediction() for _ in segs], [None] * len(segs), [])
        timings["segment_features"] += sc.seconds_features
        timings["model"] += sc.seconds_model
        timings[f"model:{name}"] = sc.seconds_features + sc.seconds_model
        if offset:
            sc.windows = [
                replace(w, start=round(w.start + offset, 4), end=round(w.end + offset, 4)) for w in sc.windows
            ]
        scores.append(sc)
        used_by.append(used)

    seg_results = []
    for i, s in enumerate(segs):
        seg_results.append(
            SegmentResult(
                index=i,
                start=round(float(s.start) + offset, 4),
                end=round(float(s.end) + offset, 4),
                text=str(s.text),
                # With none of a model's modalities present its output only reflects zero inputs:
                # no score is given rather than a number that looks meaningful.
                prediction=scores[0].segments[i],
                words=[_word(w, s.start, s.end, offset) for w in s.words],
                edges=scores[0].edges[i],
                predictions={name: sc.segments[i] for name, sc in zip(names, scores, strict=True)},
            )
        )
    t0 = time.perf_counter()
    cues = cue_frames(bundle.acoustic, bundle.visual, offset)
    faces = face_frames(bundle.visual, offset)
    timings["cues"] = time.perf_counter() - t0
    words = list(bundle.words)
    return _Part(
        meta=meta,
        duration=duration,
        present=present,
        silent_peak=peak,
        speech_s=speech,
        segments=seg_results,
        durations=[max(0.0, float(s.end - s.start)) for s in segs],
        scores=scores,
        used=used_by,
        n_words=len(words),
        word_sources={str(k): int(v) for k, v in word_source_counts(words).items()},
        cue_frames=cues,
        faces=faces,
        timings=timings,
    )


def _stream_spans(
    path: Path, options: AnalyzeOptions, duration: float
) -> tuple[bool, list[Any], str | None, str | None]:
    """Whether to analyse ``path`` in streaming windows, the timed transcript segments that then give each
    window its words, that transcript's source label, and a note when a long file cannot be streamed."""
    window = float(options.stream_window_s or 0.0)
    if window <= 0 or duration <= 1.5 * window:
        return False, [], None, None
    from dmd_pipeline.extractors.transcribe import find_sidecar, read_transcript_file

    if options.transcript is not None:
        _text, timed, label = _given_transcript(options.transcript, duration)
    else:
        side = find_sidecar(path)
        if side is None:
            return True, [], None, None  # speech recognition, window by window
        tr = read_transcript_file(side, duration)
        timed = [x for x in tr.segments if x.end > x.start] if side.suffix.lower() != ".txt" else []
        label = f"sidecar:{side}"
    timed = [x for x in timed if x.text.strip()]
    if timed:
        return True, timed, label, None
    note = (
        f"the file is {duration / 60:.0f} min long but its transcript has no segment times, so it was analysed "
        "whole, not in streaming windows (memory grows with the length; give an .srt/.vtt/.json transcript)"
    )
    return False, [], None, note


def analyze_clip(
    path: str | Path,
    model: LoadedModel | Sequence[LoadedModel] | None = None,
    options: AnalyzeOptions | None = None,
) -> AnalysisResult:
    """Analyse one media file with one or several loaded models (default: every bundled default model).

    The file is extracted once, with settings that serve every model (:func:`get_extractor`); the
    transcript's utterances are shared; each model scores them from its own columns (and windows, for a
    short-clip model). The first model is the primary one (``model``/``overall``/``segments[].prediction``).
    A file longer than 1.5 x ``options.stream_window_s`` is streamed: extracted and scored window by window
    (:meth:`~dmd_pipeline.pipeline.Extractor.extract_stream`), so memory does not grow with its length.
    Raises InputError on bad media, ConfigError when the models' feature settings cannot be served.
    """
    from dmd_pipeline import media
    from dmd_pipeline.pipeline import spans_in
    from dmd_pipeline.utils import path_problem

    t_all = time.perf_counter()
    options = options or AnalyzeOptions()
    timings: dict[str, float] = {}
    if model is None:
        from dmd_pipeline.analysis.registry import load_models

        t0 = time.perf_counter()
        models = load_models(None)
        timings["model_load"] = time.perf_counter() - t0
    else:
        models = as_model_list(model)
    path = Path(path)
    ext = get_extractor(models, options)
    names = _run_names(models)

    problem = path_problem(path)  # loops, dangling links, FIFOs, devices: never opened
    if problem is not None:
        raise InputError(path, problem)
    try:
        info = media.probe(path)  # remembered: the extractor's own probe of the file costs nothing
    except InputError as exc:
        exc.stage = "probe"  # as when the extractor probes it
        raise
    stream, stream_spans, stream_label, note = _stream_spans(path, options, float(info.duration))
    loaded_before = set(ext.load_timings)
    parts: list[_Part] = []
    source_label = None
    if stream:
        source_label = stream_label
        window = float(options.stream_window_s)
        for bundle in ext.extract_stream(path, window_s=window, spans=stream_spans or None):
            src = bundle.metadata["source"]
            a, b = float(src["start"]), float(src["end"])
            own = [replace(x, start=x.start - a, end=x.end - a) for x in spans_in(stream_spans, a, b)]
            parts.append(_score_part(path, bundle, models, names, ext, options, own, a))
            del bundle  # the window's frames go; only its scores and cue series stay
        duration = float(info.duration)
    else:
        given, spans = None, []
        if options.transcript is not None:
            given, spans, source_label = _given_transcript(options.transcript, float(info.duration))
        bundle = ext.extract_clip(path, transcript=given)
        parts.append(_score_part(path, bundle, models, names, ext, options, spans))
        duration = parts[0].duration
        del bundle
    for k, v in ext.load_timings.items():
        if k not in loaded_before:
            timings[f"load_{k}"] = float(v)
    result = _assemble(path, models, names, parts, duration, options, timings, source_label)
    if note:
        result.warnings.append(note)
    if stream:
        result.warnings.append(
            f"analysed in {len(parts)} streaming windows of about {options.stream_window_s:.0f} s "
            "(cut in pauses); features and scores are per window"
        )
    result.warnings = rank_warnings(result.warnings)  # one line per kind, the important ones first
    result.timings["total"] = round(time.perf_counter() - t_all, 4)
    return result


def _assemble(
    path: Path,
    models: Sequence[LoadedModel],
    names: Sequence[str],
    parts: Sequence[_Part],
    duration: float,
    options: AnalyzeOptions,
    timings: dict[str, float],
    source_label: str | None,
) -> AnalysisResult:
    """One result from the parts of a file, in time order."""
    from dmd_pipeline import __version__

    first = parts[0].meta
    mi = first.get("media") or {}
    present = [x for x in MODALITIES if any(x in p.present for p in parts)]
    with_audio = [p for p in parts if "audio" in p.present]
    silent = [p for p in with_audio if p.silent_peak is not None]
    scorable, absent = list(present), {}
    warnings: list[str] = []
    for p in parts:
        for n in p.meta.get("notes") or []:
            if str(n) not in warnings:
                warnings.append(str(n))
    quiet = [
        p
        for p in with_audio
        if p.silent_peak is None and p.speech_s is not None and p.speech_s < MIN_VOICE_SPEECH_S
    ]
    headline_why: dict[str, str] = {}
    # said once per model that uses audio (below); a line of its own only when no model does
    audio_line = not any("audio" in m.modalities for m in models)
    if with_audio and len(silent) == len(with_audio):
        peak = max(float(p.silent_peak) for p in silent)  # type: ignore[arg-type]
        scorable.remove("audio")
        absent["audio"] = f"the audio track is silent (peak {peak:.0f} dBFS)"
        if audio_line:
            warnings.append(f"{absent['audio']}: treated as no audio by the models (cues still measured)")
    elif with_audio and len(silent) + len(quiet) == len(with_audio):
        speech = sum(float(p.speech_s or 0.0) for p in quiet)
        scorable.remove("audio")
        headline_why["audio"] = "speech"
        absent["audio"] = (
            f"no speech detected ({speech:.2f} s; a voice needs at least {MIN_VOICE_SPEECH_S:g} s)"
        )
        if audio_line:
            warnings.append(f"{absent['audio']}: the voice is not scored (cues still measured)")
    elif silent or quiet:
        warnings.append(
            f"no speech (digital silence or under {MIN_VOICE_SPEECH_S:g} s of detected speech) in "
            f"{len(silent) + len(quiet)} of {len(parts)} windows: no voice is scored there"
        )
    for p in parts:
        for k, v in p.timings.items():
            timings[k] = timings.get(k, 0.0) + v

    runs: list[ModelRun] = []
    primary_notes: list[str] = []
    for k, (m, name) in enumerate(zip(models, names, strict=True)):
        used = [x for x in MODALITIES if any(x in p.used[k] for p in parts)]
        notes, nothing = model_notes(m, scorable, absent)
        preds = [pr for p in parts for pr in p.scores[k].segments]
        overall = (
            weighted_prediction(m, preds, [d for p in parts for d in p.durations]) if used else Prediction()
        )
        info = m.info()
        info.name = name
        run = ModelRun.from_info(
            info,
            overall,
            used,
            [x for x in MODALITIES if x not in used],
            "; ".join(filter(None, [nothing, *notes])),
        )
        base = 0
        for p in parts:
            run.windows.extend(replace(w, segment=w.segment + base) for w in p.scores[k].windows)
            base += len(p.segments)
        runs.append(run)
        if k == 0:  # how the model was built: in models[].note and modalities.note, not in the warnings
            primary_notes = notes
        if nothing:
            warnings.append(f"{name}: {nothing} (its predictions are null; the cues are still measured)")

    seg_results = [replace(s, index=i) for i, s in enumerate(s for p in parts for s in p.segments)]
    t0 = time.perf_counter()
    cues = cues_on_grid([p.cue_frames for p in parts], duration, options.cue_rate_hz)
    key_frames = key_frames_from([p.faces for p in parts], duration, options.key_frames)
    timings["cues"] = timings.get("cues", 0.0) + time.perf_counter() - t0
    sources: dict[str, int] = {}
    for p in parts:
        for key, v in p.word_sources.items():
            sources[key] = sources.get(key, 0) + v
    primary = runs[0]
    return AnalysisResult(
        file=os.path.abspath(path),  # as the user gave it (absolute; symlinks kept)
        duration=round(duration, 4),
        media=MediaSummary(
            has_audio=bool(mi.get("has_audio", False)),
            has_video=bool(mi.get("has_video", False)),
            width=int(mi.get("width") or 0),
            height=int(mi.get("height") or 0),
            fps=float(mi.get("fps") or 0.0),
        ),
        overall=primary.overall,
        segments=seg_results,
        modalities=ModalityInfo(
            present=present,
            model_trained_with=list(models[0].modalities),
            used=list(primary.modalities_used),
            zero_filled=list(primary.zero_filled),
            note="; ".join(primary_notes),
        ),
        transcript=TranscriptInfo(
            source=str(source_label or first.get("transcript_source") or "none"),
            n_words=sum(p.n_words for p in parts),
            word_time_sources=sources,
        ),
        cues=cues,
        model=primary.info,
        key_frames=key_frames,
        timings={k: round(max(0.0, float(v)), 4) for k, v in timings.items()},
        warnings=warnings,
        tool_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        models=runs,
        headline=make_headline(runs, scorable, headline_why),
    )
