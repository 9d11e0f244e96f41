"""Probe and decode media with ffmpeg through pipes (no temporary frame or wav files).

* :func:`probe` reads container/stream facts with ``ffprobe`` into a :class:`MediaInfo`.
* :func:`load_audio` decodes (a segment of) the audio track to mono float32 at 16 kHz.
* :func:`iter_frames` streams RGB frames at a fixed rate, one frame in memory at a time.

Every real media container ffmpeg can read works (mp4, mov, mkv, webm, avi, flv incl. VP6, wav, mp3, m4a,
flac, ogg...). Inputs that make ffmpeg read *other* files or URLs named inside them (HLS/DASH playlists,
concat lists, image sequences, SDP/RTSP descriptions, IMF packages), input devices, filter graphs and still
images are refused (:data:`REFUSED_DEMUXERS`): every ffprobe/ffmpeg call names the demuxers it may use
(``-format_whitelist``) and may open only local files and pipes (``-protocol_whitelist file,pipe``), so a
playlist saved as ``talk.mp4`` cannot read a server's other media through ``file:``, ``subfile:`` or
``data:`` entries, and a live (unbounded) playlist cannot hold a worker. Inside
:func:`playlists_allowed` (``dmd analyze --allow-playlists``) playlists and lists are read, still with the
protocol whitelist and a probe time limit. :func:`check_duration` refuses a file without a duration
(``dmd serve`` applies it to every upload).
A file ffmpeg cannot read raises :class:`~dmd_pipeline.errors.MediaError` naming the file with a one-line
reason; a missing ffmpeg/ffprobe executable raises :class:`FFmpegNotFoundError`.
The executables can be overridden with ``$DMD_FFMPEG`` / ``$DMD_FFPROBE``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmd_pipeline.errors import DMDError, MediaError

__all__ = [
    "FFmpegNotFoundError",
    "MediaInfo",
    "check_duration",
    "frame_size",
    "iter_frames",
    "load_audio",
    "playlists_allowed",
    "probe",
]

#: Demuxers never used on an input (unless allowed, the first group): they read other files or URLs named
#: inside the input (playlists, manifests, concat lists, image sequences, stream descriptions), or they are
#: input devices, filter graphs, scripts or text renderers. (A single image read by a ``*_pipe`` demuxer
#: passes: it reads only itself; ``analysis.batch.still_image`` says why it is not a clip.)
INDIRECT_DEMUXERS = frozenset({"hls", "dash", "concat", "imf", "image2", "image2pipe", "webm_dash_manifest"})
REFUSED_DEMUXERS = INDIRECT_DEMUXERS | frozenset({
    "sdp", "rtp", "rtsp", "ffmetadata", "lavfi", "avisynth", "vapoursynth", "tty", "bin", "xbin", "idf", "adf",
    "alsa", "fbdev", "jack", "kmsgrab", "openal", "oss", "pulse", "video4linux2", "v4l2", "x11grab",
    "iec61883", "libdc1394", "libcdio", "dshow", "gdigrab", "vfwcap", "avfoundation", "android_camera",
})  # fmt: skip
PROTOCOL_WHITELIST = "file,pipe"
PROBE_TIMEOUT_S = 60.0  # ffprobe of a local file takes well under a second; a live stream would never end
_PLAYLISTS_OK = [False]  # process-wide (decoding runs on helper threads too); see playlists_allowed


class FFmpegNotFoundError(DMDError, FileNotFoundError):
    """The ffmpeg or ffprobe executable is not installed (not a problem of the input file)."""


@dataclass(frozen=True)
class MediaInfo:
    """Facts about a media file.

    ``width``/``height`` are the *display* size, i.e. after applying the rotation metadata (a phone video
    stored 1920x1080 with a 90 degree display matrix reports 1080x1920), which is also what
    :func:`iter_frames` yields. ``rotation`` is ffprobe's display-matrix angle normalised to 0/90/180/270.
    ``width``, ``height``, ``fps`` are 0 and ``n_frames`` is None without a video stream.
    """

    path: str
    duration: float
    has_audio: bool
    has_video: bool
    width: int
    height: int
    fps: float
    rotation: int
    n_frames: int | None
    audio_sample_rate: int = 0
    audio_channels: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    format_name: str = ""


@contextlib.contextmanager
def playlists_allowed(allow: bool = True) -> Iterator[None]:
    """Inside the block, inputs that are playlists or lists of other files are read by this process
    (``dmd analyze --allow-playlists``); the protocol whitelist and the probe time limit still hold.

    Process-wide rather than per thread, because extraction decodes on helper threads; one process runs
    one policy (``dmd serve`` never allows them)."""
    before = _PLAYLISTS_OK[0]
    _PLAYLISTS_OK[0] = bool(allow)
    try:
        yield
    finally:
        _PLAYLISTS_OK[0] = before


def _refused(names: str, allow_indirect: bool) -> str | None:
    """The refused demuxer among ffprobe's comma-joined ``names``, or None."""
    for name in names.split(","):
        if name in REFUSED_DEMUXERS and not (allow_indirect and name in INDIRECT_DEMUXERS):
            return name
    return None


def _refusal(p: Path, demuxer: str) -> MediaError:
    if demuxer in ("image2", "image2pipe"):  # may read a numbered sequence of other files
        return MediaError(p, f"a still image or an image sequence ({demuxer}), not a video or audio file")
    if demuxer in INDIRECT_DEMUXERS:
        return MediaError(
            p,
            f"a playlist or a list of other files ({demuxer}), not a media file: refused, because ffmpeg would "
            "read the files it names (dmd analyze --allow-playlists reads it)",
        )
    return MediaError(p, f"not a media file format that is analysed ({demuxer})")


@functools.lru_cache(maxsize=4)
def _demuxers(exe: str) -> tuple[str, ...]:
    """Every demuxer name ffprobe ``exe`` has (``-demuxers``), comma-joined aliases kept together."""
    try:
        out = subprocess.run(
            [exe, "-hide_banner", "-demuxers"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(m.group(1) for m in re.finditer(r"(?m)^\s*D\S*\s+(\S+)\s", out))


def _guard_args(allow_indirect: bool) -> dict[str, str]:
    """Input options of every ffprobe/ffmpeg call: the protocols and the demuxers it may use."""
    kw = {"protocol_whitelist": PROTOCOL_WHITELIST}
    allowed = [d for d in _demuxers(_tool("ffprobe")) if _refused(d, allow_indirect) is None]
    if allowed:
        kw["format_whitelist"] = ",".join(allowed)
    return kw


#: The protocols ffmpeg may use for a live network source of each URL scheme (``dmd live``): that scheme's
#: own transport stack and nothing else (no ``file``, ``pipe``, ``data``, ``subfile``, and no other scheme a
#: stream could redirect to).
LIVE_PROTOCOLS: dict[str, str] = {
    "udp": "udp",
    "rtp": "rtp,udp",
    "rtsp": "rtsp,rtp,udp,tcp",
    "srt": "srt",
    "http": "http,tcp",
    "https": "https,http,tls,tcp",
}
#: Demuxers of :data:`REFUSED_DEMUXERS` a live source of a scheme needs (only for that scheme).
LIVE_DEMUXERS: dict[str, tuple[str, ...]] = {"rtp": ("rtp",), "rtsp": ("rtsp",)}
#: Capture devices ``dmd live`` opens when asked for one (demuxer name: what the source names).
LIVE_DEVICES: dict[str, str] = {"v4l2": "video4linux2", "alsa": "alsa", "pulse": "pulse"}


def live_input_args(kind: str) -> list[str]:
    """The guard options (protocol and demuxer whitelists) of a ``dmd live`` input: ``kind`` is a URL scheme
    of :data:`LIVE_PROTOCOLS` (its protocols only, plus the demuxer the scheme needs), ``"file"`` (a local
    file: as :func:`probe`), ``"pipe"`` (a container on stdin) or a capture device of
    :data:`LIVE_DEVICES` (that device's demuxer only). Playlists stay refused."""
    if kind in LIVE_PROTOCOLS:
        guard = _guard_args(False)
        guard["protocol_whitelist"] = LIVE_PROTOCOLS[kind]
        extra = LIVE_DEMUXERS.get(kind, ())
        if extra and "format_whitelist" in guard:
            guard["format_whitelist"] += "," + ",".join(extra)
    elif kind in LIVE_DEVICES:
        guard = {"protocol_whitelist": "file", "format_whitelist": LIVE_DEVICES[kind]}
    elif kind in ("file", "pipe"):
        guard = _guard_args(False)
        guard["protocol_whitelist"] = kind
    else:
        raise ValueError(f"unknown live input kind {kind!r}")
    out: list[str] = []
    for k, v in guard.items():
        out += [f"-{k}", v]
    return out


def ffmpeg_exe() -> str:
    """Full path of the ffmpeg executable (``$DMD_FFMPEG`` overrides), or FFmpegNotFoundError."""
    return _tool("ffmpeg")


def last_error_line(stderr: bytes | str | None, source: str | None = None) -> str:
    """ffmpeg's stderr condensed to one line (its last two distinct messages, without context prefixes)."""
    return _last_error_line(stderr, source)


def _tool(name: str) -> str:
    """Full path of ffmpeg/ffprobe, or a clear error when it is not installed."""
    exe = os.environ.get(f"DMD_{name.upper()}", name)
    found = shutil.which(exe)
    if found is None:
        raise FFmpegNotFoundError(
            f"the '{exe}' executable was not found on PATH; install ffmpeg (e.g. 'apt-get install ffmpeg' "
            f"or 'brew install ffmpeg'), or point ${'DMD_' + name.upper()} at it"
        )
    return found


def _last_error_line(stderr: bytes | str | None, path: str | Path | None = None) -> str:
    """ffmpeg's stderr condensed to one line: its last two distinct messages, without path/context prefixes."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    prefix = f"{path}: " if path is not None else None
    msgs: list[str] = []
    for raw in text.splitlines():
        line = _CTX_PREFIX.sub("", raw.strip())
        if prefix and line.startswith(prefix):
            line = line[len(prefix) :]
        if line and line not in msgs:
            msgs.append(line)
    return "; ".join(msgs[-2:])[:240] if msgs else "unknown ffmpeg error"


_CTX_PREFIX = re.compile(r"^\[[^\]]*@ ?0x[0-9a-f]+\]\s*")


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    return p


def _ratio(text: str | None) -> float:
    try:
        num, _, den = (text or "0/0").partition("/")
        n, d = float(num), float(den or 1)
        return n / d if d else 0.0
    except ValueError:
        return 0.0


def _rotation(stream: dict) -> int:
    angle = 0.0
    for sd in stream.get("side_data_list", []) or []:
        if "rotation" in sd:
            angle = float(sd["rotation"])
            break
    else:
        tag = (stream.get("tags") or {}).get("rotate")
        if tag is not None:
            try:
                angle = -float(tag)  # legacy tag is clockwise, the display matrix counter-clockwise
            except ValueError:
                angle = 0.0
    return int(round(angle / 90.0)) * 90 % 360


_PROBES: dict[tuple[str, int, int, bool], MediaInfo] = {}  # (path, size, mtime, allowed) -> info: probe once


def probe(path: str | Path) -> MediaInfo:
    """Read duration, streams, display size, frame rate and rotation of a media file.

    Remembered per (path, size, modification time), so analysing a file probes it once (ffprobe costs
    50-90 ms). Raises ``MediaError`` for a missing, empty or unreadable file, one without audio and video,
    one without a duration, and a refused format (a playlist, a list of other files, a still image: see
    the module's docstring and :func:`playlists_allowed`).
    """
    p = _check_file(path)
    exe = _tool("ffprobe")  # checked every time: a missing ffprobe is reported, not hidden by the memo
    st = p.stat()
    allow = _PLAYLISTS_OK[0]
    ident = (str(p.resolve()), st.st_size, st.st_mtime_ns, allow)
    if ident in _PROBES:
        return dataclasses.replace(_PROBES[ident], path=str(p))
    info = _probe(p, exe, allow)
    if len(_PROBES) >= 256:
        _PROBES.clear()
    _PROBES[ident] = info
    return dataclasses.replace(info)


_NOT_ON_WHITELIST = re.compile(r"\[(\w+) @ ?0x[0-9a-f]+\]\s*Format not on whitelist")


def _run_ffprobe(p: Path, exe: str, allow: bool) -> dict:
    """ffprobe's JSON about ``p`` (guarded and time-limited), or MediaError."""
    guards = [a for k, v in _guard_args(allow).items() for a in (f"-{k}", v)]
    cmd = [exe, "-v", "error", *guards, "-show_format", "-show_streams", "-of", "json", str(p)]
    try:
        proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MediaError(
            p, f"ffprobe did not finish in {PROBE_TIMEOUT_S:g} s (a live or endless stream?)"
        ) from None
    if proc.returncode != 0:
        m = _NOT_ON_WHITELIST.search(proc.stderr.decode("utf-8", "replace"))
        if m:
            raise _refusal(p, m.group(1))
        raise MediaError(p, f"not a readable media file (ffprobe: {_last_error_line(proc.stderr, p)})")
    try:
        return json.loads(proc.stdout.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # ffprobe printed no valid JSON
        raise MediaError(p, f"ffprobe returned no usable information ({type(e).__name__})") from None


def _probe(p: Path, exe: str, allow: bool = False) -> MediaInfo:
    data = _run_ffprobe(p, exe, allow)
    streams = data.get("streams", []) or []
    fmt = data.get("format", {}) or {}
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")
        and s.get("codec_name") != "ansi"  # ffmpeg's tty demuxer can read text files as "video"
        and int(s.get("width") or 0) > 0
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio" and int(s.get("channels") or 1) > 0]
    refused = _refused(str(fmt.get("format_name", "")), allow)
    if refused is not None:  # also when ffprobe's demuxer list could not be read
        raise _refusal(p, refused)
    if not videos and not audios:
        raise MediaError(p, "not a media file ffmpeg can decode (no audio or video stream)")

    durations = [float(fmt.get("duration") or 0.0)]
    durations += [float(s.get("duration") or 0.0) for s in videos[:1] + audios[:1]]
    duration = max(d for d in durations if d == d)  # ignores NaN

    width = height = rotation = 0
    fps = 0.0
    n_frames: int | None = None
    vcodec = acodec = ""
    if videos:
        v = videos[0]
        rotation = _rotation(v)
        width, height = int(v["width"]), int(v["height"])
        if rotation in (90, 270):
            width, height = height, width
        fps = _ratio(v.get("avg_frame_rate")) or _ratio(v.get("r_frame_rate"))
        if fps > 1000:  # bogus time-base rates (e.g. 1000/1 in some flv/mkv)
            fps = _ratio(v.get("r_frame_rate")) if _ratio(v.get("r_frame_rate")) <= 1000 else 0.0
        nb = v.get("nb_frames")
        n_frames = int(nb) if nb and str(nb).isdigit() else None
        vcodec = str(v.get("codec_name", ""))
        if duration <= 0 and n_frames and fps:
            duration = n_frames / fps
    sr = channels = 0
    if audios:
        a = audios[0]
        sr = int(a.get("sample_rate") or 0)
        channels = int(a.get("channels") or 0)
        acodec = str(a.get("codec_name", ""))
    return MediaInfo(
        path=str(p),
        duration=float(duration),
        has_audio=bool(audios),
        has_video=bool(videos),
        width=width,
        height=height,
        fps=float(fps),
        rotation=rotation,
        n_frames=n_frames,
        audio_sample_rate=sr,
        audio_channels=channels,
        video_codec=vcodec,
        audio_codec=acodec,
        format_name=str(fmt.get("format_name", "")),
    )


def still_image(info: MediaInfo) -> str | None:
    """Why a probed file is a still image rather than a clip (ffmpeg reads a .png as a one-frame
    "video": analysed as a clip, it would be "ok" with no duration, words, voice or score), else None.
    ``dmd analyze`` reads a still image with the face channel only (:mod:`dmd_pipeline.analysis.photo`)."""
    fmt = str(info.format_name or "")
    if info.has_audio or not (fmt.endswith("_pipe") or fmt.split(",")[0] in ("image2", "gif", "apng")):
        return None
    if fmt in ("gif", "apng") and ((info.n_frames or 0) > 1 or info.duration > 0.1):
        return None  # an animation is a (silent) clip
    kind = fmt.removesuffix("_pipe") if fmt.endswith("_pipe") else info.video_codec or fmt
    return f"a still image ({kind}), not a video or audio file"


def check_duration(info: MediaInfo) -> None:
    """MediaError unless ``info`` has a positive duration: ``dmd serve`` refuses such an upload at once (an
    empty container, or a stream with no end) instead of handing it to a worker. ``dmd analyze`` leaves
    it to the analysis, which reports what it found (e.g. no usable modality)."""
    if not info.duration > 0:
        raise MediaError(
            Path(info.path), "has no duration (a live stream or an empty container), so it cannot be analysed"
        )


def _segment(p: Path, info: MediaInfo, start: float | None, end: float | None) -> tuple[float, float | None]:
    """Validate a [start, end) request; returns (start, duration or None)."""
    s = float(start or 0.0)
    if s < 0:
        raise MediaError(p, f"segment start {s:.3f} s is negative")
    if info.duration > 0 and s >= info.duration:
        raise MediaError(p, f"segment start {s:.3f} s is past the end of the media ({info.duration:.3f} s)")
    if end is not None:
        e = float(end)
        if e <= s:
            raise MediaError(p, f"segment end {e:.3f} s is not after its start {s:.3f} s")
        return s, e - s
    return s, None


def _with_audio(p: Path, info: MediaInfo | None) -> MediaInfo:
    """``info`` (probed when None) of a file that has an audio stream; MediaError otherwise."""
    info = info or probe(p)
    if not info.has_audio:
        raise MediaError(p, "has no audio stream (video only); acoustic features and ASR need audio")
    return info


def _audio_command(p: Path, sr: int, in_kw: dict) -> list[str]:
    """The ffmpeg command decoding the audio of ``p`` (input options ``in_kw``: a seek, a duration) to mono
    float32 PCM at ``sr`` Hz on stdout."""
    import ffmpeg  # ffmpeg-python: only builds the command line

    return (
        ffmpeg.input(str(p), **in_kw, **_guard_args(_PLAYLISTS_OK[0]))
        .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=int(sr), vn=None, sn=None, dn=None)
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .compile(cmd=_tool("ffmpeg"))
    )


def load_audio(
    path: str | Path,
    sr: int = 16000,
    start: float | None = None,
    end: float | None = None,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """Decode the audio track (or the segment ``[start, end)`` in seconds) to mono float32 at ``sr`` Hz.

    Channels are averaged by ffmpeg's down-mix. Raises ``MediaError`` when the file has no audio stream or
    cannot be decoded. Pass ``info`` from an earlier :func:`probe` to skip probing again.
    """
    p = _check_file(path)
    info = _with_audio(p, info)
    s, dur = _segment(p, info, start, end)
    in_kw: dict = {"ss": f"{s:.6f}"} if s > 0 else {}
    if dur is not None:
        in_kw["t"] = f"{dur:.6f}"
    cmd = _audio_command(p, sr, in_kw)
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise MediaError(p, f"audio decoding failed ({_last_error_line(proc.stderr, p)})")
    n = len(proc.stdout) // 4
    audio = np.frombuffer(proc.stdout[: n * 4], dtype="<f4").astype(np.float32, copy=True)
    if audio.size == 0 and info.duration > 0 and (dur is None or dur > 0.05):
        raise MediaError(p, f"audio decoding produced no samples ({_last_error_line(proc.stderr, p)})")
    np.nan_to_num(audio, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    return audio


class AudioStream:
    """The audio track decoded once, front to back, by one ffmpeg process (mono float32 at ``sr`` Hz), read
    in pieces: the samples equal :func:`load_audio` of the whole file, while memory holds only what the
    caller keeps. (Decoding a window with a seek is not sample-exact for AAC, so streamed features would
    differ from the whole file's.) Use as a context manager; closing ends ffmpeg."""

    def __init__(self, path: str | Path, sr: int = 16000, info: MediaInfo | None = None) -> None:
        self.path = _check_file(path)
        _with_audio(self.path, info)
        self.sr = int(sr)
        self.samples_read = 0
        cmd = _audio_command(self.path, self.sr, {})
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the stream (closed in close())
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL)
        self._eof = False

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` further samples (fewer only at the end of the track; empty after it)."""
        if self._eof or n <= 0:
            return np.zeros(0, np.float32)
        assert self._proc.stdout is not None
        want = int(n) * 4
        buf = bytearray()
        while len(buf) < want:
            chunk = self._proc.stdout.read(want - len(buf))
            if not chunk:
                self._eof = True
                self._check_exit()
                break
            buf.extend(chunk)
        k = len(buf) // 4
        out = np.frombuffer(bytes(buf[: k * 4]), dtype="<f4").astype(np.float32, copy=True)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        self.samples_read += k
        return out

    def _check_exit(self) -> None:
        rc = self._proc.wait()
        if rc != 0:
            self._err.seek(0)
            raise MediaError(
                self.path, f"audio decoding failed ({_last_error_line(self._err.read(), self.path)})"
            )

    def close(self) -> None:
        """End ffmpeg (if still running) and free its pipe."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._err.close()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_size(info: MediaInfo, max_side: int | None) -> tuple[int, int]:
    """Output (width, height) of :func:`iter_frames`: display size scaled so the long side <= max_side."""
    w, h = info.width, info.height
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        w, h = max(2, w - w % 2), max(2, h - h % 2)  # even sizes (chroma subsampling), still <= max_side
    return int(w), int(h)


def iter_frames(
    path: str | Path,
    fps: float = 10.0,
    start: float | None = None,
    end: float | None = None,
    max_side: int | None = 640,
    info: MediaInfo | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(timestamp_s, frame)`` pairs, ``frame`` an HxWx3 uint8 RGB array, sampled at ``fps``.

    Frames are streamed from an ffmpeg process through a pipe, one at a time, so memory does not grow with
    the video's length. Rotation metadata is honoured (ffmpeg auto-rotates on decode), and frames are scaled
    so that the long side is at most ``max_side`` (``None``: native size). Timestamps are in seconds from
    the start of the file (``start`` included). Stopping the iteration early (``break``) ends the ffmpeg
    process. Raises ``MediaError`` when the file has no video stream or cannot be decoded.
    """
    import ffmpeg

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    p = _check_file(path)
    info = info or probe(p)
    if not info.has_video:
        raise MediaError(p, "has no video stream (audio only); visual features need video")
    s, dur = _segment(p, info, start, end)
    w, h = frame_size(info, max_side)
    in_kw: dict = {"ss": f"{s:.6f}"} if s > 0 else {}
    if dur is not None:
        in_kw["t"] = f"{dur:.6f}"
    base = ffmpeg.input(str(p), **in_kw, **_guard_args(_PLAYLISTS_OK[0])).video
    scaled = base.filter("fps", fps=fps, round="near").filter("scale", w, h, flags="area")
    n = 0
    with closing(_stream_frames(p, scaled, w, h)) as frames:  # closing: ffmpeg ends on early exit too
        for frame in frames:
            yield s + n / fps, frame
            n += 1
    if n == 0:
        # A clip shorter than one output period (e.g. a single frame) makes the fps filter emit nothing:
        # fall back to the first decoded frame as-is.
        with closing(
            _stream_frames(p, base.filter("scale", w, h, flags="area"), w, h, max_frames=1)
        ) as frames:
            for frame in frames:
                yield s, frame
                n += 1
    if n == 0:
        raise MediaError(p, "video decoding produced no frames")


def _stream_frames(p: Path, stream, w: int, h: int, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Run ffmpeg on a filtered video stream and yield rgb24 frames read frame by frame from its stdout."""
    out_kw: dict = {"format": "rawvideo", "pix_fmt": "rgb24", "an": None, "sn": None}
    if max_frames is not None:
        out_kw["frames:v"] = max_frames
    cmd = (
        stream.output("pipe:", **out_kw)
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .compile(cmd=_tool("ffmpeg"))
    )
    frame_bytes = w * h * 3
    # stderr goes to a temp file: a pipe could fill up and dead-lock ffmpeg while we read stdout.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, bufsize=0)
        assert proc.stdout is not None
        try:
            while True:
                buf = bytearray(frame_bytes)  # fresh buffer: yielded frames are writable and independent
                if _read_into(proc.stdout, buf) < frame_bytes:
                    break
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
            if proc.wait() != 0:
                err.seek(0)
                raise MediaError(p, f"video decoding failed ({_last_error_line(err.read()[-4000:], p)})")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


def _read_into(fh, buf: bytearray) -> int:
    """Fill ``buf`` from a pipe; returns the number of bytes read (short only at the end of the stream)."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        k = fh.readinto(view[got:])
        if not k:
            break
        got += k
    return got
