"""The live analysis of one source (``dmd live``): decode, cut utterances as they finish, score each with
the same extraction and scoring code as ``dmd analyze`` (:func:`dmd_pipeline.analysis.analyze.score_stretch`,
one scoring path, so every channel a result gains there appears here too), hand out one record per scored
utterance, and assemble the ``dmd analyze`` result of everything at the end
(:func:`~dmd_pipeline.analysis.analyze.assemble_result`).

Threads: the decoder (:class:`~dmd_pipeline.live.source.LiveDecoder`) reads ffmpeg's pipes and cuts
utterances (:class:`~dmd_pipeline.live.cutter.UtteranceCutter`) into a queue; one scoring thread takes them
in order, so decoding never waits for scoring. Latency is measured from the moment the stream's clock
passed an utterance's end to its result. When the scorer falls behind (a queue, or a latency over
``behind_s``) it says so and degrades: fewer face frames per utterance, down to none (audio is never
dropped; Whisper already decodes greedily, beam 1, so there is no smaller beam to fall back to); it
recovers when it has caught up.

Two things make an utterance cheap to score, neither changing what ``dmd analyze`` computes: speech
recognition encodes it in a Whisper window fitted to it (``asr_window="fit"``,
:func:`~dmd_pipeline.extractors.transcribe.fitted_windows`) instead of 30 s, and with ``--language auto`` the
stream's language is identified on its first utterances, until one identification is clear
(:data:`STREAM_LANGUAGE_CLEAR`), and then kept (as ``dmd analyze`` identifies a file's language once), so
that Whisper base no longer runs on every utterance. And the scorer starts early: while an utterance's pause
is being confirmed (the cutter's tentative utterance, ``early``) it already scores it, and hands the result
out the moment the pause is complete (or drops it when speech resumes first), so what remains at the end
of an utterance is only the rest of its scoring.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dmd_pipeline.errors import InputError
from dmd_pipeline.extractors.transcribe import fitted_windows
from dmd_pipeline.live.cutter import Utterance, UtteranceCutter
from dmd_pipeline.live.source import LiveDecoder, LiveSource, LiveSourceError

_NOTHING = object()  # no queue item held back
#: Seconds the scorer waits at most for the frames of an utterance's end (video decoding may lag the audio).
FRAME_WAIT_S = 1.0
#: Face-frame rate factors of the degradation levels (level 0: every decoded frame).
DEGRADE_FACE = (1.0, 0.5, 0.25, 0.0)
#: With ``--language auto`` the stream's language is identified on its utterances until one identification
#: is at least this probable; later utterances take it (``source: "file"``) instead of identifying again.
STREAM_LANGUAGE_CLEAR = 0.8
ASR_WINDOWS = ("fit", "full")
#: The Whisper model that transcribes English in ``dmd live`` (``--asr-model``; ``dmd analyze``'s default is
#: :data:`~dmd_pipeline.extractors.language.DEFAULT_ASR_MODEL`, Whisper base): tiny.en, for latency (it decodes
#: in ~0.45x Whisper base's time) and because Whisper base on one short utterance at a time added words nobody
#: said (a trailing "I'm sorry" after a 1.4 s RAVDESS sentence) where tiny.en did not (BENCHMARKS.md, "English
#: speech recognition on Whisper base").
LIVE_ASR_MODEL = "tiny.en"


@dataclass
class LiveOptions:
    """How to run a live analysis."""

    asr: str = "whisper"
    language: str = "auto"  # auto | en | a Whisper language code (extractors/language.py)
    asr_model: str = LIVE_ASR_MODEL  # the Whisper model that transcribes English: base | tiny.en
    pause_s: float = 0.5  # an utterance ends after this much silence
    max_utterance_s: float = 10.0  # ... or at this length
    min_speech_s: float = 0.25  # shorter bursts of voice are not utterances
    fps: float | None = None  # face frames per second decoded (None: the models' extraction rate)
    max_side: int | None = None  # frames are scaled down to this long side (None: as dmd analyze does)
    stall_s: float = 10.0  # a network source silent this long is reconnected
    retries: int = 3  # reconnection attempts after a drop (network sources)
    max_duration_s: float | None = None  # stop after this much stream time
    behind_s: float = 3.0  # a result later than this after its utterance's end counts as behind
    max_backlog: int = 8  # utterances waiting above which the backlog is reported as too long
    stop_on_backlog: bool = False  # end the run (instead of only saying so) when over max_backlog
    join_s: float = 25.0  # a backlog of utterances is scored as one stretch up to this long (one ASR pass)
    asr_window: str = "fit"  # fit: Whisper's window fitted to the utterance; full: 30 s, as dmd analyze
    early: bool = True  # score an utterance while its pause is being confirmed (UtteranceCutter early)


@dataclass
class LiveStats:
    """What a live run measured: per utterance latency (s, from the end of the utterance on the stream's
    clock to its result), the queue it found, and the run's totals."""

    latencies: list[float] = field(default_factory=list)
    backlog: list[int] = field(default_factory=list)
    utterances: int = 0
    early_used: int = 0  # utterances whose result was computed while their pause was confirmed
    early_discarded: int = 0  # ... computed for nothing (speech resumed within the pause)
    behind: int = 0
    max_level: int = 0
    face_frames_used: int = 0
    face_frames_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """p50/p95/max latency and the largest backlog (the result's ``timings``: live_*)."""
        lat = np.asarray(self.latencies, np.float64)
        out = {"live_utterances": float(self.utterances), "live_behind": float(self.behind)}
        if lat.size:
            out.update(
                live_latency_p50=round(float(np.percentile(lat, 50)), 4),
                live_latency_p95=round(float(np.percentile(lat, 95)), 4),
                live_latency_max=round(float(lat.max()), 4),
            )
        out["live_backlog_max"] = float(max(self.backlog, default=0))
        return out


class _Frames:
    """Decoded frames waiting for their utterance (bounded: the oldest go first)."""

    def __init__(self, max_frames: int) -> None:
        self._items: deque[tuple[float, np.ndarray]] = deque(maxlen=max_frames)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.latest = float("-inf")

    def add(self, t: float, frame: np.ndarray) -> None:
        with self._cond:
            self._items.append((t, frame))
            self.latest = t
            self._cond.notify_all()

    def wait_until(self, t: float, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for a frame at ``t`` or later: video decoding may run a little
        behind the audio."""
        with self._cond:
            self._cond.wait_for(lambda: self.latest >= t, timeout=timeout)

    def take(self, a: float, b: float, every: float) -> tuple[list[tuple[float, np.ndarray]], int]:
        """Frames in ``[a, b)`` at least ``every`` seconds apart (``inf``: none), dropping older ones;
        (frames, how many in the span were skipped)."""
        with self._lock:
            while self._items and self._items[0][0] < a - 1e-9:
                self._items.popleft()
            span = [(t, f) for t, f in self._items if t < b - 1e-9]
        out: list[tuple[float, np.ndarray]] = []
        if np.isfinite(every):
            for t, f in span:
                if not out or t - out[-1][0] >= every - 1e-6:
                    out.append((t, f))
        return out, len(span) - len(out)


class LiveRunner:
    """One live analysis. ``on_result(record)`` gets one dict per scored utterance (the ``segments[]`` entry
    of the result, stream times, plus ``live``: latency and load); ``on_status(msg)`` the run's news
    (reconnects, falling behind). :meth:`run` blocks until the stream ends or :meth:`stop`."""

    def __init__(
        self,
        source: LiveSource,
        models: Any = None,
        options: LiveOptions | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        from dmd_pipeline.analysis import registry
        from dmd_pipeline.analysis.analysis_options import AnalyzeOptions
        from dmd_pipeline.analysis.analyze import run_names, split_face_model
        from dmd_pipeline.analysis.extraction import as_model_list, get_extractor

        self.source = source
        self.options = options or LiveOptions()
        loaded = registry.load_models(models)  # None: the defaults; loaded models are kept as they are
        # the face-expression model (if any) builds the face channel, as in dmd analyze
        dmd_models, self.face_model = split_face_model(loaded)
        self.models = as_model_list(dmd_models)
        self.names = run_names(self.models)
        self.analyze_options = AnalyzeOptions(
            asr=self.options.asr,
            language=self.options.language,
            asr_model=self.options.asr_model,
            max_segment_s=self.options.max_utterance_s,
        )
        self.ext = get_extractor(self.models, self.analyze_options, self.face_model)
        self.on_result = on_result or (lambda _r: None)
        self.on_status = on_status or (lambda _m: None)
        self.stats = LiveStats()
        self.parts: list[Any] = []
        self.fps = float(self.options.fps or self.ext.config.fps)
        self._queue: queue.Queue[tuple[Utterance, float] | None] = queue.Queue()
        self._frames = _Frames(max_frames=int(self.fps * 60) + 1)
        self._walls: deque[tuple[float, float]] = deque(maxlen=400)  # (stream clock, wall time)
        self._stop = threading.Event()
        self._level = 0
        self._error: BaseException | None = None
        self._held: Any = _NOTHING  # taken from the queue but not joinable: scored next (None: the end)
        sr = self.ext.config.sample_rate
        o = self.options
        self.cutter = UtteranceCutter(sr, o.pause_s, o.max_utterance_s, o.min_speech_s, early=o.early)
        self.decoder = LiveDecoder(
            source, self._on_audio, self._frames.add, sr=sr, fps=self.fps, max_side=o.max_side or self.ext.config.max_side or 640,
            stall_s=o.stall_s, retries=o.retries, on_status=self.on_status,
        )  # fmt: skip
        self._info: Any = None
        self.duration = 0.0
        if self.options.asr_window not in ASR_WINDOWS:
            raise ValueError(
                f"asr_window must be one of {', '.join(ASR_WINDOWS)}, not {self.options.asr_window!r}"
            )
        #: the stream's language record once identified clearly (--language auto), else None
        self.stream_language: dict[str, Any] | None = None

    # -- the decoder's side ---------------------------------------------------------------------------
    def _on_audio(self, x: np.ndarray, wall: float) -> None:
        clock = self.decoder.clock
        self._walls.append((clock, wall))
        for utt in self.cutter.push(x):
            self._queue.put((utt, self._wall_at(utt.end)))
        limit = self.options.max_duration_s
        if limit and clock >= limit and not self._stop.is_set():
            self.on_status(f"reached --duration {limit:g} s")
            self.stop()

    def _wall_at(self, t: float) -> float:
        """The wall time (monotonic) at which the stream's clock reached ``t``."""
        for clock, wall in self._walls:
            if clock >= t - 1e-6:
                return wall
        return self._walls[-1][1] if self._walls else time.monotonic()

    # -- control --------------------------------------------------------------------------------------
    def stop(self) -> None:
        """End the run: decoding stops now; what was finished is still scored and handed out."""
        self._stop.set()
        self.decoder.stop()
        if self.source.feed is not None:
            self.source.feed.close()

    def warm_up(self) -> None:
        """Load every model and run one stretch of synthetic input through the scoring path, so that the
        first utterance is not slowed by lazy loading."""
        from dmd_pipeline.analysis.analyze import assemble_result, score_stretch

        sr = self.ext.config.sample_rate
        t = np.arange(int(1.5 * sr)) / sr
        tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        frames = [(k / self.fps, np.zeros((180, 320, 3), np.uint8)) for k in range(3)]
        bundle = self.ext.extract_arrays("warm-up", self._media_info(True, True), tone, frames, 0.0, 1.5)
        part = score_stretch("warm-up", bundle, self.models, self.names, self.ext, self.analyze_options, 0.0,
                             (), self.face_model)  # fmt: skip
        assemble_result(
            "warm-up", self.models, self.names, [part], 1.5, self.analyze_options, {}, self.face_model
        )
        if any("text" in m.modalities for m in self.models):
            _ = self.ext.text_encoder

    def _media_info(self, has_audio: bool, has_video: bool) -> Any:
        from dmd_pipeline.media import MediaInfo

        size = self.decoder.frame_size or (0, 0)
        base = self.source.info
        return MediaInfo(
            path=self.source.spec, duration=0.0, has_audio=has_audio, has_video=has_video,
            width=int(size[0] or (base.width if base else 0)), height=int(size[1] or (base.height if base else 0)),
            fps=self.fps if has_video else 0.0, rotation=0, n_frames=None,
            audio_sample_rate=self.ext.config.sample_rate if has_audio else 0, audio_channels=1 if has_audio else 0,
            format_name=self.source.kind,
        )  # fmt: skip

    def run(self) -> Any:
        """Decode and score until the stream ends or :meth:`stop`; the assembled result (an
        :class:`~dmd_pipeline.analysis.result.AnalysisResult`), or None when no utterance was heard.
        Raises LiveSourceError when the source cannot be read at all."""
        scorer = threading.Thread(target=self._score_loop, name="dmd-live-score", daemon=True)
        scorer.start()
        decoder_error: list[BaseException] = []

        def decode() -> None:
            try:
                self.decoder.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                decoder_error.append(exc)
            finally:
                for utt in self.cutter.flush():  # the stream ended or was stopped: its last utterance
                    self._queue.put((utt, self._wall_at(utt.end)))
                self._queue.put(None)

        reader = threading.Thread(target=decode, name="dmd-live-decode", daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(timeout=0.2)
        while scorer.is_alive():
            scorer.join(timeout=0.2)
        self.duration = self.decoder.clock
        if decoder_error and not self.parts:
            raise decoder_error[0]
        if decoder_error:
            exc = decoder_error[0]
            self.stats.notes.append(
                str(exc) if isinstance(exc, LiveSourceError) else f"decoding failed: {exc}"
            )
        if self._error is not None:
            raise self._error
        return self.result()

    # -- the scorer's side ----------------------------------------------------------------------------
    def _score_loop(self) -> None:
        pending: tuple[Utterance, Callable[[float], None]] | None = None  # scored ahead of its pause
        try:
            while True:
                item = self._queue.get() if self._held is _NOTHING else self._held
                self._held = _NOTHING
                if item is None:
                    return
                utt = item[0]
                if pending is not None:
                    early, publish = pending
                    pending = None
                    if not utt.tentative and (utt.start, utt.end) == (early.start, early.end):
                        self.stats.early_used += 1
                        publish(item[1])  # the pause is confirmed: the result computed during it
                        continue
                    self.stats.early_discarded += 1  # speech resumed: the longer utterance is scored
                if utt.tentative:
                    if self._level == 0 and self._queue.qsize() == 0:  # never speculate when behind
                        pending = self._guarded([item], hold=True)
                    continue
                self._guarded([item] + self._joinable(utt))
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._error = exc
            self.stop()
            while self._queue.get() is not None:  # let the decoder thread finish its puts
                pass

    def _guarded(self, batch: list[tuple[Utterance, float]], hold: bool = False) -> Any:
        """:meth:`_score`; a stretch that cannot be scored is said (and the run goes on)."""
        try:
            publish = self._score(batch, hold)
        except InputError as exc:
            if hold:
                return None
            msg = f"utterances at {batch[0][0].start:.2f}-{batch[-1][0].end:.2f} s not scored: {exc.reason}"
            self.stats.notes.append(msg)
            self.on_status(msg)
            return None
        return (batch[0][0], publish) if hold else None

    def _adjust(self, waiting: int, lag: float) -> None:
        """Degrade (fewer face frames) when behind; recover when caught up."""
        o = self.options
        before = self._level
        behind = waiting > 0 or lag > o.behind_s
        if behind and self._level < len(DEGRADE_FACE) - 1:
            self._level += 1
        elif not behind and lag < 0.5 * o.behind_s and self._level > 0:
            self._level -= 1
        self.stats.max_level = max(self.stats.max_level, self._level)
        if self._level != before:
            face = self.fps * DEGRADE_FACE[self._level]
            what = f"face frames at {face:g}/s" if face else "no face frames"
            if self._level > before:
                self.on_status(
                    f"behind: {waiting} utterance(s) waiting, {lag:.1f} s late; degrading to {what}"
                )
            else:
                self.on_status(f"caught up: back to {what}")
        if waiting > o.max_backlog:
            self.on_status(
                f"backlog of {waiting} utterances (over {o.max_backlog}): this machine cannot keep up"
            )
            if o.stop_on_backlog:
                self.stats.notes.append(f"stopped: a backlog of {waiting} utterances (over {o.max_backlog})")
                self.stop()

    def _joinable(self, first: Utterance) -> list[tuple[Utterance, float]]:
        """Utterances already waiting behind ``first`` that join it into one stretch (contiguous audio, at
        most ``join_s`` long): a backlog is scored in one pass of the models (speech recognition costs about
        the same for 2 s or 25 s of audio) instead of growing."""
        out: list[tuple[Utterance, float]] = []
        while True:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return out
            if nxt is not None and nxt[0].tentative:  # behind: no early scoring (its final one follows)
                continue
            if nxt is None or nxt[0].gap is None or nxt[0].end - first.start > self.options.join_s:
                self._held = nxt
                return out
            out.append(nxt)

    def _score(self, batch: list[tuple[Utterance, float]], hold: bool = False) -> Callable[[float], None]:
        """Score ``batch`` (utterances joined into one stretch) and hand out one record per utterance; with
        ``hold`` (a tentative utterance) nothing is handed out yet: the returned ``publish(wall)`` does it
        once the pause is confirmed (``wall``: when the stream passed the utterance's end)."""
        from dmd_pipeline.analysis.analyze import assemble_result, score_stretch
        from dmd_pipeline.extractors.words import Segment
        from dmd_pipeline.streaming import spans_in
        from dmd_pipeline.utils import json_safe

        utts = [u for u, _ in batch]
        first, last = utts[0], utts[-1]
        t_start = time.monotonic()
        waiting = (
            self._queue.qsize() + (self._held is not _NOTHING and self._held is not None) + len(batch) - 1
        )
        self._adjust(waiting, time.monotonic() - batch[0][1])
        factor = DEGRADE_FACE[self._level]
        every = 1.0 / (self.fps * factor) if factor > 0 else float("inf")
        if self.decoder.video and np.isfinite(every) and not self._stop.is_set():
            self._frames.wait_until(last.end - 1.0 / self.fps, timeout=FRAME_WAIT_S)
        t_frames = time.monotonic()
        frames, skipped = self._frames.take(first.start, last.end, every)
        has_video = self.decoder.video and (self.decoder.stats.frames > 0 or bool(frames))
        info = self._media_info(True, has_video)
        pieces = [first.audio]
        for u in utts[1:]:
            pieces += [u.gap, u.audio]  # type: ignore[list-item]
        audio = np.concatenate(pieces) if len(pieces) > 1 else first.audio
        wide = np.concatenate([first.wide[: first.wide.size - first.audio.size], audio])
        with fitted_windows() if self.options.asr_window == "fit" else nullcontext():
            bundle = self.ext.extract_arrays(
                self.source.spec, info, audio, frames if has_video else None, first.start, last.end - first.start,
                wide=wide, lead_s=first.lead_s, language=self.stream_language,
            )  # fmt: skip
        self._learn_language(bundle.metadata.get("language"))
        spans = []
        if len(utts) > 1:  # joined: each utterance's recognised text groups its words, as a transcript does
            for u in utts:
                a, b = u.start - first.start, u.end - first.start
                said = " ".join(x.text.strip() for x in spans_in(bundle.segments, a, b) if x.text.strip())
                if not said:  # a recognised segment running across two utterances: its words
                    said = " ".join(w.text for w in bundle.words if a <= 0.5 * (w.start + w.end) < b)
                spans.append(Segment(a, b, said, []))
        part = score_stretch(self.source.spec, bundle, self.models, self.names, self.ext, self.analyze_options,
                             first.start, spans, self.face_model)  # fmt: skip
        del bundle
        t_scored = time.monotonic()

        def publish(wall: float | None = None) -> None:
            self.parts.append(part)
            self.stats.face_frames_used += len(frames)
            self.stats.face_frames_dropped += skipped
            # the stretch assembled alone: its segments get every channel the final result gives them
            view = assemble_result(self.source.spec, self.models, self.names, [part], last.end,
                                   self.analyze_options, {}, self.face_model)  # fmt: skip
            now = time.monotonic()
            base = sum(len(p.segments) for p in self.parts[:-1])
            for k, seg in enumerate(view.segments):
                mid = 0.5 * (seg.start + seg.end)
                j = min(range(len(utts)), key=lambda i: 0.0 if utts[i].start <= mid < utts[i].end else
                        min(abs(mid - utts[i].start), abs(mid - utts[i].end)))  # fmt: skip
                latency = now - (batch[j][1] if wall is None else wall)
                behind = waiting > 0 or latency > self.options.behind_s
                self.stats.latencies.append(latency)
                self.stats.backlog.append(waiting)
                self.stats.behind += int(behind)
                self.stats.utterances += 1
                rec = json_safe(asdict(seg))
                rec["index"] = base + k
                rec["live"] = {
                    "utterance": utts[j].index, "latency_s": round(latency, 3), "waiting": waiting,
                    "behind": behind, "joined": len(utts), "degrade_level": self._level, "face_frames": len(frames),
                    "cut": utts[j].cut, "early": hold,
                    # where the latency went: end -> scoring started (the pause's confirmation, a queue),
                    # waiting for the video frames, scoring (features, models, fusion)
                    "started_s": round(t_start - batch[j][1], 3), "frames_wait_s": round(t_frames - t_start, 3),
                    "scoring_s": round(t_scored - t_frames, 3),
                }  # fmt: skip
                self.on_result({"type": "utterance", **rec})

        if not hold:
            publish()
        return publish

    def _learn_language(self, spoken: dict[str, Any] | None) -> None:
        """Keep the stream's language once an utterance's identification is clear (--language auto)."""
        if self.stream_language is not None or self.options.language != "auto" or not spoken:
            return
        prob = spoken.get("probability")
        if spoken.get("source") == "detected" and prob is not None and prob >= STREAM_LANGUAGE_CLEAR:
            self.stream_language = {"code": spoken["code"], "probability": prob, "source": "file"}
            self.on_status(f"language: {spoken['code']} ({prob:.2f}), kept for the rest of the stream")

    # -- the end --------------------------------------------------------------------------------------
    def result(self) -> Any:
        """The assembled ``dmd analyze`` result of the run (None before any utterance)."""
        from dmd_pipeline.analysis.analyze import assemble_result

        if not self.parts:
            return None
        timings = dict(self.stats.summary())
        res = assemble_result(self.source.spec, self.models, self.names, self.parts,
                              max(self.duration, self.parts[-1].segments[-1].end if self.parts[-1].segments else 0.0),
                              self.analyze_options, timings, self.face_model)  # fmt: skip
        notes = list(self.decoder.stats.notes) + list(self.stats.notes)
        if self.stats.behind:
            notes.append(
                f"live: behind the stream for {self.stats.behind} of {self.stats.utterances} utterances "
                f"(face frames reduced; {self.stats.face_frames_dropped} face frames dropped, no audio)"
            )
        res.warnings.extend(n for n in notes if n not in res.warnings)
        res.options = {
            "asr": self.options.asr,
            "models": [{"name": n} for n in self.names],
            "live": {
                "source": self.source.spec, "kind": self.source.kind, **{
                    k: v for k, v in asdict(self.options).items() if v is not None},
                "face_fps": self.fps, "reconnects": self.decoder.stats.reconnects,
                "gap_filled_s": round(self.decoder.stats.gap_s, 3),
                "face_frames_used": self.stats.face_frames_used,
                "face_frames_dropped": self.stats.face_frames_dropped,
                "degrade_level_max": self.stats.max_level,
                "stream_language": self.stream_language,
                "early_used": self.stats.early_used,
                "early_discarded": self.stats.early_discarded,
            },
        }  # fmt: skip
        return res


def latency_percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/max of latencies (seconds); empty without values."""
    v = np.asarray(list(values), np.float64)
    if not v.size:
        return {}
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "max": float(v.max())}
