"""Transcripts: where the words of a clip come from, and their data types.

Sources, in priority order (see :func:`get_transcript`):

1. a *sidecar* file beside the media with the same stem: ``clip.json`` (our word list, schema below),
   ``clip.srt``, ``clip.vtt`` or ``clip.txt``;
2. a transcript given by the caller (a string, or a path to one of those file types);
3. automatic speech recognition: Whisper through faster-whisper (Whisper base, or the bundled tiny.en for
   English with ``asr_model="tiny.en"``), or pocketsphinx with its own language model (no extra model
   needed), or ``"none"`` (empty transcript).

Text conventions: ``Segment.text`` keeps the raw text as it came (case, punctuation). ``Word.text`` is the
normalised word: lower-case, punctuation removed except apostrophes inside a word (``"don't"``), because
the pronunciation dictionary of the aligner spells contractions that way. :func:`normalize_text` with
``mosi=True`` also drops apostrophes, which is how CMU-MOSI transcripts are written (``"dont"``).

JSON sidecar schema (``version`` 1; the output of :meth:`Transcript.to_dict` is also accepted)::

    {"version": 1,
     "segments": [
        {"start": 0.0, "end": 2.4, "text": "Now the title says it all.",
         "words": [{"text": "now", "start": 0.0, "end": 0.3}, ...]}      # "words" optional
     ]}

or a flat word list ``{"words": [{"text": "now", "start": 0.0, "end": 0.3}, ...]}`` (also a bare JSON list of
such words), which is cut into utterances at pauses. Times are seconds from the start of the media;
``"word"`` is accepted as a synonym of ``"text"``. Words given with times keep ``source="sidecar"``;
segments without words are force-aligned later (:func:`dmd_pipeline.extractors.align.align_transcript`).

Bounds: a transcript file is read only when it is a regular file of at most :data:`MAX_TRANSCRIPT_BYTES`
(never a FIFO or device), JSON nesting is limited, and a transcript with more than
:data:`MAX_WORDS_PER_SECOND` words per second of media (beyond :data:`MIN_WORD_ALLOWANCE`) is refused:
it cannot be this file's speech, and aligning it would take unbounded time and memory.

Language: Whisper base identifies the language (``language="auto"``, the default;
:mod:`~dmd_pipeline.extractors.language`) and transcribes it; English is transcribed by the English model
``asr_model`` (``base`` by default, or the bundled ``tiny.en``). Decoding as English without identification
(``language="en"``) turns other languages into invented English.
:func:`asr_confidence` measures Whisper's own confidence (mean word probability, average log-probability of
the decoded tokens); below :data:`LOW_WORD_PROB` / :data:`LOW_AVG_LOGPROB` the transcript gets
``quality["low_confidence"] = True``, and when it was decoded as English without identifying the language, a
note that the speech is probably not English. Measured with tiny.en on espeak-ng speech (8 English and 8
German review sentences): English mean word probability 0.63-0.92 and average log-probability -0.22 to
-0.68; German 0.14-0.66 and -0.72 to -2.05.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.errors import InputError
from dmd_pipeline.extractors import language as lang_id
from dmd_pipeline.extractors.align import decode_pocketsphinx, speech_regions
from dmd_pipeline.extractors.words import (
    Segment,
    Transcript,
    Word,
    normalize_text,
    split_words_at_pauses,
    to_16k,
)
from dmd_pipeline.model_files import whisper_model_dir
from dmd_pipeline.utils import (
    OUTPUT_MARKER,
    TooLargeError,
    format_bytes,
    json_depth,
    path_problem,
    read_bytes_bounded,
)

__all__ = [
    "SIDECAR_SUFFIXES",
    "Segment",
    "Transcript",
    "Word",
    "find_sidecar",
    "get_transcript",
    "normalize_text",
    "read_transcript_file",
    "split_words_at_pauses",
    "to_16k",
    "transcribe",
    "whisper_base_model",
    "whisper_model",
]

SIDECAR_SUFFIXES: tuple[str, ...] = (".json", ".srt", ".vtt", ".txt")
MAX_TRANSCRIPT_BYTES = 8 * 1024 * 1024  # a 3-hour talk as word-timed JSON is ~2 MB
MAX_WORDS_PER_SECOND = 10.0  # fast speech is ~4 words/s
MIN_WORD_ALLOWANCE = 500  # words always accepted, whatever the duration
MAX_JSON_DEPTH = 32
LOW_WORD_PROB = 0.55  # Whisper's mean word probability below this: low confidence
LOW_AVG_LOGPROB = -0.8  # Whisper's duration-weighted average token log-probability below this
MIN_WORDS_FOR_LANGUAGE_CHECK = 4
#: A Whisper segment of at least :data:`MIN_WORDS_FOR_RATE_CHECK` words faster than this many words per
#: second is not speech timing (a decoding loop: 84 words in 1.02 s was seen). Human speech is far slower:
#: the 1,851 CMU-MOSI segments of 6+ words have a median of 3.2 and a maximum of 8.5 words/s (their
#: annotated start/end), so 10 leaves a margin for fast talkers.
MAX_WORDS_PER_S = 10.0
MIN_WORDS_FOR_RATE_CHECK = 6
STAGE = "transcript"


def _words_from_text(text: str) -> list[str]:
    return normalize_text(text).split()


# --------------------------------------------------------------------------------------------- sidecars
def find_sidecar(media_path: str | Path | None) -> Path | None:
    """The transcript file beside ``media_path`` with the same stem (.json > .srt > .vtt > .txt), if any.

    Files ``dmd analyze`` wrote (:func:`is_tool_output`: a result JSON, its subtitles) are never taken,
    so a run with ``--out`` beside the media does not read the previous run's output as its transcript.
    """
    if media_path is None:
        return None
    p = Path(media_path)
    for suffix in SIDECAR_SUFFIXES:
        cand = p.with_suffix(suffix)
        try:
            if cand.is_file() and cand.resolve() != p.resolve() and not is_tool_output(cand):
                return cand
        except (OSError, RuntimeError):  # a symlink loop beside the media is no sidecar
            continue
    return None


#: The start of a result document: ``{"schema_version": "1.x"`` (every version) or the 1.2 marker.
_RESULT_HEAD = re.compile(
    rb'\A\s*\{\s*"(?:schema_version"\s*:\s*"1\.\d+"|generator"\s*:\s*"%s")' % OUTPUT_MARKER.encode()
)


def _result_head(path: Path) -> bool:
    """Whether ``path`` starts like a ``dmd analyze`` result document (its first bytes only)."""
    try:
        with path.open("rb") as fh:
            return bool(_RESULT_HEAD.match(fh.read(256)))
    except OSError:
        return False


def is_tool_output(path: str | Path) -> bool:
    """Whether ``path`` was written by ``dmd analyze``: a result JSON (it starts with the result's
    ``generator`` marker or ``schema_version``), or subtitles (.srt/.vtt) beside such a result of the
    same name that did not read them as its own transcript."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _result_head(path)
    if suffix not in (".srt", ".vtt"):
        return False
    result = path.with_suffix(".json")
    if not _result_head(result):
        return False
    try:
        source = (json.loads(result.read_text(encoding="utf-8")).get("transcript") or {}).get("source", "")
    except (OSError, ValueError, AttributeError):
        return True
    return str(source) != f"sidecar:{path}"


_TS = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?")


def _parse_ts(s: str, path: Path) -> float:
    m = _TS.fullmatch(s.strip())
    if not m:
        raise InputError(path, f"bad subtitle time stamp {s!r}", STAGE)
    h, mnt, sec, frac = m.groups()
    val = int(h or 0) * 3600 + int(mnt) * 60 + int(sec)
    if frac:
        val += int(frac) / (10 ** len(frac))
    return float(val)


def _read_subtitles(path: Path, text: str) -> list[Segment]:
    """Parse SRT or WebVTT cues into segments (tags like ``<i>`` and cue settings removed)."""
    segs: list[Segment] = []
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    for block in blocks:
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        idx = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if idx is None:
            continue  # header ("WEBVTT"), NOTE/STYLE blocks, stray numbers
        left, right = lines[idx].split("-->", 1)
        start = _parse_ts(left, path)
        end = _parse_ts(right.strip().split()[0] if right.strip() else "", path)
        body = " ".join(lines[idx + 1 :])
        body = re.sub(r"<[^>]*>|\{[^}]*\}", "", body).strip()
        if end < start:
            raise InputError(path, f"subtitle cue ends before it starts ({lines[idx].strip()})", STAGE)
        if body:
            segs.append(Segment(start, end, body, []))
    return segs


def _word_dict(w: Any, path: Path, k: int) -> Word | None:
    if not isinstance(w, dict):
        raise InputError(path, f"word {k} is not an object with text/start/end", STAGE)
    raw = w.get("text", w.get("word"))
    if raw is None or "start" not in w or "end" not in w:
        raise InputError(path, f"word {k} needs 'text' (or 'word'), 'start' and 'end'", STAGE)
    try:
        start, end = float(w["start"]), float(w["end"])
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"word {k}: start/end are not numbers", STAGE) from exc
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise InputError(path, f"word {k}: invalid times start={start} end={end}", STAGE)
    norm = normalize_text(str(raw))
    if not norm:
        return None
    return Word(norm.replace(" ", ""), start, end, str(w.get("source", "sidecar")))


def _read_json(path: Path, text: str) -> tuple[list[Segment], bool]:
    """Parse our JSON schema; returns (segments, flat) where flat means a bare word list."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})", STAGE) from exc
    except RecursionError:
        raise InputError(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", STAGE) from None
    if json_depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InputError(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", STAGE)
    if isinstance(data, list):
        data = {"words": data}
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object with 'segments' or 'words'", STAGE)
    if "segments" in data:
        if not isinstance(data["segments"], list):
            raise InputError(path, "'segments' must be a list", STAGE)
        segs = []
        for k, s in enumerate(data["segments"]):
            if not isinstance(s, dict):
                raise InputError(path, f"segment {k} is not an object", STAGE)
            words = [x for j, w in enumerate(s.get("words") or []) if (x := _word_dict(w, path, j))]
            try:
                start = float(s.get("start", words[0].start if words else 0.0))
                end = float(s.get("end", words[-1].end if words else start))
            except (TypeError, ValueError) as exc:
                raise InputError(path, f"segment {k}: start/end are not numbers", STAGE) from exc
            txt = str(s.get("text") or " ".join(w.text for w in words))
            if end < start:
                raise InputError(path, f"segment {k} ends before it starts", STAGE)
            segs.append(Segment(start, end, txt, words))
        return segs, False
    if "words" in data and isinstance(data["words"], list):
        words = [x for j, w in enumerate(data["words"]) if (x := _word_dict(w, path, j))]
        words.sort(key=lambda w: w.start)
        return split_words_at_pauses(words), True
    raise InputError(path, "expected a JSON object with 'segments' or 'words' (see transcribe.py)", STAGE)


def read_transcript_file(path: str | Path, duration: float | None = None) -> Transcript:
    """Read a .json/.srt/.vtt/.txt transcript; times are clipped to ``[0, duration]`` when given.

    A .txt file becomes one segment over the whole media (``[0, duration]``) with no word times; it is
    meant for clips (one utterance). Raises :class:`InputError` naming the file and the problem.
    """
    p = Path(path)
    problem = path_problem(p)
    if problem is not None:
        reason = (
            "transcript file does not exist"
            if problem == "file not found"
            else f"transcript {p.name}: {problem}"
        )
        raise InputError(p, reason, STAGE)
    suffix = p.suffix.lower()
    if suffix not in SIDECAR_SUFFIXES:
        raise InputError(
            p, f"unsupported transcript type {suffix!r} (use {', '.join(SIDECAR_SUFFIXES)})", STAGE
        )
    try:
        text = read_bytes_bounded(p, MAX_TRANSCRIPT_BYTES).decode("utf-8-sig")
    except TooLargeError as exc:
        raise InputError(
            p,
            f"transcript file {p.name} is {format_bytes(exc.size)}, over the limit of "
            f"{format_bytes(MAX_TRANSCRIPT_BYTES)} for a transcript",
            STAGE,
        ) from None
    except OSError as exc:
        raise InputError(p, f"cannot read the transcript {p.name}: {exc.strerror or exc}", STAGE) from None
    except UnicodeDecodeError as exc:
        raise InputError(p, "transcript is not UTF-8 text", STAGE) from exc
    if duration is not None:
        n_words = len(text.split())
        allowed = max(MIN_WORD_ALLOWANCE, MAX_WORDS_PER_SECOND * float(duration))
        if n_words > allowed * (4 if suffix in (".json", ".srt", ".vtt") else 1):  # markup counts too
            raise InputError(
                p,
                f"transcript {p.name} holds about {n_words} words for {float(duration):.1f} s of media (more than "
                f"{MAX_WORDS_PER_SECOND:g} words per second): not a transcript of this file",
                STAGE,
            )
    notes: list[str] = []
    try:
        if suffix == ".json":
            segs, _ = _read_json(p, text)
        elif suffix in (".srt", ".vtt"):
            segs = _read_subtitles(p, text)
        else:
            segs = None
    except InputError as exc:  # name the transcript: errors.csv rows name the media file
        if p.name not in exc.reason:
            exc.reason = f"{p.name}: {exc.reason}"
            exc.args = (f"{p}: {exc.reason}",)
        raise
    if segs is None:  # plain text
        body = " ".join(text.split())
        end = float(duration) if duration is not None else 0.0
        segs = [Segment(0.0, end, body, [])] if body else []
        if duration is None and segs:
            notes.append("plain-text transcript without a known duration: segment end set to 0")
    if duration is not None:
        n_words = sum(len(seg.text.split()) for seg in segs)
        allowed = max(MIN_WORD_ALLOWANCE, MAX_WORDS_PER_SECOND * float(duration))
        if n_words > allowed:
            raise InputError(
                p,
                f"transcript {p.name} holds {n_words} words for {float(duration):.1f} s of media (more than "
                f"{MAX_WORDS_PER_SECOND:g} words per second): not a transcript of this file",
                STAGE,
            )
        segs, dropped = _clip_segments(segs, float(duration))
        if dropped:
            notes.append(f"{dropped} segment(s) start after the end of the media ({duration:.2f} s): dropped")
    if not segs:
        notes.append(f"transcript file {p} holds no words")
    return Transcript(segs, f"file:{p}", notes)


def _clip_segments(segs: list[Segment], duration: float) -> tuple[list[Segment], int]:
    out, dropped = [], 0
    for s in segs:
        if s.start >= duration and duration > 0:
            dropped += 1
            continue
        s.start, s.end = max(0.0, s.start), min(max(s.end, s.start), duration)
        for w in s.words:
            w.start = min(max(w.start, 0.0), duration)
            w.end = min(max(w.end, w.start), duration)
        out.append(s)
    return out, dropped


# ---------------------------------------------------------------------------------------------- ASR
_MODEL_CACHE: dict[tuple[str, str, int], Any] = {}
_MODEL_LOCK = threading.Lock()


#: Greedy decoding (beam 1): on ~60 s files of espeak-ng speech (MOSI test transcripts) it made 25.1 % WER
#: against 44.0 % for beam 5, in 0.69x the time (1 thread; 0.65x with 2), and the same 30.2 % on the real
#: clips (decoding at temperature 0, no sampling fallback; ``benchmarks/bench_asr_options.py``, BENCHMARKS.md "Speech decoding options").
WHISPER_BEAM_SIZE = 1


#: A fitted encoder window (:func:`fitted_windows`) is at least this long (s) and this many times the audio:
#: on RAVDESS utterances a 10 s window kept tiny.en's word error rate of the 30 s one for 1.5-3.3 s of
#: audio but looped (a sentence repeated) for 3.3-5 s, which a 15 s window did not (BENCHMARKS.md,
#: "Live analysis").
FIT_WINDOW_MIN_S = 10.0
FIT_WINDOW_FACTOR = 3.0
#: A segment whose text compresses (gzip) more than this is a decoding loop (faster-whisper's own threshold for
#: its temperature fallback). Whisper base looped on a fitted window where the 30 s window did not ("Kids are
#: talking by the door door door ..."), so such a decoding is redone in the 30 s window.
LOOP_COMPRESSION_RATIO = 2.4
_WINDOW = threading.local()  # .allowed: set by fitted_windows(); .active: during Whisper's decoding only


@contextmanager
def fitted_windows() -> Iterator[None]:
    """Inside, speech recognition on this thread encodes short audio in a window fitted to it (at least
    :data:`FIT_WINDOW_MIN_S` s and :data:`FIT_WINDOW_FACTOR` times the audio) instead of Whisper's 30 s.

    Why: the Whisper encoder's cost follows its window, and faster-whisper pads every input to 30 s, so a
    2 s utterance costs what 30 s cost. ``dmd live`` scores short utterances one by one and uses this;
    ``dmd analyze`` does not (its windows are long, and its output stays that of the 30 s window).
    Language identification keeps the 30 s window, and a decoding that loops in the fitted window
    (:data:`LOOP_COMPRESSION_RATIO`) is redone in the 30 s one."""
    before = getattr(_WINDOW, "allowed", False)
    _WINDOW.allowed = True
    try:
        yield
    finally:
        _WINDOW.allowed = before


def fitted_frames(features: np.ndarray) -> int | None:
    """Mel frames of the window fitted to a padded 30 s mel window ``features`` (``(..., 80, 3000)``: the
    audio's frames, then the zero columns faster-whisper pads with), or None when no shorter window holds
    the audio (or fitting is not active on this thread)."""
    width = features.shape[-1]
    if not getattr(_WINDOW, "active", False) or width != 3000:
        return None
    flat = features.reshape(-1, features.shape[-2], width)[0]
    voiced = np.flatnonzero(np.any(flat != 0, axis=0))
    content = int(voiced[-1]) + 1 if voiced.size else 0
    frames = int(math.ceil(max(FIT_WINDOW_MIN_S * 100, FIT_WINDOW_FACTOR * content)))
    frames += frames % 2
    return frames if frames < width else None


_WINDOWED: Any = None


def _model_class() -> Any:
    """faster-whisper's ``WhisperModel`` whose encoder takes the fitted window (:func:`fitted_frames`)
    when :func:`fitted_windows` is active; otherwise it is faster-whisper's own."""
    global _WINDOWED
    if _WINDOWED is None:
        from dmd_pipeline.extractors.faster_whisper_import import faster_whisper_module

        faster_whisper_module()
        from faster_whisper import WhisperModel

        class WindowedWhisperModel(WhisperModel):
            def encode(self, features: np.ndarray) -> Any:
                n = fitted_frames(features)
                return super().encode(features if n is None else features[..., :n])

        _WINDOWED = WindowedWhisperModel
    return _WINDOWED


def asr_threads() -> int:
    """CTranslate2 threads for Whisper: ``$DMD_ASR_THREADS``, else half the cores (1 to 4).

    Why half: the extractor runs the face and acoustic stages beside speech recognition
    (:class:`~dmd_pipeline.pipeline.Extractor`); on 2 cores Whisper with 1 thread beside them finished a
    60 s clip in 0.92x the time of Whisper's default 2 threads (BENCHMARKS.md, "Pipelined analysis").
    """
    env = os.environ.get("DMD_ASR_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def whisper_model(
    model_path: str | Path | None = None, compute_type: str = "int8", cpu_threads: int | None = None
):
    """The faster-whisper model for ``model_path`` (bundled tiny.en when None), loaded once per process
    (per thread count; ``None``: :func:`asr_threads`). ASR and the Whisper acoustic features share it."""
    if cpu_threads is None:
        cpu_threads = asr_threads()
    folder = str(whisper_model_dir(model_path))
    key = (folder, compute_type, int(cpu_threads))
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = _model_class()(
                folder,
                device="cpu",
                compute_type=compute_type,
                cpu_threads=int(cpu_threads),
                local_files_only=True,
            )
        return _MODEL_CACHE[key]


def whisper_base_model(cpu_threads: int | None = None) -> Any:
    """The multilingual Whisper base (:func:`~dmd_pipeline.model_files.whisper_base_dir`), loaded once per
    process: it identifies the language (:mod:`~dmd_pipeline.extractors.language`) and transcribes every
    language (English too, unless tiny.en is asked for)."""
    from dmd_pipeline.model_files import whisper_base_dir

    return whisper_model(whisper_base_dir(), cpu_threads=cpu_threads)


def _transcribe_whisper(
    audio16: np.ndarray,
    model_path: str | Path | None,
    vad: bool,
    beam_size: int,
    language: str | None,
    asr_model: str = lang_id.DEFAULT_ASR_MODEL,
) -> Transcript:
    """Whisper's transcript of 16 kHz audio in ``language`` (``auto``: identified by Whisper base first;
    None: ``en``), by the model :func:`language.asr_model_for` picks (English: ``asr_model``)."""
    setting = lang_id.check_language(language or lang_id.ENGLISH)
    if setting == lang_id.LANGUAGE_AUTO:
        spoken = lang_id.detect(audio16, whisper_base_model(), vad=vad)
    else:
        spoken = lang_id.record(setting, None, "given")
    model_name, folder = lang_id.asr_model_for(spoken["code"], model_path, asr_model)
    model = whisper_model(folder)
    duration = len(audio16) / 16000.0
    lang = spoken["code"] if getattr(model.model, "is_multilingual", False) else "en"

    def decode(fitted: bool) -> list:
        _WINDOW.active = fitted
        try:
            return list(
                model.transcribe(
                    audio16,
                    language=lang,
                    beam_size=beam_size,
                    word_timestamps=True,
                    vad_filter=vad,
                    condition_on_previous_text=False,
                    # deterministic: faster-whisper's default falls back to sampling at temperatures 0.2..1.0
                    # when a window's output looks repetitive, which made the same file give different segments
                    temperature=0.0,
                )[0]
            )
        finally:
            _WINDOW.active = False

    fitted = bool(getattr(_WINDOW, "allowed", False))  # fitted windows for the decoding, if allowed
    segments = decode(fitted)
    if fitted and any(float(s.compression_ratio) > LOOP_COMPRESSION_RATIO for s in segments):
        segments = decode(False)  # a decoding loop in the fitted window: the 30 s window, as dmd analyze
    out: list[Segment] = []
    word_probs: list[float] = []
    logprobs: list[tuple[float, float]] = []  # (avg_logprob, duration) per decoded segment
    for s in segments:
        words: list[Word] = []
        logprobs.append((float(s.avg_logprob), max(0.01, float(s.end) - float(s.start))))
        for w in s.words or []:
            norm = normalize_text(w.word)
            word_probs.append(float(getattr(w, "probability", 1.0)))
            if not norm:
                continue
            start = min(max(float(w.start), 0.0), duration)
            end = min(max(float(w.end), start), duration)
            for part in norm.split():  # "well-known" -> two words sharing the span
                words.append(Word(part, start, end, "asr"))
        text = s.text.strip()
        if not text:
            continue
        start = min(max(float(s.start), 0.0), duration)
        end = min(max(float(s.end), start), duration)
        if words:
            start, end = min(start, words[0].start), max(end, words[-1].end)
        out.append(Segment(start, end, text, words))
    implausible = drop_implausible_times(out)
    notes = [] if out else ["whisper heard no speech"]
    if implausible:
        n, d = implausible[0]["n_words"], implausible[0]["end"] - implausible[0]["start"]
        notes.append(
            f"implausible Whisper timings in {len(implausible)} segment(s) (e.g. {n} words in {d:.2f} s, "
            f"over {MAX_WORDS_PER_S:.0f} words/s): their word times come from forced alignment, not from "
            "Whisper, and their text may be a decoding loop"
        )
    # decoded as English without the language identified: low confidence then suggests another language
    multilingual = bool(getattr(model.model, "is_multilingual", False))
    english_only = not multilingual or (lang == lang_id.ENGLISH and spoken["source"] == "given")
    quality = asr_confidence(word_probs, logprobs, english_only)
    if implausible:
        quality["implausible_segments"] = implausible
    if quality.get("low_confidence"):
        notes.append(
            f"low speech-recognition confidence (Whisper mean word probability {quality['mean_word_prob']:.2f}, "
            f"average log-probability {quality['avg_logprob']:.2f}): "
            + (
                "the speech is probably not English ("
                + ("the model is English-only" if not multilingual else "it was decoded as English, as given")
                + ") or very unclear, so the transcript and the scores from it are unreliable"
                if english_only
                else "the transcript and the scores from it are unreliable"
            )
        )
    return Transcript(out, "whisper", notes, quality, language=spoken, asr_model=model_name)


def drop_implausible_times(segments: list[Segment]) -> list[dict[str, Any]]:
    """Find the segments whose words come faster than human speech (:data:`MAX_WORDS_PER_S` with at least
    :data:`MIN_WORDS_FOR_RATE_CHECK` words) and drop their Whisper word times in place: with no words, a
    segment is force-aligned from its text over a window widened past its own span (and timed
    proportionally over the speech there when alignment fails), never given Whisper's times. Returns
    ``{"start", "end", "n_words", "words_per_s"}`` of each, in order."""
    found = []
    for k, seg in enumerate(segments):
        n = len(seg.words)
        rate = n / max(seg.end - seg.start, 0.05)
        if n >= MIN_WORDS_FOR_RATE_CHECK and rate > MAX_WORDS_PER_S:
            found.append(
                {
                    "start": round(seg.start, 3),
                    "end": round(seg.end, 3),
                    "n_words": n,
                    "words_per_s": round(rate, 1),
                }
            )
            segments[k] = Segment(seg.start, seg.end, seg.text, [])
    return found


def asr_confidence(
    word_probs: list[float], logprobs: list[tuple[float, float]], english_only: bool = True
) -> dict[str, Any]:
    """Whisper's confidence in a transcript: mean word probability, duration-weighted average token
    log-probability, and ``low_confidence`` (also ``probably_not_english`` for an English-only model) when
    either is below :data:`LOW_WORD_PROB` / :data:`LOW_AVG_LOGPROB` with at least
    :data:`MIN_WORDS_FOR_LANGUAGE_CHECK` words."""
    out: dict[str, Any] = {"engine": "whisper", "n_words": len(word_probs)}
    if not word_probs or not logprobs:
        return out
    mean_wp = float(np.mean(word_probs))
    total = sum(d for _, d in logprobs)
    avg_lp = float(sum(lp * d for lp, d in logprobs) / total) if total > 0 else float("nan")
    low = len(word_probs) >= MIN_WORDS_FOR_LANGUAGE_CHECK and (
        mean_wp < LOW_WORD_PROB or (math.isfinite(avg_lp) and avg_lp < LOW_AVG_LOGPROB)
    )
    out.update(
        mean_word_prob=round(mean_wp, 4),
        avg_logprob=round(avg_lp, 4) if math.isfinite(avg_lp) else None,
        low_confidence=bool(low),
        probably_not_english=bool(low and english_only),
    )
    return out


def _transcribe_pocketsphinx(audio16: np.ndarray, pause_s: float, max_len_s: float) -> Transcript:
    words: list[Word] = []
    for a, b in speech_regions(audio16, 16000, min_pause_s=0.3, max_len_s=20.0):
        words.extend(decode_pocketsphinx(audio16[int(a * 16000) : int(b * 16000)], offset=a))
    segs = split_words_at_pauses(words, pause_s=pause_s, max_len_s=max_len_s)
    notes = [] if segs else ["pocketsphinx heard no speech"]
    return Transcript(segs, "pocketsphinx", notes)


def transcribe(
    audio: np.ndarray,
    sr: int,
    engine: str = "whisper",
    model_path: str | Path | None = None,
    *,
    vad: bool = True,
    beam_size: int = WHISPER_BEAM_SIZE,
    language: str | None = lang_id.LANGUAGE_AUTO,
    pause_s: float = 0.5,
    max_len_s: float = 15.0,
    asr_model: str = lang_id.DEFAULT_ASR_MODEL,
) -> Transcript:
    """Speech recognition of mono ``audio``: ``engine`` is ``"whisper"``, ``"pocketsphinx"`` or ``"none"``.

    Whisper (faster-whisper, CPU int8) returns its own segments with word times (source ``"asr"``, coarse:
    refine them with forced alignment). ``language`` is ``auto`` (identified by Whisper base), ``en`` or a
    Whisper language code (:mod:`~dmd_pipeline.extractors.language`); English is transcribed by
    ``asr_model`` (``base``: Whisper base, ``tiny.en``: the bundled tiny.en; ``model_path``: a user's
    CTranslate2 Whisper folder instead), every other language by Whisper base;
    the transcript records it (``language``) and the model (``asr_model``). ``vad`` enables faster-whisper's
    Silero VAD (skips silence, tighter segment starts).
    pocketsphinx decodes energy-detected speech regions with its bundled LM and cuts at pauses.
    ``"none"`` returns an empty transcript with a note.
    """
    if engine == "none":
        return Transcript([], "none", ["no transcript: ASR disabled (engine='none') and none was given"])
    audio16 = to_16k(audio, sr)
    if engine == "whisper":
        return _transcribe_whisper(audio16, model_path, vad, beam_size, language, asr_model)
    if engine == "pocketsphinx":
        return _transcribe_pocketsphinx(audio16, pause_s, max_len_s)
    raise ValueError(f"unknown ASR engine {engine!r} (use 'whisper', 'pocketsphinx' or 'none')")


# ------------------------------------------------------------------------------------------- sources
def get_transcript(
    media_path: str | Path | None,
    audio: np.ndarray,
    sr: int,
    transcript: str | Path | None = None,
    asr: str = "whisper",
    model_path: str | Path | None = None,
    language: str | None = lang_id.LANGUAGE_AUTO,
    asr_model: str = lang_id.DEFAULT_ASR_MODEL,
) -> Transcript:
    """The transcript of a media file: sidecar file > ``transcript`` argument > ASR (``asr`` engine; Whisper
    in ``language``, English by ``asr_model``, see :func:`transcribe`).

    ``transcript`` may be a :class:`~pathlib.Path` (must exist), a string naming an existing
    .json/.srt/.vtt/.txt file, or literal text (one segment over the whole audio, aligned later).
    """
    duration = len(audio) / float(sr) if sr > 0 else 0.0
    side = find_sidecar(media_path)
    if side is not None:
        t = read_transcript_file(side, duration)
        t.source = f"sidecar:{side}"
        return t
    if transcript is not None:
        as_file = isinstance(transcript, Path) or (
            isinstance(transcript, str)
            and len(transcript) < 4096
            and "\n" not in transcript
            and Path(transcript).suffix.lower() in SIDECAR_SUFFIXES
            and Path(transcript).is_file()
        )
        if as_file:
            return read_transcript_file(transcript, duration)
        text = " ".join(str(transcript).split())
        if not _words_from_text(text):
            return Transcript([], "given", ["the given transcript holds no words"])
        return Transcript([Segment(0.0, duration, text, [])], "given")
    return transcribe(audio, sr, engine=asr, model_path=model_path, language=language, asr_model=asr_model)
