"""Word timing: forced alignment with pocketsphinx, fallbacks, and cutting transcripts into utterances.

:func:`align_words` gives every word of a text a start/end time inside ``[start, end]``:

1. *forced*: pocketsphinx in alignment mode (``Decoder(bestpath=False)`` + ``set_align_text``) on the
   16 kHz int16 audio, 10 ms frames. Words missing from the bundled CMU dictionary get a pronunciation
   from :func:`pronounce` (contraction variants, number words, spelled letters, a small letter-to-sound rule
   set). A light dither is added first: pure digital silence makes the aligner fail. A second try with
   wider beams follows a failure. Boundaries are then tightened by an energy rule (leading/trailing frames
   of a word far below the utterance's speech level are moved to the gap), see ``refine``.
2. *asr*: when alignment fails (text does not match the audio, exception, implausible result) and ASR word
   times are given, words matching the ASR words (in order, difflib) take their times;
3. *proportional*: the rest share the time between known neighbours (or the detected speech span of the
   window) in proportion to their character count.

``Word.source`` records which of these produced each time. Results never hold NaN, stay inside
``[start, end]``, are sorted and do not overlap.
"""

from __future__ import annotations

import difflib
import math
import re
import threading
import warnings
from typing import Any

import numpy as np

from dmd_pipeline.extractors.words import (
    Segment,
    Transcript,
    Word,
    normalize_text,
    split_words_at_pauses,
    to_16k,
)

__all__ = [
    "align_transcript",
    "align_words",
    "decode_pocketsphinx",
    "pronounce",
    "segment_transcript",
    "speech_regions",
]

FRAME_S = 0.01  # pocketsphinx frame shift
_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "(NULL)", "<unk>"}
_DECODERS: dict[str, Any] = {}
_LOCK = threading.RLock()


# ---------------------------------------------------------------------------------------- decoders
#: pocketsphinx beams of the second, wider alignment try (the defaults are 1e-48 / 7e-29 / 1e-48)
_WIDE_BEAMS = {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}
_DEFAULT_BEAMS: dict[str, float] = {}


def _decoder(kind: str):
    """Cached pocketsphinx decoders: "align" (forced alignment; see :func:`_widen`) and "asr" (bundled LM).
    Each holds its own copy of the acoustic model and dictionary (about 90 MB)."""
    with _LOCK:
        if kind not in _DECODERS:
            from pocketsphinx import Decoder

            if kind == "align":
                _DECODERS[kind] = Decoder(loglevel="FATAL", bestpath=False)
                _DEFAULT_BEAMS.update({k: float(_DECODERS[kind].config[k]) for k in _WIDE_BEAMS})
            elif kind == "asr":
                _DECODERS[kind] = Decoder(loglevel="FATAL")
            else:
                raise ValueError(kind)
        return _DECODERS[kind]


def _widen(decoder, wide: bool) -> None:
    """Switch the alignment decoder between the default and the wide beams (``reinit``, ~0.3 s, only when
    a default-beam alignment failed): one decoder instead of a second ~90 MB one, so memory does not depend
    on whether some utterance of a file was hard to align."""
    want = _WIDE_BEAMS if wide else _DEFAULT_BEAMS
    if all(float(decoder.config[k]) == v for k, v in want.items()):
        return
    for k, v in want.items():
        decoder.config[k] = v
    decoder.reinit()


def _pcm16(audio16: np.ndarray) -> bytes:
    """int16 PCM bytes with a fixed, tiny dither (pocketsphinx fails on runs of exact zeros)."""
    a = np.asarray(audio16, dtype=np.float32)
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    noise = np.random.default_rng(1234).normal(0.0, 1.0, a.size).astype(np.float32)
    a = a + noise * (1e-3 * min(1.0, max(peak, 0.05)))
    return (np.clip(a, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()


def _run(decoder, pcm: bytes) -> list[tuple[str, int, int]] | None:
    # pocketsphinx carries its noise statistics from one utterance into the next, so a clip's word times
    # depended on what was decoded before it; start_stream() resets them ("deprecated and unnecessary",
    # says pocketsphinx 5, but measured: without it the second decode of the same audio differs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoder.start_stream()
    decoder.start_utt()
    decoder.process_raw(pcm, no_search=False, full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        return None
    return [(s.word, int(s.start_frame), int(s.end_frame)) for s in decoder.seg()]


def decode_pocketsphinx(audio16: np.ndarray, offset: float = 0.0) -> list[Word]:
    """Recognise 16 kHz mono audio with pocketsphinx's bundled LM; words with times (source "asr")."""
    if len(audio16) < 1600:
        return []
    with _LOCK:
        d = _decoder("asr")
        segs = _run(d, _pcm16(audio16)) or []
    words = []
    for w, s, e in segs:
        if w in _FILLERS or w.startswith("["):
            continue
        text = re.sub(r"\(\d+\)$", "", w)
        words.append(Word(text, offset + s * FRAME_S, offset + (e + 1) * FRAME_S, "asr"))
    return words


# ---------------------------------------------------------------------------------- pronunciations
_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _number_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (_number_words(n % 100) if n % 100 else [])
    if n < 1_000_000:
        return _number_words(n // 1000) + ["thousand"] + (_number_words(n % 1000) if n % 1000 else [])
    return [w for ch in str(n) for w in _number_words(int(ch))]


_LETTERS = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY", "h": "EY CH",
    "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N", "o": "OW", "p": "P IY",
    "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW", "v": "V IY", "w": "D AH B AH L Y UW",
    "x": "EH K S", "y": "W AY", "z": "Z IY",
}  # fmt: skip

# Letter-to-sound rules, longest grapheme first; a rough but always-valid ARPABET guess.
_RULES: list[tuple[str, str]] = sorted(
    {
        "tion": "SH AH N", "sion": "ZH AH N", "ture": "CH ER", "ough": "AO", "augh": "AO", "eigh": "EY",
        "igh": "AY", "tch": "CH", "dge": "JH", "sch": "S K", "ph": "F", "sh": "SH", "ch": "CH", "th": "TH",
        "wh": "W", "ck": "K", "ng": "NG", "qu": "K W", "gh": "G", "kn": "N", "wr": "R", "ee": "IY",
        "ea": "IY", "oo": "UW", "ai": "EY", "ay": "EY", "ei": "EY", "ey": "EY", "oa": "OW", "ou": "AW",
        "ow": "OW", "oi": "OY", "oy": "OY", "au": "AO", "aw": "AO", "ie": "IY", "ue": "UW", "ew": "UW",
        "er": "ER", "ir": "ER", "ur": "ER", "ar": "AA R", "or": "AO R",
        "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH",
        "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R",
        "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "IY", "z": "Z",
    }.items(),
    key=lambda kv: -len(kv[0]),
)  # fmt: skip


def _letter_to_sound(word: str) -> str:
    w = re.sub(r"[^a-z]", "", word)
    if not w:
        return ""
    if len(w) <= 4 and not re.search(r"[aeiouy]", w):  # an acronym without vowels: spell it
        return " ".join(_LETTERS[c] for c in w)
    if len(w) > 3 and w.endswith("e") and w[-2] not in "aeiouy":
        w = w[:-1]  # silent final e
    w = re.sub(r"([b-df-hj-np-tv-z])\1", r"\1", w)  # double consonants sound once
    phones: list[str] = []
    i = 0
    while i < len(w):
        if w[i] == "c" and i + 1 < len(w) and w[i + 1] in "eiy":
            phones.append("S")
            i += 1
            continue
        if w[i] == "y" and i == 0:
            phones.append("Y")
            i += 1
            continue
        for g, p in _RULES:
            if w.startswith(g, i):
                phones.extend(p.split())
                i += len(g)
                break
    return " ".join(phones)


def pronounce(word: str, decoder=None) -> str | None:
    """ARPABET phones for ``word``: dictionary, contraction variants, numbers, spelled letters, rules."""
    d = decoder if decoder is not None else _decoder("align")
    w = word.lower()
    ph = d.lookup_word(w)
    if ph:
        return ph
    stripped = w.replace("'", "")
    for suf, split in (("nt", 1), ("ve", 2), ("ll", 2), ("re", 2), ("s", 1), ("d", 1), ("m", 1)):
        if stripped.endswith(suf) and len(stripped) > len(suf) + 1:  # MOSI-style "didnt" -> "didn't"
            ph = d.lookup_word(stripped[:-split] + "'" + stripped[-split:])
            if ph:
                return ph
    parts: list[str] = []
    for chunk in re.findall(r"\d+|[a-z']+", w):
        if chunk.isdigit():
            nw = _number_words(int(chunk)) if len(chunk) <= 6 else [_ONES[int(c)] for c in chunk]
            parts.extend(p for x in nw if (p := d.lookup_word(x)))
        else:
            parts.append(
                d.lookup_word(chunk) or (_LETTERS[chunk] if chunk in _LETTERS else _letter_to_sound(chunk))
            )
    out = " ".join(p for p in parts if p)
    return out or None


def _ensure_words(decoder, words: list[str]) -> list[str]:
    """Add missing words to ``decoder``'s dictionary; returns the words as the decoder spells them."""
    spelled = []
    for w in words:
        if decoder.lookup_word(w) is None:
            ph = pronounce(w, decoder)
            if not ph:
                ph = "AH"
            decoder.add_word(w, ph, True)
        spelled.append(w)
    return spelled


# ----------------------------------------------------------------------------------- speech regions
def _frame_db(audio16: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(audio16) // hop
    if n == 0:
        return np.zeros(0, np.float32)
    fr = audio16[: n * hop].reshape(n, hop).astype(np.float64)
    return (10.0 * np.log10(np.mean(fr * fr, axis=1) + 1e-10)).astype(np.float32)


def _speech_threshold(db: np.ndarray, rel_db: float = 35.0) -> float:
    """Speech/non-speech level: ``rel_db`` under the loud frames, but above the noise floor."""
    if db.size == 0:
        return 0.0
    loud = float(np.percentile(db, 95))
    floor = float(np.percentile(db, 10))
    return max(loud - rel_db, floor + 0.3 * (loud - floor), -75.0)


def speech_regions(
    audio: np.ndarray, sr: int, min_pause_s: float = 0.3, max_len_s: float = 20.0, min_speech_s: float = 0.1
) -> list[tuple[float, float]]:
    """Energy-based speech regions (seconds): gaps shorter than ``min_pause_s`` are bridged, regions
    longer than ``max_len_s`` are cut at their quietest frame, 0.1 s of context is kept each side."""
    a16 = to_16k(audio, sr)
    db = _frame_db(a16)
    if db.size == 0:
        return []
    speech = db > _speech_threshold(db)
    idx = np.flatnonzero(speech)
    if idx.size == 0:
        return []
    regions: list[list[int]] = [[int(idx[0]), int(idx[0]) + 1]]
    gap = int(round(min_pause_s / FRAME_S))
    for i in idx[1:]:
        if i - regions[-1][1] <= gap:
            regions[-1][1] = int(i) + 1
        else:
            regions.append([int(i), int(i) + 1])
    regions = [r for r in regions if (r[1] - r[0]) * FRAME_S >= min_speech_s]
    out: list[tuple[int, int]] = []
    cap = max(int(max_len_s / FRAME_S), 10)
    stack = list(reversed([(a, b) for a, b in regions]))
    while stack:
        a, b = stack.pop()
        if b - a <= cap:
            out.append((a, b))
            continue
        lo, hi = a + (b - a) // 4, b - (b - a) // 4
        k = lo + int(np.argmin(db[lo:hi]))
        stack.extend([(k, b), (a, k)])
    n = db.size
    pad = 10
    return [(max(0, a - pad) * FRAME_S, min(n, b + pad) * FRAME_S) for a, b in sorted(out)]


# -------------------------------------------------------------------------------------- alignment
def _forced(audio16: np.ndarray, words: list[str]) -> list[tuple[int, int]] | None:
    """Frame spans of ``words`` from pocketsphinx alignment, or None when it fails / is implausible."""
    pcm = _pcm16(audio16)
    n_frames = len(audio16) // 160
    for wide in (False, True):
        with _LOCK:
            d = _decoder("align")
            try:
                _widen(d, wide)
                spelled = _ensure_words(d, words)
                d.set_align_text(" ".join(spelled))
                segs = _run(d, pcm)
            except (RuntimeError, ValueError):
                segs = None
        if not segs:
            continue
        spans = [(re.sub(r"\(\d+\)$", "", w), s, e) for w, s, e in segs if w not in _FILLERS]
        if [w for w, _, _ in spans] != words:
            continue
        if any(e < s or s < 0 or s > n_frames + 2 for _, s, e in spans):
            continue
        return [(s, e + 1) for _, s, e in spans]
    return None


def _refine(audio16: np.ndarray, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move word edges inward over frames far below the speech level (silence the aligner gave a word)."""
    db = _frame_db(audio16)
    if db.size == 0:
        return spans
    thr = _speech_threshold(db, rel_db=30.0)
    out = []
    for s, e in spans:
        s2, e2 = s, min(e, db.size)
        while s2 < e2 - 3 and db[s2] < thr:
            s2 += 1
        while e2 > s2 + 3 and db[e2 - 1] < thr:
            e2 -= 1
        if e2 - s2 < 3:  # nothing loud: keep the aligner's span
            s2, e2 = s, e
        out.append((s2, e2))
    return out


def _proportional(words: list[str], start: float, end: float) -> list[tuple[float, float]]:
    weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    return [(float(edges[i]), float(edges[i + 1])) for i in range(len(words))]


def _speech_span(audio16: np.ndarray, start: float, end: float) -> tuple[float, float]:
    regs = speech_regions(audio16, 16000, max_len_s=1e9)
    if not regs:
        return start, end
    return start + regs[0][0], min(end, start + regs[-1][1])


def _from_asr(words: list[str], asr_words: list[Word], start: float, end: float, audio16) -> list[Word]:
    """Times from matching ASR words; unmatched runs share the gaps between anchors proportionally."""
    asr_norm = [normalize_text(w.text, mosi=True) for w in asr_words]
    mine = [normalize_text(w, mosi=True) for w in words]
    times: list[tuple[float, float] | None] = [None] * len(words)
    sm = difflib.SequenceMatcher(a=mine, b=asr_norm, autojunk=False)
    for blk in sm.get_matching_blocks():
        for k in range(blk.size):
            aw = asr_words[blk.b + k]
            times[blk.a + k] = (aw.start, aw.end)
    out: list[Word] = []
    if all(t is None for t in times):
        s0, e0 = _speech_span(audio16, start, end)
        return [
            Word(w, a, b, "proportional")
            for w, (a, b) in zip(words, _proportional(words, s0, e0), strict=True)
        ]
    i = 0
    while i < len(words):
        if times[i] is not None:
            a, b = times[i]
            out.append(Word(words[i], a, b, "asr"))
            i += 1
            continue
        j = i
        while j < len(words) and times[j] is None:
            j += 1
        lo = out[-1].end if out else start
        hi = next((t[0] for t in times[j:] if t is not None), end)
        if hi <= lo:
            hi = lo
        for w, (a, b) in zip(words[i:j], _proportional(words[i:j], lo, hi), strict=True):
            out.append(Word(w, a, b, "proportional"))
        i = j
    return out


def _sanitize(words: list[Word], start: float, end: float) -> list[Word]:
    """Clip to [start, end], drop NaN, sort, remove overlaps (a word ends where the next begins)."""
    for w in words:
        a = w.start if math.isfinite(w.start) else start
        b = w.end if math.isfinite(w.end) else a
        a = min(max(a, start), end)
        b = min(max(b, a), end)
        w.start, w.end = float(a), float(b)
    words.sort(key=lambda w: (w.start, w.end))
    for prev, nxt in zip(words, words[1:], strict=False):
        if prev.end > nxt.start:
            prev.end = nxt.start
    return words


def align_words(
    audio: np.ndarray,
    sr: int,
    text: str,
    start: float = 0.0,
    end: float | None = None,
    asr_words: list[Word] | None = None,
    *,
    refine: bool = True,
) -> list[Word]:
    """Time every word of ``text`` inside ``audio[start:end]`` (seconds from the start of ``audio``).

    Forced alignment first; on failure ASR times (``asr_words``), else proportional timing. Words are
    normalised (:func:`~dmd_pipeline.extractors.transcribe.normalize_text`); times are absolute seconds.
    """
    words = normalize_text(text).split()
    duration = len(audio) / float(sr)
    start = float(min(max(start, 0.0), duration))
    end = duration if end is None else float(min(max(end, start), duration))
    if not words:
        return []
    a16 = to_16k(np.asarray(audio)[int(round(start * sr)) : int(round(end * sr))], sr)
    spans = _forced(a16, words) if len(a16) >= 1600 else None
    if spans is not None:
        if refine:
            spans = _refine(a16, spans)
        out = [
            Word(w, start + s * FRAME_S, start + e * FRAME_S, "forced")
            for w, (s, e) in zip(words, spans, strict=True)
        ]
    elif asr_words:
        out = _from_asr(words, list(asr_words), start, end, a16)
    else:
        s0, e0 = _speech_span(a16, start, end)
        out = [
            Word(w, a, b, "proportional")
            for w, (a, b) in zip(words, _proportional(words, s0, e0), strict=True)
        ]
    return _sanitize(out, start, end)


def align_transcript(
    transcript: Transcript, audio: np.ndarray, sr: int, *, pad_s: float = 0.25, realign_asr: bool = True
) -> Transcript:
    """Word times for every segment: sidecar times are kept; segments without words (and, with
    ``realign_asr``, ASR words) are force-aligned in a window widened by ``pad_s`` (never past a
    neighbouring segment); the segment span grows to cover its words."""
    duration = len(audio) / float(sr)
    segs = transcript.segments
    out: list[Segment] = []
    for i, seg in enumerate(segs):
        has_times = seg.words and all(w.source == "sidecar" for w in seg.words)
        if has_times or (seg.words and not realign_asr):
            out.append(Segment(seg.start, seg.end, seg.text, list(seg.words)))
            continue
        lo = max(0.0, seg.start - pad_s, (segs[i - 1].end + seg.start) / 2 if i > 0 else 0.0)
        hi = min(
            duration, seg.end + pad_s, (seg.end + segs[i + 1].start) / 2 if i + 1 < len(segs) else duration
        )
        if hi <= lo:
            lo, hi = max(0.0, seg.start), min(duration, max(seg.end, seg.start))
        words = align_words(audio, sr, seg.text, lo, hi, asr_words=seg.words or None)
        s = min([seg.start] + [w.start for w in words]) if words else seg.start
        e = max([seg.end] + [w.end for w in words]) if words else seg.end
        out.append(Segment(max(0.0, s), min(duration, e) if duration > 0 else e, seg.text, words))
    return Transcript(out, transcript.source, list(transcript.notes))


def _raw_pieces(text: str, n_words: list[int]) -> list[str] | None:
    """Split raw ``text`` into consecutive pieces holding ``n_words[k]`` normalised words each."""
    toks = text.split()
    counts = [len(normalize_text(t).split()) for t in toks]
    if sum(counts) != sum(n_words):
        return None
    pieces, k, acc, cur = [], 0, 0, []
    for t, c in zip(toks, counts, strict=True):
        if acc == n_words[k] and c > 0 and k + 1 < len(n_words):
            pieces.append(" ".join(cur))
            k, acc, cur = k + 1, 0, []
        cur.append(t)
        acc += c
    pieces.append(" ".join(cur))
    return pieces if len(pieces) == len(n_words) else None


def segment_transcript(
    transcript: Transcript,
    audio: np.ndarray,
    sr: int,
    max_len_s: float = 15.0,
    min_len_s: float = 1.0,
    pause_s: float = 1.0,
    merge_gap_s: float = 1.0,
    align: bool = True,
) -> list[Segment]:
    """Utterance units (MOSI-style opinion segments) with timed words.

    Segments are aligned first (``align``), then any segment longer than ``max_len_s`` is cut at its
    longest inter-word pause (recursively; pauses >= ``pause_s`` inside a long segment cut first),
    and segments shorter than ``min_len_s`` are merged into the nearer neighbour when the gap is below
    ``merge_gap_s`` and the result stays within ``max_len_s``. Raw text is split with the words.
    """
    t = align_transcript(transcript, audio, sr) if align else transcript
    pieces: list[Segment] = []
    for seg in t.segments:
        if not seg.words or seg.duration <= max_len_s:
            pieces.append(seg)
            continue
        parts = split_words_at_pauses(seg.words, pause_s=pause_s, max_len_s=max_len_s)
        raw = _raw_pieces(seg.text, [len(p.words) for p in parts])
        for k, p in enumerate(parts):
            pieces.append(Segment(p.start, p.end, raw[k] if raw else p.text, p.words))
    merged: list[Segment] = []
    for seg in pieces:
        merged.append(Segment(seg.start, seg.end, seg.text, list(seg.words)))
    changed = True
    while changed and len(merged) > 1:
        changed = False
        for i, seg in enumerate(merged):
            if seg.duration >= min_len_s:
                continue
            cands = []
            if i > 0:
                cands.append((seg.start - merged[i - 1].end, i - 1))
            if i + 1 < len(merged):
                cands.append((merged[i + 1].start - seg.end, i + 1))
            cands = [
                (g, j)
                for g, j in cands
                if g < merge_gap_s
                and max(seg.end, merged[j].end) - min(seg.start, merged[j].start) <= max_len_s
            ]
            if not cands:
                continue
            _, j = min(cands)
            a, b = (merged[j], seg) if j < i else (seg, merged[j])
            merged[min(i, j)] = Segment(
                a.start, max(a.end, b.end), f"{a.text} {b.text}".strip(), a.words + b.words
            )
            del merged[max(i, j)]
            changed = True
            break
    return merged
