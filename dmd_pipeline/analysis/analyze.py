"""One media file -> :class:`~dmd_pipeline.analysis.result.AnalysisResult`.

Steps: extract the whole file once (``pipeline.Extractor``: probe, audio, transcript, word alignment,
acoustic and visual frames), cut the transcript into utterances (``align.segment_transcript``), build each
utterance's model input (its words re-encoded by the text encoder, the frames inside its span pooled onto
the words or resampled, as the model was trained), score all utterances in one batched forward pass, and
aggregate (duration-weighted mean). Modalities the model was not trained with are fed as zeros, and the
result says so. Descriptive cues (smile, brows, head pose, pitch, loudness) are resampled onto a regular
grid (default 2 Hz) from the same frames.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.analysis.registry import LoadedModel, load_model
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
    Prediction,
    SegmentResult,
    TranscriptInfo,
    WordResult,
    clip_score,
    label2,
    label7,
    label7_index,
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


# ---- extractor set-up --------------------------------------------------------------------------------
def _feature_config(model: LoadedModel) -> dict[str, Any]:
    """The extraction settings recorded with the model (``meta.feature_spec.config``), if any."""
    from dmd_pipeline.analysis.registry import dataset_meta

    spec = dataset_meta(model.meta)
    cfg = spec.get("config")
    if not isinstance(cfg, dict):  # a model trained on a `dmd extract` pickle: one level further down
        inner = spec.get("feature_spec")
        cfg = inner.get("config") if isinstance(inner, dict) else None
    return dict(cfg) if isinstance(cfg, dict) else {}


def get_extractor(model: LoadedModel, options: AnalyzeOptions) -> Any:
    """A ``pipeline.Extractor`` matching the model's features; built once per (model, settings) and kept."""
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    spec = _feature_config(model)
    cfg = model.config
    fps = options.fps or spec.get("fps") or (10.0 if "vision" in model.modalities else 4.0)
    kw: dict[str, Any] = {
        "fps": float(fps),
        "asr": options.asr,
        "aligned": bool(model.aligned if model.aligned is not None else spec.get("aligned", True)),
        "seq_lens": tuple(int(x) for x in cfg.seq_lens),
    }
    for key in ("text_model", "face_model", "whisper_model", "keep_landmarks", "max_side", "sample_rate"):
        if key in spec:
            kw[key] = spec[key]
    if getattr(cfg, "use_bert", False) and getattr(cfg, "text_encoder", None) and "text_model" not in spec:
        kw["text_model"] = cfg.text_encoder
    key = repr(sorted(kw.items()))
    cache = model.extra.setdefault("extractors", {})
    if key not in cache:
        cache[key] = Extractor(ExtractionConfig(**kw), cache=None)
    return cache[key]


def _check_dims(model: LoadedModel, ext: Any, present: Sequence[str]) -> None:
    """The extractor's feature dims must match what the model was trained on (for the modalities it uses)."""
    want = dict(zip(MODALITIES, (int(x) for x in model.config.feature_dims), strict=True))
    getters = {
        "text": lambda: ext.text_encoder.dim,
        "audio": lambda: ext.acoustic.dim,
        "vision": lambda: ext.visual.dim,
    }
    for m in model.modalities:
        if m not in present or (m == "text" and getattr(model.config, "use_bert", False)):
            continue
        got = int(getters[m]())
        if got != want[m]:
            raise ConfigError(
                f"model {model.name!r} expects {want[m]}-d {m} features but the extractor gives {got}-d; "
                "the model was trained with other feature settings (see its config.json feature_spec)"
            )


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
    bundle: Any, seg: Any, ext: Any, model: LoadedModel, present: Sequence[str]
) -> dict[str, np.ndarray]:
    """One utterance's model input (text or text_bert, audio, vision), unused modalities as zeros."""
    from dmd_pipeline.features import FeatureBundle
    from dmd_pipeline.pipeline import to_model_inputs

    cfg = model.config
    lt = int(cfg.seq_lens[0])
    dims = dict(zip(MODALITIES, (int(x) for x in cfg.feature_dims), strict=True))
    use = set(model.modalities)
    text = None
    if "text" in use and "text" in present and seg.words:
        text = ext.text_encoder.encode([w.text for w in seg.words], max_len=lt)
    sub = FeatureBundle(
        text=text,
        acoustic=_slice(bundle.acoustic, seg.start, seg.end) if "audio" in use else None,
        visual=_slice(bundle.visual, seg.start, seg.end) if "vision" in use else None,
        words=list(seg.words),
        segments=[seg],
        metadata={"dims": dims},
    )
    inputs = to_model_inputs(sub, aligned=bool(ext.config.aligned), seq_lens=tuple(cfg.seq_lens), dims=dims)
    key_text = "text_bert" if getattr(cfg, "use_bert", False) else "text"
    return {"text": inputs[key_text], "audio": inputs["audio"], "vision": inputs["vision"]}


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


def aggregate(model: LoadedModel, segs: Sequence[SegmentResult]) -> Prediction:
    """Duration-weighted mean of the segment scores (regression) or probabilities (classification)."""
    w = np.array([max(s.duration, 1e-3) for s in segs], dtype=np.float64)
    w = w / w.sum()
    if model.task == "regression":
        score = float(np.dot(w, [s.prediction.score for s in segs]))
        raw = float(np.dot(w, [s.prediction.raw_score for s in segs]))
        score = clip_score(score)
        return Prediction(score, raw, label7(score), label7_index(score), label2(score))
    names = model.class_names or []
    mat = np.array([[s.prediction.probabilities[n] for n in names] for s in segs])
    return Prediction.from_probabilities(dict(zip(names, (w @ mat).tolist(), strict=True)))


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
    """Mean of valid values per grid cell [e_k, e_k+1); None when a cell holds no valid frame."""
    out: list[float | None] = []
    idx = np.searchsorted(grid_edges, times, side="right") - 1
    for k in range(len(grid_edges) - 1):
        m = (idx == k) & valid
        out.append(float(np.mean(values[m])) if m.any() and np.isfinite(values[m]).all() else None)
    return out


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


def compute_cues(acoustic: Any, visual: Any, duration: float, rate_hz: float = 2.0) -> Cues:
    """Descriptive cues on a grid of cells of 1/rate_hz seconds (times = centres of the cells' parts inside
    the clip, so the last, partial cell's time never lies past the end)."""
    n = max(1, int(np.ceil(duration * rate_hz - 1e-9))) if duration > 0 else 0
    edges = np.arange(n + 1, dtype=np.float64) / rate_hz
    times = [round(float(0.5 * (edges[k] + min(edges[k + 1], duration))), 4) for k in range(n)]
    series: dict[str, CueSeries] = {}

    def add(name: str, frames: Any, values: np.ndarray | None, valid: np.ndarray | None) -> None:
        unit, desc = CUE_SPECS[name]
        if frames is None or values is None or frames.n_frames == 0:
            vals: list[float | None] = [None] * n
        else:
            ok = np.ones(len(values), bool) if valid is None else valid
            vals = _grid_mean(frames.times, np.asarray(values, np.float64), ok, edges)
        series[name] = CueSeries(unit, desc, vals)

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
    return Cues(rate_hz=float(rate_hz), times=times, series=series)


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


def pick_key_frames(visual: Any, duration: float, n: int = 3) -> list[KeyFrame]:
    """``n`` frame times spread over the clip (preferring frames with a face) with their face boxes."""
    if n <= 0 or duration <= 0:
        return []
    if visual is None or visual.n_frames == 0:
        return []
    boxes = _face_boxes(visual)
    fp = _col(visual, "face_present")
    has = (fp > 0.5) if fp is not None else np.zeros(visual.n_frames, bool)
    if boxes is not None:
        has = has & np.isfinite(boxes).all(axis=1)
    cand = np.flatnonzero(has) if has.any() else np.arange(visual.n_frames)
    picks = cand[np.unique(np.linspace(0, len(cand) - 1, num=min(n, len(cand))).round().astype(int))]
    out = []
    for i in picks:
        box = None
        if boxes is not None and has[i]:
            b = np.clip(boxes[i], 0.0, 1.0)
            box = [round(float(x), 4) for x in b]
        out.append(KeyFrame(time=round(float(visual.times[i]), 4), box=box))
    return out


def _word(w: Any, seg_start: float, seg_end: float) -> WordResult:
    """A word with its times clamped into its segment (which lies inside the file's duration)."""
    start = min(max(float(w.start), seg_start), seg_end)
    end = min(max(float(w.end), start), seg_end)
    return WordResult(str(w.text), round(start, 4), round(end, 4), str(w.source))


# ---- the analysis --------------------------------------------------------------------------------
def analyze_clip(
    path: str | Path, model: LoadedModel | None = None, options: AnalyzeOptions | None = None
) -> AnalysisResult:
    """Analyse one media file with a loaded model (default: the bundled one). Raises InputError on bad media."""
    from dmd_pipeline import __version__
    from dmd_pipeline.features import word_source_counts

    t_all = time.perf_counter()
    options = options or AnalyzeOptions()
    timings: dict[str, float] = {}
    if model is None:
        t0 = time.perf_counter()
        model = load_model(None)
        timings["model_load"] = time.perf_counter() - t0
    path = Path(path)
    ext = get_extractor(model, options)

    duration_hint = None
    spans: list[Any] = []
    given, source_label = None, None
    if options.transcript is not None:
        from dmd_pipeline import media

        duration_hint = media.probe(path).duration
        given, spans, source_label = _given_transcript(options.transcript, duration_hint)
    loaded_before = set(ext.load_timings)
    bundle = ext.extract_clip(path, transcript=given)
    for k, v in ext.load_timings.items():
        if k not in loaded_before:
            timings[f"load_{k}"] = float(v)
    meta = bundle.metadata
    for k, v in (meta.get("timings") or {}).items():
        timings[k] = float(v)
    mi = meta.get("media") or {}
    duration = float(meta.get("source", {}).get("duration") or mi.get("duration") or 0.0)
    present = list(bundle.modalities)
    if not present:
        raise InputError(path, "no usable modality: no audio, no video and no words", stage="analyze")
    _check_dims(model, ext, present)

    t0 = time.perf_counter()
    segs = utterances(bundle, duration, options, spans)
    timings["segment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    inputs = [segment_inputs(bundle, s, ext, model, present) for s in segs]
    timings["segment_features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = run_model(model, inputs, options.batch_size)
    timings["model"] = time.perf_counter() - t0

    used = [m for m in MODALITIES if m in model.modalities and m in present]
    seg_results = []
    for i, s in enumerate(segs):
        edges = GraphEdges(
            homo={e: float(v) for e, v in zip(EDGE_NAMES, np.nan_to_num(out["edges_homo"][i]), strict=True)},
            hetero={
                e: float(v) for e, v in zip(EDGE_NAMES, np.nan_to_num(out["edges_hetero"][i]), strict=True)
            },
        )
        seg_results.append(
            SegmentResult(
                index=i,
                start=round(float(s.start), 4),
                end=round(float(s.end), 4),
                text=str(s.text),
                # With none of the model's modalities present the output only reflects zero inputs:
                # no score is given rather than a number that looks meaningful.
                prediction=_prediction(model, out["logits"][i]) if used else Prediction(),
                words=[_word(w, s.start, s.end) for w in s.words],
                edges=edges,
            )
        )
    overall = aggregate(model, seg_results) if used else Prediction()

    t0 = time.perf_counter()
    cues = compute_cues(bundle.acoustic, bundle.visual, duration, options.cue_rate_hz)
    key_frames = pick_key_frames(bundle.visual, duration, options.key_frames)
    timings["cues"] = time.perf_counter() - t0

    zero = [m for m in MODALITIES if m not in used]
    notes = []
    unused_present = [m for m in present if m not in model.modalities]
    if unused_present:
        notes.append(
            f"the model was trained with {'+'.join(model.modalities)} only: "
            f"{', '.join(unused_present)} present but fed as zeros (still used for the descriptive cues)"
        )
    missing = [m for m in model.modalities if m not in present]
    if missing:
        notes.append(f"the model uses {', '.join(missing)} but the file has none: fed as zeros")
    warnings = [str(n) for n in meta.get("notes") or []] + notes
    if not used:
        warnings.append(
            "no modality the model uses is present: no score is given (score and labels are null); "
            "the descriptive cues are still measured"
        )

    words = list(bundle.words)
    timings["total"] = time.perf_counter() - t_all
    return AnalysisResult(
        file=str(path.resolve()),
        duration=round(duration, 4),
        media=MediaSummary(
            has_audio=bool(mi.get("has_audio", False)),
            has_video=bool(mi.get("has_video", False)),
            width=int(mi.get("width") or 0),
            height=int(mi.get("height") or 0),
            fps=float(mi.get("fps") or 0.0),
        ),
        overall=overall,
        segments=seg_results,
        modalities=ModalityInfo(
            present=present,
            model_trained_with=list(model.modalities),
            used=used,
            zero_filled=zero,
            note="; ".join(notes),
        ),
        transcript=TranscriptInfo(
            source=str(source_label or meta.get("transcript_source") or "none"),
            n_words=len(words),
            word_time_sources={str(k): int(v) for k, v in word_source_counts(words).items()},
        ),
        cues=cues,
        model=model.info(),
        key_frames=key_frames,
        timings={k: round(max(0.0, float(v)), 4) for k, v in timings.items()},
        warnings=warnings,
        tool_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
