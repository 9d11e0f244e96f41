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

The jobs live in their own modules: :mod:`~dmd_pipeline.analysis.extraction` (the one extractor and each
model's columns), :mod:`~dmd_pipeline.analysis.utterances` (what is scored), :mod:`~dmd_pipeline.analysis.scoring`
(one model over the utterances) and :mod:`~dmd_pipeline.analysis.cues` (cues and key frames); this module
runs them over a whole file or its streaming windows and assembles the result. Their public names are
importable from here as before.
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

from dmd_pipeline import __version__, media
from dmd_pipeline.analysis import registry
from dmd_pipeline.analysis.analysis_options import AnalyzeOptions
from dmd_pipeline.analysis.cues import (  # noqa: F401 - re-exported: the analysis API
    CUE_SPECS,
    SILENT_AUDIO_DBFS,
    compute_cues,
    cue_frames,
    cues_on_grid,
    face_frames,
    key_frames_from,
    silent_audio_peak,
)
from dmd_pipeline.analysis.extraction import (  # noqa: F401 - re-exported: the analysis API
    ACOUSTIC_RATES_HZ,
    acoustic_setting,
    as_model_list,
    get_extractor,
    model_columns,
)
from dmd_pipeline.analysis.face import (
    FaceFrames,
    face_channel,
    face_frames_of,
    face_run,
    face_timeline,
    join_face_frames,
    with_choice,
)
from dmd_pipeline.analysis.fused import fuse_result
from dmd_pipeline.analysis.messages import rank_warnings
from dmd_pipeline.analysis.photo import analyze_photo
from dmd_pipeline.analysis.registry import LoadedModel
from dmd_pipeline.analysis.result import (
    MODALITIES,
    AnalysisResult,
    MediaSummary,
    ModalityInfo,
    ModelRun,
    Prediction,
    SegmentResult,
    TranscriptInfo,
    WordResult,
    calibration_summary,
    make_headline,
    source_word,
)
from dmd_pipeline.analysis.scoring import (  # noqa: F401 - re-exported: the analysis API
    ModelScores,
    aggregate,
    score_model,
    weighted_prediction,
)
from dmd_pipeline.analysis.utterances import (  # noqa: F401 - re-exported: the analysis API
    analysis_windows,
    given_transcript,
    input_span,
    plan_streaming,
    utterances,
)
from dmd_pipeline.errors import ConfigError, InputError
from dmd_pipeline.extractors import language as lang_id
from dmd_pipeline.extractors.words import Word
from dmd_pipeline.face.speaking import compose
from dmd_pipeline.features import FeatureBundle, word_source_counts
from dmd_pipeline.pipeline import Extractor, spans_in
from dmd_pipeline.utils import path_problem

__all__ = [
    "AnalyzeOptions",
    "acoustic_setting",
    "aggregate",
    "analysis_windows",
    "analyze_clip",
    "compute_cues",
    "get_extractor",
    "input_span",
    "model_columns",
    "model_notes",
    "score_model",
    "utterances",
    "weighted_prediction",
]


def _word(w: Word, seg_start: float, seg_end: float, offset: float = 0.0) -> WordResult:
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


def split_face_model(models: Sequence[Any]) -> tuple[list[LoadedModel], Any]:
    """(the DMD models, the face-expression model or None) of the loaded models (registry.load_models).

    ConfigError for no DMD model (a video's analysis is built on one: segments, transcript) or for more
    than one face model (one face channel per result)."""
    faces = [m for m in models if getattr(m, "kind", "dmd") == "face"]
    others = [m for m in models if getattr(m, "kind", "dmd") != "face"]
    if faces and not others:
        raise ConfigError(
            "a face model alone reads photos only: a video or audio file needs a DMD model too "
            "(--model NAME, e.g. the bundled defaults)"
        )
    dmd = as_model_list(others)
    if len(faces) > 1:
        raise ConfigError(
            f"one face model at a time (got {', '.join(m.name for m in faces)}): the result has one face channel"
        )
    return dmd, (faces[0] if faces else None)


def _unique(name: str, taken: Sequence[str]) -> str:
    """``name``, or ``name#2``, ``name#3``... when it is taken."""
    out, k = name, 2
    while out in taken:
        out, k = f"{name}#{k}", k + 1
    return out


def _run_names(models: Sequence[LoadedModel]) -> list[str]:
    """Model names made unique (``name``, ``name#2``...): they key ``segments[].predictions``."""
    out: list[str] = []
    for m in models:
        out.append(_unique(m.name, out))
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
    language: dict[str, Any] | None  # the stretch's spoken language (bundle metadata "language")
    foreign: list[str | None]  # per model: the language code of words it does not read here, else None
    asr_model: str | None
    cue_frames: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None]
    faces: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None  # (times, has face, boxes)
    timings: dict[str, float]
    face: FaceFrames | None = None  # the face channel's per-frame numbers (None: no face model or video)
    face_choices: list[dict[str, Any]] | None = None  # per segment: the speaking face chosen (face.speaking)


def _score_part(
    path: Path,
    bundle: FeatureBundle,
    models: Sequence[LoadedModel],
    names: Sequence[str],
    ext: Extractor,
    options: AnalyzeOptions,
    spans: list[Any],
    offset: float = 0.0,
    face_model: Any = None,
) -> _Part:
    """Score one bundle (times relative to ``offset`` seconds into the file) with every model (and the face
    model over its frames' face crops)."""
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
    spoken = meta.get("language")
    # words in a language a model's text encoder does not read are not scored by it (n/a, not a guess)
    foreign = [
        lang_id.differs(spoken, m.text_language) if "text" in scorable and m.text_language else None
        for m in models
    ]
    own = [[x for x in scorable if x != "text" or not foreign[k]] for k in range(len(models))]
    columns = [m.check_dims(ext, own[k]) for k, m in enumerate(models)]

    t0 = time.perf_counter()
    segs = utterances(bundle, duration, options, spans)
    if bundle.visual is not None:  # each utterance reads its speaking face (extras["face_choices"][i])
        bundle.visual = compose(bundle.visual, [(float(s.start), float(s.end)) for s in segs])[0]
    timings["segment"] = time.perf_counter() - t0

    scores: list[ModelScores] = []
    used_by: list[list[str]] = []
    timings["segment_features"] = timings["model"] = 0.0
    for k, (m, name) in enumerate(zip(models, names, strict=True)):
        used = [x for x in MODALITIES if x in m.modalities and x in own[k]]
        if used or k == 0:  # the primary always runs: its graph edges describe the segments (as in 1.0)
            sc = score_model(
                m, bundle, segs, ext, own[k], columns[k], options.batch_size, predict=bool(used)
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
                language=segment_language(spoken, s.start, s.end),
            )
        )
    face = None
    if face_model is not None and "vision" in present:
        t0 = time.perf_counter()
        face = face_frames_of(
            face_model, bundle.visual, offset, options.face_fps, [(s.start, s.end) for s in segs]
        )
        timings["face_model"] = time.perf_counter() - t0
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
        language=spoken,
        foreign=foreign,
        asr_model=meta.get("asr_model"),
        cue_frames=cues,
        faces=faces,
        timings=timings,
        face=face,
        face_choices=list(
            (bundle.visual.extras.get("face_choices") or []) if bundle.visual is not None else []
        )
        or None,
    )


def segment_language(spoken: dict[str, Any] | None, start: float, end: float) -> dict[str, Any] | None:
    """The language record of the utterance ``[start, end]``: that of the transcript segment it overlaps most
    (``spoken["segments"]``), else the file's with ``source: "file"``; None when the language is unknown."""
    if not spoken:
        return None
    best, overlap = None, 0.0
    for rec in spoken.get("segments") or []:
        o = min(end, float(rec["end"])) - max(start, float(rec["start"]))
        if o > overlap:
            best, overlap = rec, o
    if best is not None:
        return lang_id.record(best["code"], best["probability"], best["source"])
    source = "given" if spoken.get("source") == "given" else "file"
    return lang_id.record(spoken.get("code"), spoken.get("probability"), source)


def file_language(parts: Sequence[_Part]) -> dict[str, Any] | None:
    """The file's language record: that of its one stretch, or of a streamed file the language of the most
    seconds (its probability the seconds-weighted mean over those windows)."""
    known = [p for p in parts if p.language and p.language.get("code")]
    if not known:
        return None
    secs: dict[str, float] = {}
    for p in known:
        secs[p.language["code"]] = secs.get(p.language["code"], 0.0) + p.duration  # type: ignore[index]
    code = max(secs, key=secs.__getitem__)
    same = [p for p in known if p.language["code"] == code]  # type: ignore[index]
    probs = [p.language.get("probability") for p in same]  # type: ignore[union-attr]
    prob = (
        None
        if any(x is None for x in probs)
        else sum(float(x) * p.duration for x, p in zip(probs, same, strict=True)) / max(secs[code], 1e-9)
    )
    return lang_id.record(code, prob, str(same[0].language.get("source") or "detected"))  # type: ignore[union-attr]


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
    t_all = time.perf_counter()
    options = options or AnalyzeOptions()
    timings: dict[str, float] = {}
    if model is None:
        t0 = time.perf_counter()
        loaded = registry.load_models(None)
        timings["model_load"] = time.perf_counter() - t0
    else:
        loaded = [model] if not isinstance(model, Sequence) else list(model)
    path = Path(path)
    problem = path_problem(path)  # loops, dangling links, FIFOs, devices: never opened
    if problem is not None:
        raise InputError(path, problem)
    try:
        info = media.probe(path)  # remembered: the extractor's own probe of the file costs nothing
    except InputError as exc:
        exc.stage = "probe"  # as when the extractor probes it
        raise
    image = media.still_image(info)
    if image is not None:  # a photo: the face channel only
        face_only = [m for m in loaded if getattr(m, "kind", "dmd") == "face"]
        if not face_only:
            raise InputError(
                path, f"{image}: a photo is read by the face channel only, and no face model runs"
            )
        return analyze_photo(path, face_only[0], info)
    models, face_model = split_face_model(loaded)
    ext = get_extractor(models, options, face_model)
    names = _run_names(models)
    stream, stream_spans, stream_label, note = plan_streaming(path, options, float(info.duration))
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
            parts.append(_score_part(path, bundle, models, names, ext, options, own, a, face_model))
            del bundle  # the window's frames go; only its scores and cue series stay
        duration = float(info.duration)
    else:
        given, spans = None, []
        if options.transcript is not None:
            given, spans, source_label = given_transcript(options.transcript, float(info.duration))
        bundle = ext.extract_clip(path, transcript=given)
        parts.append(_score_part(path, bundle, models, names, ext, options, spans, 0.0, face_model))
        duration = parts[0].duration
        del bundle
    for k, v in ext.load_timings.items():
        if k not in loaded_before:
            timings[f"load_{k}"] = float(v)
    result = _assemble(path, models, names, parts, duration, options, timings, source_label, face_model)
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
    face_model: Any = None,
) -> AnalysisResult:
    """One result from the parts of a file, in time order."""
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
    not_read: dict[str, str] = {}  # model name -> why its words are n/a (headline)
    for k, (m, name) in enumerate(zip(models, names, strict=True)):
        used = [x for x in MODALITIES if any(x in p.used[k] for p in parts)]
        own, why = scorable, absent
        foreign = sorted({str(p.foreign[k]) for p in parts if p.foreign[k]})
        if foreign:
            codes = ", ".join(foreign)
            if all(p.foreign[k] or "text" not in p.present for p in parts):  # no words it reads anywhere
                own = [x for x in scorable if x != "text"]
                why = {
                    **absent,
                    "text": f"words in language {codes}, which its text encoder ({m.text_language}) does not read",
                }
                not_read[name] = f"n/a (language {codes})"
            else:
                n = sum(1 for p in parts if p.foreign[k])
                warnings.append(
                    f"{name}: words in language {codes} in {n} of {len(parts)} windows are not scored there "
                    f"(its text encoder reads {m.text_language})"
                )
        notes, nothing = model_notes(m, own, why)
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
        run.card = m.card()
        run.calibration = calibration_summary(m.calibration if m.task == "classification" else None)
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
    face_all = face_line = timeline = None
    reasons: dict[str, str] = {}
    if face_model is not None:
        t0 = time.perf_counter()
        fname = _unique(face_model.name, names)
        frames = join_face_frames([p.face for p in parts])
        classes = list(face_model.classes)
        choices = [
            c
            for p in parts
            for c in (
                p.face_choices
                if p.face_choices and len(p.face_choices) == len(p.segments)
                else [None] * len(p.segments)
            )
        ]
        for seg, choice in zip(seg_results, choices, strict=True):
            seg.face = with_choice(face_channel(fname, classes, frames, seg.start, seg.end), choice)
            seg.predictions[fname] = seg.face.prediction()
        face_all = face_channel(fname, classes, frames, 0.0, duration)
        seen = [int(c.get("faces_seen") or 0) for c in choices if c]
        if seen:  # the most faces seen at once in any segment (the speaking-face choice counts them)
            face_all.faces_seen = max(seen)
        rules = {str(c.get("rule")) for c in choices if c}
        if len(rules) == 1:  # the file's face was chosen by one rule in every segment
            face_all.chosen_by = rules.pop()
        has_video = "vision" in present
        runs.append(face_run(face_model, fname, face_all, has_video))
        if face_all.probabilities is None:
            reasons[fname] = face_all.note or ""
            if has_video:
                warnings.append("no face was found in any frame: the face channel is n/a (no face)")
        timeline = face_timeline(fname, classes, frames, duration, options.cue_rate_hz)
        timings["face_channel"] = time.perf_counter() - t0
        face_line = face_all
    t0 = time.perf_counter()
    cues = cues_on_grid([p.cue_frames for p in parts], duration, options.cue_rate_hz)
    key_frames = key_frames_from([p.faces for p in parts], duration, options.key_frames)
    timings["cues"] = timings.get("cues", 0.0) + time.perf_counter() - t0
    sources: dict[str, int] = {}
    for p in parts:
        for key, v in p.word_sources.items():
            sources[key] = sources.get(key, 0) + v
    primary = runs[0]
    asr_names = list(dict.fromkeys(n.strip() for p in parts if p.asr_model for n in str(p.asr_model).split(",")))
    result = AnalysisResult(
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
            asr_model=", ".join(asr_names) or None,
            asr_models=lang_id.speech_models(
                asr_names, any((p.language or {}).get("source") == "detected" for p in parts)
            ),
        ),
        cues=cues,
        model=primary.info,
        key_frames=key_frames,
        timings={k: round(max(0.0, float(v)), 4) for k, v in timings.items()},
        warnings=warnings,
        tool_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        models=runs,
        headline=make_headline(runs, scorable, headline_why, {**reasons, **not_read}),
        face=face_line,
        face_timeline=timeline,
        language=file_language(parts),
    )
    # the fused answer of every span and the headline that leads with it (every channel is in by now)
    fuse_result(result, {n: m.sign_accuracy for m, n in zip(models, names, strict=True)})
    return result


# ---- the same scoring for a stream (dmd live) ------------------------------------------------------
#: What one scored stretch adds to a result (public name of :class:`_Part`, for :mod:`dmd_pipeline.live`).
ScoredPart = _Part


def run_names(models: Sequence[LoadedModel]) -> list[str]:
    """Model names made unique (``name``, ``name#2``...), as they key ``segments[].predictions``."""
    return _run_names(models)


def score_stretch(
    source: str,
    bundle: FeatureBundle,
    models: Sequence[LoadedModel],
    names: Sequence[str],
    ext: Extractor,
    options: AnalyzeOptions,
    offset: float,
    spans: Sequence[Any] = (),
    face_model: Any = None,
) -> ScoredPart:
    """Score one stretch of a stream (an utterance of ``dmd live``, or several joined; times relative to
    ``offset`` seconds on the stream's clock) exactly as ``dmd analyze`` scores a file or one of its
    streaming windows; ``spans`` (timed segments, relative times) group the words into utterances as a
    timed transcript does."""
    return _score_part(Path(source), bundle, models, names, ext, options, list(spans), offset, face_model)


def assemble_result(
    source: str,
    models: Sequence[LoadedModel],
    names: Sequence[str],
    parts: Sequence[ScoredPart],
    duration: float,
    options: AnalyzeOptions,
    timings: dict[str, float],
    face_model: Any = None,
) -> AnalysisResult:
    """The result of a stream from its scored stretches, in time order, as ``dmd analyze`` assembles a file's
    windows, with every channel (the face channel, the fused answer) added the same way (``file`` is
    ``source`` as given: a URL or a device is no local path). ``dmd live`` also assembles each new stretch
    alone, so that each utterance it hands out carries the same channels as the final result."""
    result = _assemble(Path(source), models, names, parts, duration, options, timings, None, face_model)
    result.file = source
    result.warnings = rank_warnings(result.warnings)
    return result
