"""What every speech stage shares: the transcript types (:class:`Word`, :class:`Segment`,
:class:`Transcript`), text normalisation, cutting timed words at pauses, and resampling audio to 16 kHz.

Its own module so that transcription (:mod:`~dmd_pipeline.extractors.transcribe`) and forced alignment
(:mod:`~dmd_pipeline.extractors.align`) both build on it without importing each other both ways. Text
conventions are described in :mod:`~dmd_pipeline.extractors.transcribe`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dmd_pipeline.errors import InputError

STAGE = "transcript"


# ----------------------------------------------------------------------------------------------- types
@dataclass
class Word:
    """One word with its time span in seconds (from the start of the media) and how the time was found."""

    text: str
    start: float
    end: float
    source: str  # "forced" | "asr" | "proportional" | "sidecar"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Word:
        return cls(str(d["text"]), float(d["start"]), float(d["end"]), str(d.get("source", "sidecar")))


@dataclass
class Segment:
    """An utterance: raw text, time span and its (normalised, timed) words; the unit DMD scores."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def normalized_text(self) -> str:
        """MOSI-style text of the segment: lower-case, no punctuation, no apostrophes."""
        return normalize_text(self.text, mosi=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(
            float(d["start"]),
            float(d["end"]),
            str(d.get("text", "")),
            [Word.from_dict(w) for w in d.get("words", []) or []],
        )


@dataclass
class Transcript:
    """The segments of one media file and where they came from.

    ``source``: ``"sidecar:<path>"`` | ``"given"`` | ``"file:<path>"`` | ``"whisper"`` | ``"pocketsphinx"``
    | ``"none"``. ``notes`` explains anything a user should know (e.g. why the transcript is empty).
    """

    segments: list[Segment]
    source: str
    notes: list[str] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)  # ASR confidence (see asr_confidence)
    #: the spoken language (:mod:`~dmd_pipeline.extractors.language`): ``{"code", "probability", "source"}``
    #: and ``"segments"``, one ``{"start", "end", "code", "probability", "source"}`` per segment; None: unknown
    language: dict[str, Any] | None = None
    asr_model: str | None = None  # the Whisper model that made it (``whisper-tiny.en`` / ``whisper-base``)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text).strip()

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "source": self.source,
            "notes": list(self.notes),
            "segments": [s.to_dict() for s in self.segments],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transcript:
        return cls(
            [Segment.from_dict(s) for s in d.get("segments", [])],
            str(d.get("source", "given")),
            list(d.get("notes", [])),
        )


# ------------------------------------------------------------------------------------------ normalising
_APOS = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def _keep_word_chars(text: str) -> str:
    """``text`` with only letters, digits and combining marks of any script (Unicode categories L, N, M),
    apostrophes and white space: Polish "źródłem" or an Urdu word survive as they are (an ASCII-only filter
    would cut them to pieces). For ASCII text this is the same as ``[a-z0-9' ]``."""
    if text.isascii():
        return _NON_WORD.sub("", text)
    return "".join(c for c in text if c in "' " or c.isspace() or unicodedata.category(c)[0] in "LNM")


def normalize_text(text: str, mosi: bool = False) -> str:
    """Lower-case, strip punctuation and collapse spaces.

    Apostrophes inside words are kept (``"don't"``, needed by the pronunciation dictionary) unless
    ``mosi=True``, which removes them as CMU-MOSI transcripts do (``"dont"``). Hyphens and slashes split
    words; other punctuation is dropped. Letters of every script are kept (:func:`_keep_word_chars`).
    """
    t = text.translate(_APOS).lower()
    t = re.sub(r"[-\u2013\u2014/_]", " ", t)
    t = _keep_word_chars(t)
    words = []
    for w in t.split():
        w = w.strip("'")
        if mosi:
            w = w.replace("'", "")
        if w:
            words.append(w)
    return " ".join(words)


# ----------------------------------------------------------------------------------------- segmentation
def split_words_at_pauses(
    words: list[Word], pause_s: float = 0.5, max_len_s: float = 15.0, text: str | None = None
) -> list[Segment]:
    """Cut a timed word list into segments at pauses >= ``pause_s``, then cap each at ``max_len_s``.

    Over-long runs are split recursively at their largest inter-word gap, so no segment exceeds the cap
    unless it is a single word. Segment text is the words joined (``text`` is ignored unless the whole
    list stays one segment).
    """
    if not words:
        return []
    runs: list[list[Word]] = [[words[0]]]
    for prev, w in zip(words, words[1:], strict=False):
        if w.start - prev.end >= pause_s:
            runs.append([w])
        else:
            runs[-1].append(w)
    pieces: list[list[Word]] = []
    for run in runs:
        pieces.extend(_cap(run, max_len_s))
    if len(pieces) == 1 and text:
        return [Segment(pieces[0][0].start, pieces[0][-1].end, text, pieces[0])]
    return [Segment(p[0].start, p[-1].end, " ".join(w.text for w in p), p) for p in pieces]


def _cap(run: list[Word], max_len_s: float) -> list[list[Word]]:
    if len(run) < 2 or run[-1].end - run[0].start <= max_len_s:
        return [run]
    gaps = [run[i + 1].start - run[i].end for i in range(len(run) - 1)]
    # prefer the largest gap; ties broken towards the middle so halves stay balanced
    mid = (len(run) - 1) / 2
    k = max(range(len(gaps)), key=lambda i: (round(gaps[i], 3), -abs(i - mid)))
    return _cap(run[: k + 1], max_len_s) + _cap(run[k + 1 :], max_len_s)


# ---------------------------------------------------------------------------------------------- audio
def to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 audio at 16 kHz (polyphase resampling when ``sr`` differs)."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1 if a.shape[1] <= 8 else 0)
    if a.ndim != 1:
        raise InputError(None, f"audio must be 1-D mono (got shape {np.shape(audio)})", STAGE)
    if sr <= 0:
        raise InputError(None, f"invalid sample rate {sr}", STAGE)
    if sr != 16000:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sr), 16000)
        a = resample_poly(a, 16000 // g, int(sr) // g).astype(np.float32)
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
