"""What ``dmd live`` reads and how: :func:`parse_source` turns a SOURCE (a file, a network URL, a camera, a
microphone or ``-``) into the ffmpeg input options it needs (with the input guards of
:func:`dmd_pipeline.media.live_input_args`: a network source may use its own scheme's protocols only), and
:class:`LiveDecoder` runs ONE ffmpeg process that decodes the audio to 16 kHz mono float32 on its stdout and
video frames at a low rate and small size (PPM images, which carry their own size) on a second pipe.

The decoder reads both pipes on their own threads, so decoding never waits for scoring; the stream's clock
is the count of audio samples (frames are stamped by their index at the output rate). A network source that
stalls (no data for ``stall_s``) or ends is reconnected up to ``retries`` times, the gap filled with silence
so that the clock keeps pace with the wall clock; a source that never delivers anything raises
:class:`LiveSourceError` naming it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmd_pipeline import media
from dmd_pipeline.errors import DMDError
from dmd_pipeline.utils import path_problem

#: URL schemes read as live network streams.
NETWORK_SCHEMES = tuple(media.LIVE_PROTOCOLS)
#: Seconds of silence at most put in for a gap while a dropped network source was reconnecting.
MAX_GAP_FILL_S = 30.0
#: Seconds a (re)connected source may take beyond ``stall_s`` to deliver its first data (connecting, probing).
STARTUP_GRACE_S = 2.0


class LiveSourceError(DMDError):
    """A live source that cannot be opened or read (unreachable, refused, not a media stream)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class Feed:
    """Bytes of a container handed to ffmpeg's stdin as they come (e.g. a browser's MediaRecorder chunks over
    a WebSocket), at most ``max_bytes`` buffered: :meth:`put` refuses more instead of growing."""

    def __init__(self, max_bytes: int = 8 << 20) -> None:
        import queue

        self.max_bytes = int(max_bytes)
        self.buffered = 0
        self._q: queue.Queue[bytes | None] = queue.Queue()
        self._lock = threading.Lock()

    def put(self, data: bytes) -> bool:
        """Queue ``data`` for ffmpeg; False (nothing queued) when that would exceed ``max_bytes``."""
        with self._lock:
            if self.buffered + len(data) > self.max_bytes:
                return False
            self.buffered += len(data)
        self._q.put(bytes(data))
        return True

    def close(self) -> None:
        """The end of the input: ffmpeg reads to the end of what was queued, then the stream ends."""
        self._q.put(None)

    def pump(self, fh) -> None:  # noqa: ANN001 - ffmpeg's stdin
        """Write the queued bytes into ``fh`` until :meth:`close` (or ffmpeg is gone); then close ``fh``."""
        try:
            while True:
                data = self._q.get()
                if data is None:
                    return
                with self._lock:
                    self.buffered -= len(data)
                fh.write(data)
                fh.flush()
        except (BrokenPipeError, OSError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError, ValueError):
                fh.close()


@dataclass
class LiveSource:
    """A parsed SOURCE: ``kind`` is file | network | camera | microphone | stdin; ``args`` the ffmpeg input
    options (guards and ``-i``); ``has_audio``/``has_video`` None when only the stream itself can tell."""

    spec: str
    kind: str
    args: list[str]
    has_audio: bool | None = None
    has_video: bool | None = None
    info: media.MediaInfo | None = None
    feed: Feed | None = None

    @property
    def reconnects(self) -> bool:
        """Whether a drop is retried (network streams only: a file, a device or stdin that ends has ended)."""
        return self.kind == "network"

    @property
    def stem(self) -> str:
        """A file-name stem for its outputs: the file's stem, else ``live``."""
        return Path(self.spec).stem if self.kind == "file" else "live"


def parse_source(spec: str, realtime: bool = False, mic: str | None = None, video: bool = True) -> LiveSource:
    """SOURCE -> :class:`LiveSource`. ``udp://``, ``rtp://``, ``rtsp://``, ``srt://``, ``http(s)://``: a
    network stream; ``/dev/videoN``: a camera (v4l2; ``mic`` adds a microphone); ``alsa:DEVICE`` or
    ``pulse:DEVICE``: a microphone; ``-``: a container on stdin; anything else: a local file (``realtime``:
    read at its own pace, ``-re``). ``video=False`` decodes no frames. Raises LiveSourceError."""
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme:
        if scheme not in media.LIVE_PROTOCOLS:
            raise LiveSourceError(
                spec, f"the {scheme}:// scheme is not read (use one of {', '.join(NETWORK_SCHEMES)})"
            )
        tune = ["-probesize", "1000000", "-analyzeduration", "1000000"]
        extra = ["-rtsp_transport", "tcp"] if scheme == "rtsp" else []
        return LiveSource(spec, "network", tune + extra + media.live_input_args(scheme) + ["-i", spec],
                          None, None if video else False)  # fmt: skip
    if spec == "-":
        return LiveSource(spec, "stdin", media.live_input_args("pipe") + ["-i", "pipe:0"], None,
                          None if video else False)  # fmt: skip
    dev, _, name = spec.partition(":")
    if dev in ("alsa", "pulse") and name:
        return LiveSource(
            spec, "microphone", media.live_input_args(dev) + ["-f", dev, "-i", name], True, False
        )
    if spec.startswith("/dev/video"):
        if not Path(spec).exists():
            raise LiveSourceError(spec, "no such camera device")
        args = media.live_input_args("v4l2") + ["-f", "video4linux2", "-i", spec]
        has_audio = False
        if mic:
            mdev, _, mname = mic.partition(":")
            if mdev not in ("alsa", "pulse") or not mname:
                raise LiveSourceError(mic, "a microphone is alsa:DEVICE or pulse:DEVICE (e.g. alsa:default)")
            args += media.live_input_args(mdev) + ["-f", mdev, "-i", mname]
            has_audio = True
        return LiveSource(spec, "camera", args, has_audio, video)
    problem = path_problem(spec)
    if problem is not None:
        raise LiveSourceError(spec, problem)
    try:
        info = media.probe(spec)
    except DMDError as exc:
        raise LiveSourceError(spec, getattr(exc, "reason", str(exc))) from None
    args = (["-re"] if realtime else []) + media.live_input_args("file") + ["-i", spec]
    return LiveSource(spec, "file", args, info.has_audio, info.has_video and video, info)


#: Default ports of the URL schemes that connect over TCP (checked by :func:`check_reachable`).
_TCP_PORTS = {"rtsp": 554, "http": 80, "https": 443}


def check_reachable(src: LiveSource, timeout_s: float = 5.0) -> None:
    """Fail fast, before any model loads, when a network source that connects over TCP (rtsp, http,
    https) refuses or does not answer: LiveSourceError naming it. Listening sources (udp, rtp, srt) and
    local ones pass (their problems show when data does not come)."""
    import socket
    from urllib.parse import urlsplit

    if src.kind != "network":
        return
    parts = urlsplit(src.spec)
    scheme = parts.scheme.lower()
    if scheme not in _TCP_PORTS:
        return
    try:
        host, port = parts.hostname, parts.port or _TCP_PORTS[scheme]
    except ValueError as exc:
        raise LiveSourceError(src.spec, f"bad address ({exc})") from None
    if not host:
        raise LiveSourceError(src.spec, "no host in the address")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, socket.timeout):
            reason = f"no answer in {timeout_s:g} s"
        raise LiveSourceError(src.spec, f"unreachable ({host}:{port}: {reason.lower()})") from None


def feed_source(feed: Feed, label: str = "websocket", video: bool = True) -> LiveSource:
    """A container written into ``feed`` as it comes (``dmd serve``'s ``/v1/live``: a browser's webm)."""
    tune = ["-probesize", "500000", "-analyzeduration", "1000000"]
    return LiveSource(label, "feed", tune + media.live_input_args("pipe") + ["-i", "pipe:0"], None, video or False,
                      feed=feed)  # fmt: skip


def _video_filter(fps: float, max_side: int) -> str:
    """Frames at ``fps``, the long side scaled down to ``max_side`` (even sizes, aspect kept)."""
    s = int(max_side)
    return f"fps={fps:g},scale=w='if(gte(iw,ih),min({s},iw),-2)':h='if(gte(iw,ih),-2,min({s},ih))':flags=area"


def ffmpeg_command(
    src: LiveSource, sr: int, fps: float, max_side: int, audio: bool, video_fd: int | None
) -> list[str]:
    """The one ffmpeg command of a live source: audio (if ``audio``) as f32le mono at ``sr`` on stdout, with
    gaps in the input filled so samples keep the input's time; frames (if ``video_fd``) as PPM images on
    that pipe."""
    cmd = [media.ffmpeg_exe(), *([] if src.kind in ("stdin", "feed") else ["-nostdin"]), "-hide_banner",
           "-loglevel", "error", "-fflags", "+discardcorrupt", *src.args]  # fmt: skip
    if audio:
        audio_map = "1:a:0" if src.kind == "camera" else "0:a:0"
        cmd += ["-map", audio_map, "-af", "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(int(sr)),
                "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1"]  # fmt: skip
    if video_fd is not None:
        cmd += ["-map", "0:v:0", "-vf", _video_filter(fps, max_side), "-f", "image2pipe", "-c:v", "ppm",
                f"pipe:{video_fd}"]  # fmt: skip
    return cmd


def read_ppm(fh) -> tuple[np.ndarray | None, bool]:  # noqa: ANN001 - a binary pipe
    """One binary PPM (P6, maxval 255) image from a pipe as HxWx3 uint8; (None, True) at the end."""
    tokens: list[bytes] = []
    cur = b""
    while len(tokens) < 4:
        c = fh.read(1)
        if not c:
            return None, True
        if c == b"#":  # a comment runs to the end of the line
            while c not in (b"\n", b""):
                c = fh.read(1)
            continue
        if c.isspace():
            if cur:
                tokens.append(cur)
                cur = b""
            continue
        cur += c
    if tokens[0] != b"P6" or tokens[3] != b"255":
        raise ValueError(f"unexpected image header {b' '.join(tokens)!r}")
    w, h = int(tokens[1]), int(tokens[2])
    n = w * h * 3
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = fh.readinto(view[got:])
        if not k:
            return None, True
        got += k
    return np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3), False


@dataclass
class DecoderStats:
    """What the decoder saw: samples and frames delivered, reconnections, gaps filled, notes."""

    samples: int = 0
    frames: int = 0
    reconnects: int = 0
    gap_s: float = 0.0
    notes: list[str] = field(default_factory=list)


class LiveDecoder:
    """Runs the ffmpeg process of a :class:`LiveSource` and hands out what it decodes as it comes:
    ``on_audio(samples, wall_time)`` (chunks of ``chunk_s``) and ``on_frame(stream_time, frame)``. Call
    :meth:`run` on a thread of its own; :meth:`stop` ends it (from any thread)."""

    def __init__(
        self,
        src: LiveSource,
        on_audio: Callable[[np.ndarray, float], None],
        on_frame: Callable[[float, np.ndarray], None],
        sr: int = 16000,
        fps: float = 4.0,
        max_side: int = 320,
        stall_s: float = 10.0,
        retries: int = 3,
        chunk_s: float = 0.064,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.src = src
        self.on_audio = on_audio
        self.on_frame = on_frame
        self.sr = int(sr)
        self.fps = float(fps)
        self.max_side = int(max_side)
        self.stall_s = float(stall_s)
        self.retries = int(retries)
        self.chunk = max(512, int(round(chunk_s * sr)))
        self.on_status = on_status or (lambda _msg: None)
        self.stats = DecoderStats()
        self.audio = src.has_audio is not False
        self.video = src.has_video is not False
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._last_data = time.monotonic()
        self._lock = threading.Lock()
        self.frame_size: tuple[int, int] | None = None

    @property
    def clock(self) -> float:
        """Seconds of the stream delivered so far (the stream's clock)."""
        return self.stats.samples / self.sr

    def stop(self) -> None:
        """End decoding now (ffmpeg is killed; :meth:`run` returns)."""
        self._stop.set()
        self._kill()

    def _kill(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def run(self) -> None:
        """Decode until the stream ends, :meth:`stop` is called or the retries are spent. Raises
        LiveSourceError when the source delivers nothing at all."""
        attempt = 0
        ever = False
        while not self._stop.is_set():
            t_start = time.monotonic()
            got, err = self._run_once()
            ever = ever or got
            if self._stop.is_set():
                return
            if not got and "matches no streams" in err:  # the stream lacks a track it was asked for
                if "0:v:0" in err and self.video and self.src.has_video is None and self.audio:
                    self.video = False
                    self.on_status("no video stream: audio only")
                    continue
                if ":a:0" in err:
                    raise LiveSourceError(
                        self.src.spec, "no audio stream (dmd live cuts utterances by voice)"
                    )
            if not self.src.reconnects:
                if not got and err:
                    raise LiveSourceError(self.src.spec, err)
                if err:
                    self.stats.notes.append(f"decoding stopped at {self.clock:.1f} s: {err}")
                return
            attempt = 0 if got else attempt + 1
            if attempt > self.retries:
                if not ever:
                    raise LiveSourceError(
                        self.src.spec, err or f"no data in {self.stall_s:g} s (unreachable?)"
                    )
                self.stats.notes.append(f"the stream ended or stopped at {self.clock:.1f} s (no data after "
                                        f"{self.retries} reconnection attempts)")  # fmt: skip
                return
            wait = min(8.0, 0.5 * 2**attempt)
            self.on_status(f"stream {'dropped' if got else 'not reachable'} ({err or 'no data'}): "
                           f"reconnecting in {wait:g} s (attempt {attempt}/{self.retries})")  # fmt: skip
            if self._stop.wait(wait):
                return
            self.stats.reconnects += 1
            if ever and self.audio:
                self._fill_gap(time.monotonic() - max(self._last_data, t_start))

    def _fill_gap(self, gap: float) -> None:
        """Silence for the time the stream was away, so its clock keeps pace with the wall clock."""
        gap = min(MAX_GAP_FILL_S, max(0.0, gap))
        if gap < 0.05:
            return
        self.stats.gap_s += gap
        self.stats.notes.append(
            f"the stream was away for {gap:.1f} s at {self.clock:.1f} s (filled with silence)"
        )
        n = int(round(gap * self.sr))
        for i in range(0, n, self.sr):
            z = np.zeros(min(self.sr, n - i), np.float32)
            self.stats.samples += z.size
            self.on_audio(z, time.monotonic())

    def _run_once(self) -> tuple[bool, str]:
        """One ffmpeg run: (whether any data came, ffmpeg's last error line or '')."""
        rfd = wfd = None
        if self.video:
            rfd, wfd = os.pipe()
        cmd = ffmpeg_command(self.src, self.sr, self.fps, self.max_side, self.audio, wfd)
        err = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        stdin = {"stdin": None, "feed": subprocess.PIPE}.get(self.src.kind, subprocess.DEVNULL)
        try:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE if self.audio else subprocess.DEVNULL, stderr=err, stdin=stdin,
                pass_fds=(wfd,) if wfd is not None else (), bufsize=0,
            )  # fmt: skip
        except OSError as exc:
            err.close()
            for fd in (rfd, wfd):
                if fd is not None:
                    os.close(fd)
            raise LiveSourceError(self.src.spec, f"cannot start ffmpeg: {exc}") from None
        if wfd is not None:
            os.close(wfd)
        if self.src.feed is not None and proc.stdin is not None:
            threading.Thread(
                target=self.src.feed.pump, args=(proc.stdin,), daemon=True, name="dmd-live-feed"
            ).start()
        with self._lock:
            self._proc = proc
        self._last_data = time.monotonic()
        got = [False]
        offset = self.clock  # frames of this run start at the clock's current time
        vthread = None
        if rfd is not None:
            vthread = threading.Thread(target=self._read_video, args=(rfd, offset, got), daemon=True,
                                       name="dmd-live-video")  # fmt: skip
            vthread.start()
        watchdog = threading.Thread(target=self._watch, args=(proc,), daemon=True, name="dmd-live-watchdog")
        watchdog.start()
        try:
            if self.audio:
                assert proc.stdout is not None
                want = self.chunk * 4
                pending = bytearray()
                while True:
                    data = proc.stdout.read(want - len(pending))
                    if not data:
                        break
                    self._last_data = time.monotonic()
                    got[0] = True
                    pending += data
                    if len(pending) >= want:
                        x = np.frombuffer(bytes(pending), dtype="<f4").astype(np.float32)
                        pending.clear()
                        np.nan_to_num(x, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
                        self.stats.samples += x.size
                        self.on_audio(x, self._last_data)
                k = len(pending) // 4
                if k:
                    x = np.frombuffer(bytes(pending[: k * 4]), dtype="<f4").astype(np.float32)
                    self.stats.samples += x.size
                    self.on_audio(x, time.monotonic())
            if vthread is not None:
                vthread.join()
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            with self._lock:
                self._proc = None
            if vthread is not None:
                vthread.join(timeout=5)
            err.seek(0)
            text = err.read()[-4000:]
            err.close()
        msg = media.last_error_line(text, None) if text.strip() else ""
        if proc.returncode not in (0, None) and not msg and not self._stop.is_set():
            msg = f"ffmpeg ended with code {proc.returncode}"
        return got[0], msg if msg != "unknown ffmpeg error" else ""

    def _read_video(self, fd: int, offset: float, got: list[bool]) -> None:
        n = 0
        with os.fdopen(fd, "rb", buffering=1 << 16) as fh:
            while True:
                try:
                    frame, end = read_ppm(fh)
                except (ValueError, OSError):
                    return
                if end or frame is None:
                    return
                self._last_data = time.monotonic()
                got[0] = True
                self.frame_size = (frame.shape[1], frame.shape[0])
                self.stats.frames += 1
                self.on_frame(offset + n / self.fps, frame)
                n += 1

    def _watch(self, proc: subprocess.Popen) -> None:
        """Kill ffmpeg when nothing came for ``stall_s`` (a stalled network stream): :meth:`run` reconnects."""
        start = time.monotonic()
        while proc.poll() is None and not self._stop.is_set():
            # before its first data a run also needs time to connect and probe the stream (~1 s)
            limit = self.stall_s if self._last_data > start else self.stall_s + STARTUP_GRACE_S
            if time.monotonic() - self._last_data > limit:
                self.on_status(f"no data for {self.stall_s:g} s")
                proc.kill()
                return
            time.sleep(0.2)
