"""Which language is spoken, and which Whisper model transcribes it.

``--language`` (:data:`LANGUAGE_AUTO` by default, ``en``, or any Whisper language code such as ``pl``):

* ``auto``: the multilingual Whisper base (:func:`dmd_pipeline.model_files.whisper_base_dir`) identifies the
  language of the file's speech (:func:`detect`, on the speech Silero VAD finds, up to
  :data:`DETECTION_WINDOWS` windows of 30 s); English is then transcribed by the bundled tiny.en
  (:data:`ENGLISH_MODEL`), every other language by Whisper base in that language (:func:`asr_model_for`);
* ``en``: tiny.en, no identification (the behaviour before languages were told apart);
* a code: Whisper base transcribes in that language, no identification (``source: "given"``).

Each segment of at least :data:`MIN_SEGMENT_S` seconds is identified on its own audio too
(:func:`segment_languages`), so a file that changes language says where; a shorter one has too little
speech for a reliable answer and takes the file's language (``source: "file"``).

A language record is ``{"code": "pl", "probability": 0.98, "source": "detected" | "given" | "file"}``
(probability null when given). Why tiny.en stays for English, and the measured accuracy of identification:
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
#: Windows of 30 s of speech :func:`detect` looks at when the first is not clear (probability <= 0.5).
DETECTION_WINDOWS = 2
#: Shortest segment (s) identified on its own audio; shorter ones take the file's language.
MIN_SEGMENT_S = 2.0
SR = 16000


def language_codes() -> tuple[str, ...]:
    """Every language code Whisper knows (``en``, ``de``, ``pl``, ...), from faster-whisper's tokenizer."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def check_language(value: str | None) -> str:
    """``value`` lower-cased when it is ``auto`` or a Whisper language code; ValueError otherwise."""
    v = (value or LANGUAGE_AUTO).strip().lower()
    if v == LANGUAGE_AUTO or v in language_codes():
        return v
    raise ValueError(
        f"unknown language {value!r}: use 'auto' or a Whisper language code (en, de, pl, it, tr, ur, ...)"
    )


def asr_model_for(code: str | None, english_model: str | Path | None = None) -> tuple[str, str | Path | None]:
    """(name, model path) of the Whisper model that transcribes ``code``: English (or unknown) speech the
    English model (``english_model``, None: the bundled tiny.en), any other language Whisper base."""
    if code in (None, ENGLISH):
        return (ENGLISH_MODEL if english_model is None else "whisper (user model)"), english_model
    from dmd_pipeline.model_files import whisper_base_dir

    return MULTILINGUAL_MODEL, whisper_base_dir()


def record(code: str | None, probability: float | None, source: str) -> dict[str, Any]:
    """A language record (see the module docstring)."""
    return {
        "code": code,
        "probability": None if probability is None else round(float(probability), 4),
        "source": source,
    }


def detect(audio16: np.ndarray, model: Any, vad: bool = True) -> dict[str, Any]:
    """The language of 16 kHz mono speech by ``model`` (Whisper base, a faster-whisper ``WhisperModel``:
    :func:`dmd_pipeline.extractors.transcribe.whisper_base_model`): a :func:`record`, ``source: "detected"``.

    With ``vad`` the speech Silero VAD finds is used (silence and music make poor evidence); when it finds
    none, the whole audio is. Up to :data:`DETECTION_WINDOWS` windows of 30 s are looked at until one is
    clear (faster-whisper's ``detect_language``)."""
    audio16 = np.asarray(audio16, dtype=np.float32)
    try:
        code, prob, _ = model.detect_language(
            audio16, vad_filter=vad, language_detection_segments=DETECTION_WINDOWS
        )
    except ValueError:  # no speech chunk at all: concatenating nothing
        code, prob, _ = model.detect_language(audio16, language_detection_segments=DETECTION_WINDOWS)
    return record(str(code), float(prob), "detected")


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
