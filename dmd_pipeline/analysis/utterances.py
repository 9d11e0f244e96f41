"""What gets scored: the utterances of a file (the transcript's segments cut and merged to sensible
lengths, :func:`utterances`), the windows a short-clip model scores a long utterance in
(:func:`analysis_windows`, :func:`input_span`), and the transcript a streamed file is cut by
(:func:`plan_streaming`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.analysis.analysis_options import AnalyzeOptions
from dmd_pipeline.errors import InputError
from dmd_pipeline.extractors.align import segment_transcript
from dmd_pipeline.extractors.transcribe import SIDECAR_SUFFIXES, find_sidecar, read_transcript_file
from dmd_pipeline.extractors.words import Segment, Transcript, Word
from dmd_pipeline.features import FeatureBundle


def given_transcript(value: str | Path | None, duration: float) -> tuple[str | None, list[Any], str | None]:
    """(text for the extractor, timed segments from a transcript file, transcript source label)."""
    if value is None:
        return None, [], None
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
    bundle: FeatureBundle, duration: float, options: AnalyzeOptions, spans: list[Segment] | None = None
) -> list[Segment]:
    """The utterance segments to score, in time order; one whole-file segment when there are no words."""
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


def window_segment(seg: Segment, start: float, end: float, last: bool) -> Segment:
    """A window of a segment as a Segment holding the words whose centre lies in it."""

    def inside(w: Word) -> bool:
        c = 0.5 * (w.start + w.end)
        return start <= c < end or (last and c >= end)

    words = [w for w in seg.words if inside(w)]
    return Segment(start, end, " ".join(w.text for w in words), words)


def plan_streaming(
    path: Path, options: AnalyzeOptions, duration: float
) -> tuple[bool, list[Any], str | None, str | None]:
    """Whether to analyse ``path`` in streaming windows, the timed transcript segments that then give each
    window its words, that transcript's source label, and a note when a long file cannot be streamed."""
    window = float(options.stream_window_s or 0.0)
    if window <= 0 or duration <= 1.5 * window:
        return False, [], None, None
    if options.transcript is not None:
        _text, timed, label = given_transcript(options.transcript, duration)
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
