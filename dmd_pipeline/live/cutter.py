"""Cutting a live audio stream into utterances as they finish: Silero voice activity per 32 ms frame
(:func:`dmd_pipeline.extractors.vad.speech_probabilities`, the same model the voice channel's evidence
uses), an utterance ending after ``pause_s`` without speech or at ``max_s``; each finished utterance comes
with its audio (padded by ``pad_s`` on both sides) and ``context_s`` of audio before it (the acoustic
features' context, as between the streaming windows of ``dmd analyze``).

With ``early=True`` the cutter also hands out an utterance *before* its pause is complete: as soon as the
silence after it reaches ``pad_s`` its samples are all known (the utterance ends ``pad_s`` after its last
voiced frame), so it comes out marked ``tentative``; the same utterance comes again, final, when the pause
reaches ``pause_s``, or never, when speech resumes first (the final one is then longer). A scorer can work
on the tentative one while the pause is being confirmed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dmd_pipeline.extractors.vad import FRAME, SPEECH_THRESHOLD, speech_probabilities


@dataclass
class Utterance:
    """A finished utterance on the stream's clock: ``[start, end)`` seconds, its samples, ``wide`` (the same
    with ``lead_s`` seconds of audio before it) and ``speech_s`` (seconds of voiced frames)."""

    index: int
    start: float
    end: float
    audio: np.ndarray
    wide: np.ndarray
    lead_s: float
    speech_s: float
    cut: str  # why it ended: pause | max | end
    #: the audio between the previous utterance's end and this one's start (None when longer than
    #: ``keep_gap_s``): what joins two utterances into one stretch when the scorer merges a backlog
    gap: np.ndarray | None = None
    #: handed out before its pause was complete (``early``): final only when the same span comes again
    tentative: bool = False


class UtteranceCutter:
    """Feed 16 kHz mono samples in order (:meth:`push`); finished utterances come back as they end;
    :meth:`flush` ends the one in progress (end of the stream)."""

    def __init__(
        self,
        sr: int = 16000,
        pause_s: float = 0.5,
        max_s: float = 10.0,
        min_speech_s: float = 0.25,
        pad_s: float = 0.2,
        context_s: float = 0.5,
        threshold: float = SPEECH_THRESHOLD,
        keep_gap_s: float = 10.0,
        early: bool = False,
    ) -> None:
        if sr != 16000:
            raise ValueError("the voice activity model takes 16 kHz audio")
        self.sr = sr
        self.frame_s = FRAME / sr
        self.pause_frames = max(1, int(round(pause_s / self.frame_s)))
        self.max_frames = max(2, int(round((max_s - pad_s) / self.frame_s)))  # the padding before counts
        self.min_speech_frames = max(1, int(round(min_speech_s / self.frame_s)))
        self.pad = int(round(pad_s * sr))
        self.context = int(round(context_s * sr))
        self.threshold = float(threshold)
        self.keep_gap = int(round(keep_gap_s * sr))
        self.early = bool(early)
        self._pad_frames = max(1, int(math.ceil(pad_s / self.frame_s)))  # silence that completes the audio
        self._early_for = -1  # the last voiced frame a tentative utterance was handed out for
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # stream sample index of _buf[0]
        self._tail = np.zeros(0, np.float32)  # samples not yet a whole frame
        self._frame = 0  # index of the next frame to classify
        self._start: int | None = None  # first voiced frame of the utterance in progress
        self._last_voiced = -1
        self._voiced = 0
        self._count = 0
        self._last_end = 0  # stream sample where the last utterance ended (they never overlap)

    def push(self, samples: np.ndarray) -> list[Utterance]:
        """Add samples; the utterances that finished in them."""
        x = np.concatenate([self._tail, np.asarray(samples, np.float32).reshape(-1)])
        n = (x.size // FRAME) * FRAME
        self._tail = x[n:].copy()
        if n == 0:
            return []
        whole = x[:n]
        self._buf = np.concatenate([self._buf, whole])
        probs = speech_probabilities(whole)
        out: list[Utterance] = []
        for p in probs:
            f = self._frame
            self._frame += 1
            if p >= self.threshold:
                if self._start is None:
                    self._start, self._voiced = f, 0
                self._last_voiced = f
                self._voiced += 1
            if self._start is None:
                continue
            if f - self._last_voiced >= self.pause_frames:
                out += self._finish(self._last_voiced + 1, "pause", pad_end=True)
            elif (
                self.early
                and f - self._last_voiced >= self._pad_frames
                and self._early_for != self._last_voiced
                and self._voiced >= self.min_speech_frames
            ):
                self._early_for = self._last_voiced
                out += self._build(self._last_voiced + 1, "pause", True, self._start, self._voiced, True)
            elif f + 1 - self._start >= self.max_frames:
                out += self._finish(f + 1, "max", pad_end=False)
        self._trim()
        return out

    def flush(self) -> list[Utterance]:
        """End of the stream: the utterance in progress, if it holds enough speech."""
        if self._start is None:
            return []
        return self._finish(min(self._frame, self._last_voiced + 1 + self.pause_frames), "end", pad_end=True)

    def _finish(self, end_frame: int, why: str, pad_end: bool) -> list[Utterance]:
        start_frame, voiced = self._start, self._voiced
        self._start, self._voiced = None, 0
        assert start_frame is not None
        if voiced < self.min_speech_frames:
            return []
        out = self._build(end_frame, why, pad_end, start_frame, voiced, False)
        if out:
            self._last_end = int(round(out[0].end * self.sr))
            self._count += 1
        return out

    def _build(
        self, end_frame: int, why: str, pad_end: bool, start_frame: int, voiced: int, tentative: bool
    ) -> list[Utterance]:
        """The utterance ending at ``end_frame`` (nothing of the cutter's state changes)."""
        a = max(self._buf_start, start_frame * FRAME - self.pad, self._last_end)
        b = min(self._buf_start + self._buf.size, end_frame * FRAME + (self.pad if pad_end else 0))
        if b <= a:
            return []
        prev_end = self._last_end
        lead = min(self.context, a - self._buf_start)
        i0, i1 = a - self._buf_start, b - self._buf_start
        gap = None
        if self._count and prev_end >= self._buf_start and a - prev_end <= self.keep_gap:
            gap = self._buf[prev_end - self._buf_start : i0].copy()
        utt = Utterance(
            index=self._count,
            start=a / self.sr,
            end=b / self.sr,
            audio=self._buf[i0:i1].copy(),
            wide=self._buf[i0 - lead : i1].copy(),
            lead_s=lead / self.sr,
            speech_s=voiced * self.frame_s,
            cut=why,
            gap=gap,
            tentative=tentative,
        )
        return [utt]

    def _trim(self) -> None:
        """Keep only the audio an utterance may still need (its start, padding and context, and the gap since
        the last utterance up to ``keep_gap_s``)."""
        if self._start is not None:
            keep_from = self._start * FRAME - self.pad - self.context
        else:
            keep_from = self._frame * FRAME - self.pad - self.context
        keep_from = max(self._buf_start, min(keep_from, max(self._last_end, keep_from - self.keep_gap)))
        drop = keep_from - self._buf_start
        if drop > self.sr:  # trim in steps of a second at least
            self._buf = self._buf[drop:].copy()
            self._buf_start = keep_from
