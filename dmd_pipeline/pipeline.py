"""The extraction pipeline: one media file (or a segment of it) -> :class:`~dmd_pipeline.features.FeatureBundle`.

Stages: ``probe`` -> ``audio`` (16 kHz mono, decoded once), then three paths that need nothing from each
other: ``visual`` (frames streamed from ffmpeg into the face landmarker), ``acoustic`` (librosa / Whisper
encoder on the decoded audio) and the speech path ``transcript`` (given > sidecar > ASR) -> ``align``
(forced alignment of the words) -> ``text`` (tokens + encoder). By default (``Extractor(concurrent=True)``)
the face and acoustic paths run on two stage threads while the calling thread runs the speech path; the
output is the same as serial (``concurrent=False``). Each stage's wall time goes into
``bundle.metadata["timings"]`` (with concurrent stages they overlap, so they add up to more than the total);
a failing stage raises :class:`~dmd_pipeline.errors.InputError` with ``stage`` set to the stage name.

Missing modalities: a file without a video stream gives ``visual=None``; a file without an audio stream gives
``acoustic=None`` and, unless a transcript was given, ``text=None`` (a given transcript is still encoded,
with proportional word times). :func:`~dmd_pipeline.model_input.to_model_inputs` turns a missing modality into zeros with length 0.
The settings live in :mod:`dmd_pipeline.feature_config` and the model-input layout in
:mod:`dmd_pipeline.model_input` (both importable from here as before).

:class:`Extractor` loads each model once, lazily, and keeps it for every later clip. With a
:class:`~dmd_pipeline.features.FeatureCache` a clip already extracted with the same configuration is read
back from disk and no stage runs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.errors import DMDError, InputError
from dmd_pipeline.extractors.transcribe import to_16k
from dmd_pipeline.extractors.vad import FRAME_S, SPEECH_THRESHOLD, speech_probabilities
from dmd_pipeline.feature_config import (  # noqa: F401 - re-exported: the pipeline API
    ALIGNED_SEQ_LENS,
    ASR_ENGINES,
    UNALIGNED_SEQ_LENS,
    ExtractionConfig,
)
from dmd_pipeline.features import (
    FeatureBundle,
    FeatureCache,
    package_versions,
    word_source_counts,
)
from dmd_pipeline.model_input import select_columns, to_model_inputs  # noqa: F401 - re-exported
from dmd_pipeline.streaming import (  # noqa: F401 - spans_in re-exported
    FrameQueue,
    cut_point,
    spans_in,
    trim_frames,
)
from dmd_pipeline.utils import config_hash, path_problem, sha256_file

#: Stage messages ("clip.mp4: transcribe", "loading the text encoder") at INFO; the CLI shows them live.
logger = logging.getLogger("dmd_pipeline.pipeline")

STAGES = ("probe", "audio", "transcript", "language", "align", "acoustic", "visual", "text")

#: Stage messages ("clip.mp4: transcribe", "loading the text encoder") at INFO; the CLI shows them live.
logger = logging.getLogger("dmd_pipeline.pipeline")


class Extractor:
    """Extracts feature bundles; loads every model once (lazily) and reuses it for all clips.

    ``cache``: a :class:`FeatureCache`, a cache folder, or None (no cache). ``calls`` counts how often each
    stage actually ran (a cache hit runs none).
    """

    def __init__(
        self,
        config: ExtractionConfig | None = None,
        cache: FeatureCache | str | Path | None = None,
        concurrent: bool = True,
    ):
        self.config = config or ExtractionConfig()
        #: run the face and acoustic stages on stage threads beside the speech path (same output as serial)
        self.concurrent = bool(concurrent)
        #: identify the language of a given or sidecar transcript's audio, and of each segment, too (the
        #: analysis sets it: its words channel needs the language; ``dmd extract`` and ``dmd evaluate`` only
        #: need it to pick the ASR model, which speech recognition does itself). Not part of the features.
        self.identify_languages = False
        self._pool: ThreadPoolExecutor | None = None
        self._calls_lock = threading.Lock()
        self.cache = FeatureCache(cache) if isinstance(cache, (str, Path)) else cache
        self.calls: Counter[str] = Counter()
        self.load_timings: dict[str, float] = {}
        self._acoustic: Any = None
        self._visual: Any = None
        self._text: Any = None
        self._feature_hash: str | None = None
        # sha256 per (file, size, mtime): segments cut from one long video hash it once, not once each
        self._source_sha: dict[tuple[str, int, int], str] = {}

    # -- lazily loaded models -------------------------------------------------------------------------
    @property
    def feature_hash(self) -> str:
        """:meth:`ExtractionConfig.feature_hash`, computed once."""
        if self._feature_hash is None:
            self._feature_hash = self.config.feature_hash()
        return self._feature_hash

    @property
    def acoustic(self) -> Any:
        """The acoustic extractor of ``config.acoustic`` (created on first use): librosa's
        :class:`~dmd_pipeline.extractors.acoustic.AcousticExtractor` or a
        :class:`~dmd_pipeline.extractors.whisper_encoder.AcousticFeatureSet`."""
        if self._acoustic is None:
            logger.info("loading the acoustic extractor (%s)", self.config.acoustic)
            t0 = time.perf_counter()
            from dmd_pipeline.extractors.whisper_encoder import make_acoustic_extractor

            self._acoustic = make_acoustic_extractor(self.config.acoustic, self.config.whisper_model)
            self.load_timings["acoustic"] = time.perf_counter() - t0
        return self._acoustic

    @property
    def visual(self) -> Any:
        """The visual extractor of ``config.visual`` (created on first use): the
        :class:`~dmd_pipeline.extractors.visual.VisualExtractor` or a
        :class:`~dmd_pipeline.face.features.VisualFeatureSet`."""
        if self._visual is None:
            logger.info("loading the face landmarker (%s)", self.config.visual)
            t0 = time.perf_counter()
            from dmd_pipeline.face.features import make_visual_extractor

            crop = None
            if self.config.face_crop is not None:
                from dmd_pipeline.face.crop import CropTemplate

                crop = CropTemplate.from_dict(self.config.face_crop)
            self._visual = make_visual_extractor(
                self.config.visual, self.config.face_model, self.config.keep_landmarks, face_crop=crop
            )
            self.load_timings["visual"] = time.perf_counter() - t0
        return self._visual

    @property
    def text_encoder(self) -> Any:
        """The :class:`~dmd_pipeline.extractors.text.TextEncoder` (created on first use)."""
        if self._text is None:
            logger.info("loading the text encoder")
            t0 = time.perf_counter()
            from dmd_pipeline.extractors.text import TextEncoder

            self._text = TextEncoder(model_path=self.config.text_model, device=self.config.device)
            self.load_timings["text"] = time.perf_counter() - t0
        return self._text

    def dims(self) -> dict[str, int]:
        """Feature dimensions (text, audio, vision) of this configuration (loads the extractors)."""
        return {
            "text": int(self.text_encoder.dim),
            "audio": int(self.acoustic.dim),
            "vision": int(self.visual.dim),
        }

    def feature_spec(self) -> dict:
        """Dims, feature names, config and hashes: what a dataset sidecar records about the features."""
        return {
            "dims": self.dims(),
            "names": {
                "audio": list(self.acoustic.feature_names),
                "vision": list(self.visual.feature_names),
            },
            "extractor_hashes": {
                "acoustic": _safe_hash(self.acoustic),
                "visual": _safe_hash(self.visual),
                "text": _safe_hash(self.text_encoder),
            },
            "feature_hash": self.feature_hash,
            "config": self.config.to_dict(),
            "acoustic": self.config.acoustic,
            "visual": self.config.visual,
            "audio_rate_hz": round(1.0 / float(self.acoustic.hop_s), 6),
            "versions": package_versions(),
        }

    def close(self) -> None:
        """Free the mediapipe graph now (explicitly, rather than from a garbage-collector finaliser) and stop
        the stage threads."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        vis, self._visual = self._visual, None
        close = getattr(vis, "close", None)
        if callable(close):
            close()

    # -- extraction ------------------------------------------------------------------------------------
    def extract_clip(
        self,
        path: str | Path,
        start: float | None = None,
        end: float | None = None,
        transcript: str | None = None,
        use_cache: bool = True,
    ) -> FeatureBundle:
        """Extract one clip (``[start, end)`` seconds of ``path`` when given). ``transcript`` overrides
        sidecar files and ASR; its words are still force-aligned. Raises InputError(path, reason, stage)."""
        path = Path(path)
        timings: dict[str, float] = {}
        with self._stage("input", path, timings):
            problem = path_problem(path)  # loops, dangling links, FIFOs, devices: never opened
            if problem is not None:
                raise InputError(path, problem)
            sha = self._source_sha256(path)
        key = self.cache_key(path, sha, start, end, transcript)
        if self.cache is not None and use_cache:
            t0 = time.perf_counter()
            hit = self.cache.get(key)
            if hit is not None:
                hit.metadata["cache"] = {"hit": True, "key": key, "read_s": time.perf_counter() - t0}
                return hit
        bundle = self._extract(path, sha, start, end, transcript, timings)
        bundle.metadata["cache"] = {"hit": False, "key": key}
        if self.cache is not None:
            self.cache.put(key, bundle)
        return bundle

    def cache_key(
        self, path: Path, sha: str, start: float | None, end: float | None, transcript: str | None
    ) -> str:
        """:meth:`FeatureCache.key` of a clip: media sha256, feature hash, span, given transcript and, when
        the sidecar transcript is what will be read (whole file, no given text), the sidecar's identity."""
        sidecar = None
        given = transcript is not None and bool(transcript.strip())
        if not given and start is None and end is None:
            sidecar = self.sidecar_identity(path)
        return FeatureCache.key(sha, self.feature_hash, start, end, transcript, sidecar=sidecar)

    @staticmethod
    def sidecar_identity(path: Path) -> str | None:
        """``"<suffix>:<sha256>"`` of the transcript file beside ``path`` (None without one); an unreadable
        or over-large sidecar gets an identity no cached entry has, so extraction runs and reports it."""
        import hashlib

        from dmd_pipeline.extractors.transcribe import MAX_TRANSCRIPT_BYTES, find_sidecar
        from dmd_pipeline.utils import read_bytes_bounded

        side = find_sidecar(path)
        if side is None:
            return None
        try:
            digest = hashlib.sha256(read_bytes_bounded(side, MAX_TRANSCRIPT_BYTES)).hexdigest()
        except (OSError, ValueError) as exc:
            digest = f"unreadable-{type(exc).__name__}-{time.time_ns()}"
        return f"{side.suffix.lower()}:{digest}"

    def _source_sha256(self, path: Path) -> str:
        st = path.stat()
        ident = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if ident not in self._source_sha:
            self._source_sha[ident] = sha256_file(path)
        return self._source_sha[ident]

    def _extract(
        self,
        path: Path,
        sha: str,
        start: float | None,
        end: float | None,
        given: str | None,
        timings: dict[str, float],
    ) -> FeatureBundle:
        from dmd_pipeline import media

        cfg = self.config
        sr = cfg.sample_rate
        notes: list[str] = []
        with self._stage("probe", path, timings):
            info = media.probe(path)
        clip_start = float(start or 0.0)
        clip_end = float(end) if end is not None else info.duration
        duration = max(0.0, clip_end - clip_start)
        decode: dict[str, Any] = {"expected_s": round(duration, 3)}

        audio = None
        if info.has_audio:
            with self._stage("audio", path, timings):
                audio = media.load_audio(path, sr=sr, start=start, end=end, info=info)
        audio = _checked_audio(audio, info.has_audio, sr, duration, bool(given), notes, decode)

        frames = None
        if info.has_video:
            frames = media.iter_frames(
                path, fps=cfg.fps, start=start, end=end, max_side=cfg.max_side, info=info
            )
        source = {"path": str(path), "sha256": sha, "start": start, "end": end, "duration": duration}
        return self._bundle(
            path, info, source, clip_start, duration, audio, None, 0.0, frames, given,
            start is not None or end is not None, timings, notes, decode,
        )  # fmt: skip

    def _bundle(
        self,
        path: Path,
        info: Any,
        source: dict[str, Any],
        clip_start: float,
        duration: float,
        audio: np.ndarray | None,
        wide: np.ndarray | None,
        lead_s: float,
        frames: Iterator[tuple[float, np.ndarray]] | None,
        given: str | None,
        is_segment: bool,
        timings: dict[str, float],
        notes: list[str],
        decode: dict[str, Any],
        asr: bool = True,
        open_end: bool = False,
        language: dict[str, Any] | None = None,
    ) -> FeatureBundle:
        """The three feature paths over decoded ``audio`` (``wide``: the same with acoustic context, starting
        ``lead_s`` earlier; ``open_end``: the file's last window, whose acoustic frames run to the end of
        the decoded track) and ``frames`` (file times) of the stretch starting at ``clip_start``;
        ``language``: a language record already known for this audio (see :meth:`extract_arrays`)."""
        cfg = self.config
        sr = cfg.sample_rate
        # Three paths that need nothing from each other: faces (frames), acoustic features (audio) and the
        # speech path (transcript -> alignment -> text). With ``concurrent`` the first two run on stage
        # threads while this thread runs the speech path: ffmpeg, CTranslate2, mediapipe, pocketsphinx and
        # numpy/torch kernels release the GIL, so on 2 cores the total is close to the slowest path.
        stop = threading.Event()
        visual_job: Future | None = None
        acoustic_job: Future | None = None
        try:
            if frames is not None:
                vis = self.visual  # load outside the timed stage
                visual_job = self._start(
                    "visual", path, timings, lambda: vis.extract(_until(stop, _shift(frames, clip_start)))
                )
            if audio is not None:
                aco = self.acoustic
                if not self.concurrent:
                    warm_up_imports()  # librosa's imports overlap ASR/alignment (C++ code that frees the GIL)
                if wide is not None:
                    acoustic_job = self._start(
                        "acoustic",
                        path,
                        timings,
                        lambda: trim_frames(aco.extract(wide, sr), lead_s, np.inf if open_end else duration),
                    )
                else:
                    acoustic_job = self._start("acoustic", path, timings, lambda: aco.extract(audio, sr))

            segments: list = []
            words: list = []
            transcript_source = None
            asr_quality: dict = {}
            spoken: dict | None = None
            asr_model: str | None = None
            with self._stage("transcript", path, timings):
                tr = self._transcript(path, audio, sr, given, duration, is_segment, asr, language)
            if tr is not None and language is not None and getattr(tr, "language", None) is not None:
                tr.language = dict(language)  # the record as known (its source), not "given"
            if tr is not None:
                transcript_source = tr.source
                asr_quality = dict(getattr(tr, "quality", {}) or {})
                asr_model = getattr(tr, "asr_model", None)
                notes.extend(getattr(tr, "notes", []) or [])
                english = True
                if tr.segments:
                    if audio is not None:
                        with self._stage("language", path, timings):
                            spoken = self._languages(tr, audio, sr, per_segment=language is None)
                    english = (spoken or {}).get("code") in (None, "en")
                    with self._stage("align", path, timings):
                        tr = self._align(tr, audio, sr, duration, realign_asr=english)
                segments = list(tr.segments)
                words = [w for seg in segments for w in seg.words]
                fallback = sum(1 for w in words if w.source in ("asr", "proportional"))
                if not english:  # the aligner's dictionary is English: Whisper's own word times are kept
                    fallback = sum(1 for w in words if w.source == "proportional")
                if fallback:  # e.g. a transcript that does not match the audio makes forced alignment fail
                    notes.append(
                        f"forced alignment did not place {fallback} of {len(words)} words (does the transcript "
                        "match the audio?): their times come from the ASR or are proportional inside the segment"
                    )
            speech_s = None
            vad = None  # Silero speech probability per FRAME_S of the clip: also which face speaks
            if audio is not None:  # the evidence a voice model needs (analysis: MIN_VOICE_SPEECH_S)
                with self._stage("speech", path, timings):
                    vad = speech_probabilities(to_16k(audio, sr))
                    speech_s = round(float(np.count_nonzero(vad >= SPEECH_THRESHOLD)) * FRAME_S, 3)

            text = None
            if words:
                enc = self.text_encoder
                with self._stage("text", path, timings):
                    text = enc.encode([w.text for w in words], max_len=cfg.seq_lens[0])
            elif audio is not None:
                notes.append("no words (no transcript, or none recognised): text missing")

            visual = visual_job.result() if visual_job is not None else None
            acoustic = acoustic_job.result() if acoustic_job is not None else None
        finally:
            stop.set()  # on a failure: the face stage stops at its next frame (and closes ffmpeg)
            for job in (visual_job, acoustic_job):
                if job is not None:
                    wait([job])  # no stage thread outlives the call (nor writes into ``timings`` later)
        if visual is not None:
            visual = speaking_face(visual, segments, vad, duration)
            times = np.asarray(getattr(visual, "times", []), dtype=np.float64)
            if times.size:
                decode["video_s"] = round(float(times[-1]) + 1.0 / cfg.fps, 3)
                if _stopped_early(decode["video_s"], duration):
                    window = (clip_start, clip_start + duration) if "window" in source else None
                    notes.append(_early_note("video", decode["video_s"], duration, window))

        bundle = FeatureBundle(text=text, acoustic=acoustic, visual=visual, words=words, segments=segments)
        bundle.metadata = {
            "source": source,
            "media": dataclasses.asdict(info),
            "feature_hash": self.feature_hash,
            "config": cfg.to_dict(),
            "versions": package_versions(),
            "modalities": bundle.modalities,
            "transcript_source": transcript_source,
            "speech_s": speech_s,  # seconds of detected speech (Silero VAD); None without audio
            "word_sources": word_source_counts(words),
            "dims": self._known_dims(text, acoustic, visual),
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "notes": notes,
            "decode": {
                **decode,
                "stopped_early": any(
                    _stopped_early(decode[k], duration) for k in ("audio_s", "video_s") if k in decode
                ),
            },
        }
        if asr_quality:
            bundle.metadata["asr_quality"] = asr_quality
        if spoken is not None:
            bundle.metadata["language"] = spoken
        if asr_model is not None:
            bundle.metadata["asr_model"] = asr_model
        return bundle

    def extract_stream(
        self,
        path: str | Path,
        window_s: float = 60.0,
        search_s: float = 5.0,
        context_s: float = 0.5,
        spans: Sequence[Any] | None = None,
    ) -> Iterator[FeatureBundle]:
        """The whole file as consecutive windows of about ``window_s`` seconds, one FeatureBundle each (times
        relative to the window; ``metadata["source"]`` has its ``start``/``end`` in the file), so memory is
        bounded by the window, not the file: one ffmpeg process decodes the audio front to back
        (:class:`~dmd_pipeline.media.AudioStream`) and one the frames; a window's samples are freed once
        it is done.

        Each boundary lies within ``search_s`` of its nominal place, on a 0.2 s grid: in a pause between two
        of ``spans`` (the timed segments of a transcript file, whose words become each window's given
        transcript; :func:`spans_in`) when there is one, else at the quietest point, so that no word is cut.
        Acoustic features see ``context_s`` of audio across each boundary and equal the whole file's frame
        for frame; faces are tracked across boundaries by one landmarker. No feature cache is used.
        """
        from dmd_pipeline import media

        path = Path(path)
        problem = path_problem(path)
        if problem is not None:
            raise InputError(path, problem)
        cfg = self.config
        sr = cfg.sample_rate
        timings: dict[str, float] = {}
        with self._stage("input", path, timings):
            sha = self._source_sha256(path)
        with self._stage("probe", path, timings):
            info = media.probe(path)
        duration = float(info.duration)
        stream = None
        frames = None
        try:
            with self._stage("audio", path, timings):
                stream = media.AudioStream(path, sr=sr, info=info) if info.has_audio else None
            if info.has_video:
                frames = FrameQueue(media.iter_frames(path, fps=cfg.fps, max_side=cfg.max_side, info=info))
            buf = np.zeros(0, np.float32)
            buf_start = 0  # file sample index of buf[0]
            ended = stream is None
            t0, k = 0.0, 0
            while t0 < duration - 1e-6:
                notes: list[str] = []
                nominal = t0 + window_s
                last = nominal + 0.5 * window_s >= duration
                upto = duration if last else min(duration, nominal + search_s + context_s)
                if not ended:
                    with self._stage("audio", path, timings):
                        need = int(round(upto * sr)) - (buf_start + len(buf))
                        if last:
                            need = max(need, 0) + 10 * sr  # to the end of the track, whatever probe said
                        more = stream.read(need) if need > 0 else np.zeros(0, np.float32)
                        ended = len(more) < need
                        buf = np.concatenate([buf, more]) if more.size else buf
                cut = duration if last else cut_point(buf, buf_start, sr, nominal, search_s, spans)
                i0 = int(round(t0 * sr)) - buf_start
                i1 = int(round(cut * sr)) - buf_start if not last else len(buf)
                audio = buf[i0:i1] if stream is not None else None
                lead = min(context_s, i0 / sr)
                wide = buf[int(round(i0 - lead * sr)) : min(len(buf), i1 + int(round(context_s * sr)))]
                span = cut - t0
                decode: dict[str, Any] = {"expected_s": round(span, 3)}
                audio = _checked_audio(
                    audio, stream is not None, sr, span, bool(spans), notes, decode, " here", (t0, cut)
                )
                if audio is None:
                    wide = None
                window_spans = spans_in(spans, t0, cut) if spans else []
                given = " ".join(x.text.strip() for x in window_spans if x.text.strip()) if spans else None
                source = {
                    "path": str(path), "sha256": sha, "start": round(t0, 6), "end": round(cut, 6),
                    "duration": span, "window": k,
                }  # fmt: skip
                bundle = self._bundle(
                    path, info, source, t0, span, audio, wide, lead,
                    frames.until(cut) if frames is not None else None,
                    given or None, True, timings, notes, decode, asr=not spans, open_end=last,
                )  # fmt: skip
                bundle.metadata["cache"] = {"hit": False, "streamed": True}
                timings = {}
                yield bundle
                # nothing of this window stays referenced here (its bundle, audio views) while the next one is
                # extracted, and the freed memory goes back to the system: peak memory is one window's
                del bundle, audio, wide
                keep = max(0, int(round((cut - context_s) * sr)) - buf_start)  # the next window's lead-in
                buf, buf_start = buf[keep:].copy(), buf_start + keep
                release_memory()
                t0, k = cut, k + 1
        finally:
            if stream is not None:
                stream.close()
            if frames is not None:
                frames.close()

    def extract_arrays(
        self,
        name: str,
        info: Any,
        audio: np.ndarray | None,
        frames: Iterable[tuple[float, np.ndarray]] | None,
        start: float,
        duration: float,
        wide: np.ndarray | None = None,
        lead_s: float = 0.0,
        language: dict[str, Any] | None = None,
    ) -> FeatureBundle:
        """One stretch of a live stream already decoded in memory (``dmd live``): ``audio`` (mono at
        ``config.sample_rate``) and ``frames`` (``(stream time, RGB frame)``) of ``[start, start + duration)``
        on the stream's clock, through the same three feature paths as a file (speech recognition on this
        audio; ``wide``: the same audio with ``lead_s`` of acoustic context before it). ``name`` labels the
        stages and errors; ``info`` is the stream's :class:`~dmd_pipeline.media.MediaInfo`. No cache.

        ``language``: the stream's language record once identified (``{"code", "probability", "source"}``):
        speech recognition takes its code instead of identifying the language of this stretch again (as
        ``dmd analyze`` identifies a file's language once), and the stretch records this record as its language."""
        path = Path(name)
        timings: dict[str, float] = {}
        notes: list[str] = []
        decode: dict[str, Any] = {"expected_s": round(duration, 3)}
        sr = self.config.sample_rate
        has_audio = audio is not None
        audio = _checked_audio(audio, has_audio, sr, duration, False, notes, decode)
        if audio is None:
            wide = None
        source = {"path": name, "sha256": None, "start": round(start, 6), "end": round(start + duration, 6),
                  "duration": duration, "live": True}  # fmt: skip
        bundle = self._bundle(
            path, info, source, start, duration, audio, wide, lead_s, frames, None, True, timings, notes, decode,
            language=language,
        )  # fmt: skip
        bundle.metadata["cache"] = {"hit": False, "live": True}
        return bundle

    def _transcript(
        self,
        path: Path,
        audio: np.ndarray | None,
        sr: int,
        given: str | None,
        duration: float,
        is_segment: bool,
        asr: bool = True,
        language: dict[str, Any] | None = None,
    ) -> Any:
        """Given text > sidecar file (whole files only) > ASR (unless ``asr`` is False: a streaming window
        of a file with a transcript; in ``language``'s code when given, else ``config.language``); None when
        there is nothing to transcribe."""
        from dmd_pipeline.extractors import transcribe as tx

        if given is not None and given.strip():
            text = " ".join(given.split())
            return tx.Transcript([tx.Segment(0.0, duration, text, [])], "given")
        if not asr:
            return None
        sidecar_path = None if is_segment else path  # sidecar times refer to the whole file
        if audio is None:  # nothing to recognise, but a sidecar transcript still gives the text
            sidecar = tx.find_sidecar(path) if sidecar_path is not None else None
            if sidecar is None:
                return None
            tr = tx.read_transcript_file(sidecar, duration=duration)
            tr.source = f"sidecar:{sidecar}"
            return tr
        return tx.get_transcript(
            sidecar_path,
            audio,
            sr,
            transcript=None,
            asr=self.config.asr,
            model_path=self.config.whisper_model,
            language=(language or {}).get("code") or self.config.language,
            asr_model=self.config.asr_model,
        )

    def _languages(
        self, tr: Any, audio: np.ndarray, sr: int, per_segment: bool = True
    ) -> dict[str, Any] | None:
        """The spoken language of a transcript's audio (:mod:`~dmd_pipeline.extractors.language`): the file's
        (what speech recognition found, else the given ``--language``, else, with :attr:`identify_languages`,
        identified now) and, under ``"segments"``, each segment's (identified on its own audio only with
        :attr:`identify_languages` and ``per_segment`` and when the file is not clearly one language,
        :func:`~dmd_pipeline.extractors.language.one_language`; else the file's)."""
        from dmd_pipeline.extractors import language as lang_id
        from dmd_pipeline.extractors.transcribe import whisper_base_model

        setting = self.config.language
        audio16 = to_16k(audio, sr)
        spoken = dict(tr.language) if getattr(tr, "language", None) else None
        if spoken is None:
            if setting != lang_id.LANGUAGE_AUTO:
                spoken = lang_id.record(setting, None, "given")
            elif self.identify_languages and len(audio16) >= 0.2 * lang_id.SR:
                spoken = lang_id.detect(audio16, whisper_base_model())
        spans = [(float(s.start), float(s.end)) for s in tr.segments]
        own = len(spans) > 1 and not lang_id.one_language(spoken, len(audio16) / lang_id.SR)
        if setting == lang_id.LANGUAGE_AUTO and own and self.identify_languages and per_segment:
            per = lang_id.segment_languages(audio16, spans, spoken, whisper_base_model())
        else:  # one segment is the file; a given language holds for every segment
            same = lang_id.record(spoken["code"], spoken["probability"], "file") if spoken else None
            per = [same for _ in spans]
        if spoken is not None:
            spoken["segments"] = [
                {"start": round(a, 3), "end": round(b, 3), **rec} for (a, b), rec in zip(spans, per, strict=True) if rec
            ]
        return spoken

    def _align(
        self, tr: Any, audio: np.ndarray | None, sr: int, duration: float, realign_asr: bool = True
    ) -> Any:
        """Force-align the words of every segment (sidecar word times are kept; ASR word times too unless
        ``realign_asr``: the aligner's dictionary is English); without audio the words share each segment's
        span in proportion to their length (``source="proportional"``)."""
        from dmd_pipeline.extractors import align
        from dmd_pipeline.extractors.transcribe import Segment, Transcript, Word, normalize_text

        if audio is not None:
            return align.align_transcript(tr, audio, sr, realign_asr=realign_asr)
        segs = []
        for seg in tr.segments:
            toks = normalize_text(seg.text).split()
            lo, hi = seg.start, seg.end if seg.end > seg.start else duration
            weights = np.array([len(t) + 1 for t in toks], dtype=np.float64)
            edges = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(weights) / max(weights.sum(), 1.0)])
            ws = [Word(t, float(edges[i]), float(edges[i + 1]), "proportional") for i, t in enumerate(toks)]
            segs.append(Segment(seg.start, seg.end, seg.text, ws))
        return Transcript(segs, tr.source, list(getattr(tr, "notes", [])))

    def _known_dims(self, text: Any, acoustic: Any, visual: Any) -> dict[str, int]:
        """Dims of the present modalities, and of missing ones when their extractor is already loaded."""
        dims: dict[str, int] = {}
        for name, feats, attr, ext in (
            ("text", text, "features", self._text),
            ("audio", acoustic, "values", self._acoustic),
            ("vision", visual, "values", self._visual),
        ):
            if feats is not None:
                dims[name] = int(np.asarray(getattr(feats, attr)).shape[-1])
            elif ext is not None:
                dims[name] = int(ext.dim)
        return dims

    def _start(self, name: str, path: Path, timings: dict[str, float], fn: Callable[[], Any]) -> Future:
        """Run stage ``name`` (``fn`` inside :meth:`_stage`) on a stage thread when ``concurrent``, else now;
        either way the result (or the stage's InputError) comes from the returned future."""

        def run() -> Any:
            with self._stage(name, path, timings):
                return fn()

        if self.concurrent:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dmd-stage")
            return self._pool.submit(run)
        done: Future = Future()
        done.set_result(run())  # serial: a failure raises here, before the next stage starts
        return done

    @contextmanager
    def _stage(self, name: str, path: Path, timings: dict[str, float]) -> Iterator[None]:
        """Time a stage, count it, and turn any failure into InputError(path, reason, stage=name).

        Problems of the installation (missing model files, bad configuration) are not input errors and
        propagate unchanged.
        """
        with self._calls_lock:
            self.calls[name] += 1
        logger.info("%s: %s", path.name, name)
        t0 = time.perf_counter()
        try:
            yield
        except InputError as exc:
            exc.stage = name
            raise
        except DMDError:
            raise
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:
            raise InputError(path, f"{type(exc).__name__}: {exc}", stage=name) from exc
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def _checked_audio(
    audio: np.ndarray | None,
    has_audio: bool,
    sr: int,
    expected_s: float,
    has_text: bool,
    notes: list[str],
    decode: dict[str, Any],
    where: str = "",
    window: tuple[float, float] | None = None,
) -> np.ndarray | None:
    """The decoded audio of a clip or ``window`` (its file times), or None when there is none; notes why,
    and records the decoded length in ``decode`` (with a note when decoding stopped early)."""
    if not has_audio:
        notes.append("no audio stream: acoustic features missing" + ("" if has_text else ", text missing"))
        return None
    if audio is None or audio.size == 0:
        notes.append(f"the audio track decoded to no samples{where}: audio and speech treated as missing")
        return None
    decode["audio_s"] = round(audio.size / float(sr), 3)
    if _stopped_early(decode["audio_s"], expected_s):
        notes.append(_early_note("audio", decode["audio_s"], expected_s, window))
    return audio


def _stopped_early(decoded_s: float, expected_s: float) -> bool:
    """True when a stream decoded clearly shorter than the container says (truncated or corrupt media)."""
    return expected_s > 0 and decoded_s < expected_s - max(0.5, 0.1 * expected_s)


def _early_note(
    stream: str, decoded_s: float, expected_s: float, window: tuple[float, float] | None = None
) -> str:
    """The note for a stream that decoded short: of the file, or of one streaming ``window`` (file times),
    whose own length is not the file's."""
    if window is not None:
        a, b = window
        return (
            f"decoding stopped early in the window {a:.2f}-{b:.2f} s: only {decoded_s:.2f} of its "
            f"{expected_s:.2f} s of {stream} could be decoded (truncated or corrupt file?); the rest of it is "
            "missing from the result"
        )
    return (
        f"decoding stopped early: the file says {expected_s:.2f} s but only {decoded_s:.2f} s of {stream} "
        "could be decoded (truncated or corrupt file?); the rest is missing from the result"
    )


_WARM_UP: list = []


def warm_up_imports() -> None:
    """Import librosa's feature modules and load its kernels (about 1.5-2 s in a fresh process) in a daemon
    thread, once per process, so that they load while the speech and face stages run; the acoustic stage
    then finds them ready (or waits in :func:`~dmd_pipeline.extractors.acoustic.librosa_ready` for the
    rest). Nothing else is shared with the thread."""
    if _WARM_UP:
        return
    import threading

    def _imports() -> None:
        try:
            # librosa's submodules and compiled kernels, loaded under the numba-cache lock (see there)
            from dmd_pipeline.extractors.acoustic import librosa_ready

            librosa_ready()
        except Exception:  # noqa: BLE001 - the acoustic stage imports again and reports any failure
            pass

    thread = threading.Thread(target=_imports, name="dmd-warm-up-imports", daemon=True)
    _WARM_UP.append(thread)
    thread.start()


def _until(
    stop: threading.Event, frames: Iterator[tuple[float, np.ndarray]]
) -> Iterator[tuple[float, np.ndarray]]:
    """``frames`` until ``stop`` is set (another stage failed); closes the source either way (ffmpeg ends)."""
    try:
        for item in frames:
            if stop.is_set():
                return
            yield item
    finally:
        close = getattr(frames, "close", None)
        if callable(close):
            close()


def speaking_face(visual: Any, segments: Sequence[Any], vad: np.ndarray | None, duration: float) -> Any:
    """The clip's frames with each transcript segment's speaking face (the whole clip as one segment when
    there are none; :func:`dmd_pipeline.face.speaking.compose`); the per-frame speech activity is kept in
    ``extras["speech"]`` (absent without audio), so that analysis can choose again for its utterances."""
    from dmd_pipeline.extractors.base import FrameFeatures
    from dmd_pipeline.face.speaking import compose, speech_at_frames

    if not isinstance(visual, FrameFeatures):
        return visual
    extras = dict(visual.extras)
    extras.pop("speech", None)
    if vad is not None:
        extras["speech"] = speech_at_frames(visual.times, vad, FRAME_S)
    visual = FrameFeatures(visual.values, visual.times, list(visual.names), extras)
    spans = [(float(s.start), float(s.end)) for s in segments if float(s.end) > float(s.start)]
    return compose(visual, spans or [(0.0, max(float(duration), 0.0))])[0]


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc ``malloc_trim``; a no-op
    elsewhere): between streaming windows, so that the peak stays that of one window."""
    import ctypes
    import gc

    gc.collect()
    with suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _shift(frames: Iterable[tuple[float, np.ndarray]], offset: float) -> Iterator[tuple[float, np.ndarray]]:
    """Frame timestamps relative to the clip start (media.iter_frames gives file time)."""
    for t, frame in frames:
        yield t - offset, frame


def _safe_hash(obj: Any) -> str | None:
    fn = getattr(obj, "config_hash", None)
    return fn() if callable(fn) else None


_DEFAULT_EXTRACTORS: dict[str, Extractor] = {}


def extract_clip(
    path: str | Path,
    config: ExtractionConfig | None = None,
    start: float | None = None,
    end: float | None = None,
    transcript: str | None = None,
    cache: FeatureCache | str | Path | None = None,
) -> FeatureBundle:
    """Convenience wrapper: one :class:`Extractor` per (config, cache) is kept per process, so repeated
    calls load the models once. Prefer an explicit :class:`Extractor` in long-lived code."""
    config = config or ExtractionConfig()
    root = cache.root if isinstance(cache, FeatureCache) else cache
    key = config_hash({"config": config.to_dict(), "cache": str(root) if root is not None else None})
    if key not in _DEFAULT_EXTRACTORS:
        _DEFAULT_EXTRACTORS[key] = Extractor(config, cache=cache)
    return _DEFAULT_EXTRACTORS[key].extract_clip(path, start=start, end=end, transcript=transcript)
