"""Make small test media on demand (ffmpeg lavfi sources, espeak-ng speech, scikit-image's astronaut face).

Every file is generated once per :class:`MediaFactory` and cached by its parameters, so a test session pays
for each file once. Use the shared per-session factory from any test module::

    import pytest
    from media_factory import MediaFactory, session_factory

    @pytest.fixture(scope="session")
    def media(tmp_path_factory) -> MediaFactory:
        return session_factory(tmp_path_factory)

    def test_something(media):
        clip = media.face_video(duration=2.0)          # astronaut face + espeak speech, mp4
        wav = media.speech_wav("hello world")           # 16 kHz mono speech

What it makes (all small and fast; durations in seconds):

=======================  ============================================================================
method                   file
=======================  ============================================================================
tone_video               ffmpeg ``testsrc`` pattern + sine tone; ext mp4/mov/mkv/webm/avi/flv
speech_wav               espeak-ng speech, resampled to ``sr`` mono 16-bit wav
astronaut_png            scikit-image's astronaut photo (one frontal face) as a PNG
astronaut_face_png       a square crop of that photo around the face
face_video               astronaut face, gently moving, with espeak speech (or none) muxed in
no_face_video            ``testsrc`` pattern with speech: audio but no face in any frame
two_face_video           two astronaut faces, one large (left), one small (right), no audio
no_audio_video           video stream only
audio_only               speech (or a tone) as wav/mp3/m4a/flac/ogg (or any ffmpeg audio extension)
silence                  digital silence, audio-only (``fmt``) or as a video's audio track (``video=True``)
one_frame_video          a single-frame mp4 (face or pattern)
rotated_video            video with a display-matrix rotation; a white box marks the stored top-left
zero_byte                an empty file (default name ``empty.mp4``)
truncated_mp4            the first half of a valid mp4 (``moov`` atom missing)
text_as_mp4              a text file named ``.mp4``
ts_segment               an MPEG-TS clip (tone + pattern), the target of the playlist tricks below
playlist_tricks          files named ``.mp4`` that make ffmpeg read other media: HLS playlists whose entry is
                         an absolute path, a relative one (live: no ``#EXT-X-ENDLIST``), a ``file:``,
                         ``subfile:`` or ``data:`` URL, and an ffconcat list
odd_path                 a copy of any file under a folder and file name with spaces and non-ASCII
=======================  ============================================================================

Requirements: ``ffmpeg`` (with libx264, aac, libvpx, libopus, libmp3lame, libvorbis, flac) and ``espeak-ng``
on PATH; scikit-image for the astronaut photo. Tests that use a factory skip cleanly when a tool is missing
(:func:`require_tools`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_TEXT", "MediaFactory", "require_tools", "session_factory"]

DEFAULT_TEXT = (
    "I really liked this movie. The acting was great, and the story kept me watching until the very end."
)

# ext -> (video codec args, audio codec args)
_CODECS: dict[str, tuple[list[str], list[str]]] = {
    "mp4": (
        ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
        ["-c:a", "aac", "-b:a", "64k"],
    ),
    "mov": (
        ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
        ["-c:a", "aac", "-b:a", "64k"],
    ),
    "mkv": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "libopus"]),
    "webm": (
        ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k"],
        ["-c:a", "libopus"],
    ),
    "avi": (["-c:v", "mpeg4", "-q:v", "5"], ["-c:a", "libmp3lame", "-q:a", "5"]),
    "flv": (["-c:v", "flv", "-q:v", "5"], ["-c:a", "libmp3lame", "-ar", "44100", "-q:a", "5"]),
}
_AUDIO_CODECS: dict[str, list[str]] = {
    "wav": ["-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-q:a", "5"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
    "flac": ["-c:a", "flac"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "3"],
    "opus": ["-c:a", "libopus"],
}

_SESSION: dict[str, MediaFactory] = {}


def require_tools(*names: str) -> None:
    """Skip the calling test (pytest) when an external tool is missing."""
    import pytest

    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH to make test media")


#: Three real RAVDESS audio-video clips of actor 1 (one sentence each) that the live tests join into one file.
RAVDESS_LIVE_CLIPS = ("01-01-01-01-01-01-01.mp4", "01-01-08-01-01-02-01.mp4", "01-01-08-02-02-02-01.mp4")


def joined_ravdess_clips(out: Path, codec_args: str, clips: tuple[str, ...] = RAVDESS_LIVE_CLIPS) -> Path:
    """Real RAVDESS audio-video ``clips`` (``../shared/data/ravdess/video``) joined into ``out`` (~10 s, one
    utterance per clip), encoded with ``codec_args`` (ffmpeg output options separated by spaces: codecs, size, format); skips
    the calling test (pytest) when the clips are absent."""
    import pytest

    from dmd_pipeline.utils import shared_dir

    require_tools("ffmpeg")
    d = shared_dir()
    video = d / "data" / "ravdess" / "video" if d is not None else None
    if video is None or not all((video / c).is_file() for c in clips):
        pytest.skip("../shared/data/ravdess/video is absent; skipping a live test on real clips")
    inputs = [a for c in clips for a in ("-i", str(video / c))]
    graph = "".join(f"[{k}:v][{k}:a]" for k in range(len(clips))) + f"concat=n={len(clips)}:v=1:a=1[v][a]"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs, "-filter_complex", graph,
         "-map", "[v]", "-map", "[a]", *codec_args.split(), str(out)],
        check=True, timeout=300,
    )  # fmt: skip
    return out


def session_factory(tmp_path_factory: Any) -> MediaFactory:
    """One shared :class:`MediaFactory` per pytest session (pass pytest's ``tmp_path_factory``)."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _SESSION:
        _SESSION[key] = MediaFactory(tmp_path_factory.mktemp("media"))
    return _SESSION[key]


class MediaFactory:
    """Creates test media files under ``root`` on demand; each distinct request is made once and cached."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # -- helpers ---------------------------------------------------------------------------------------
    def _path(self, kind: str, ext: str, **params: Any) -> Path:
        tag = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return self.root / f"{kind}_{tag}.{ext}"

    @staticmethod
    def _ffmpeg(*args: str) -> None:
        require_tools("ffmpeg")
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({' '.join(cmd)}): {proc.stderr.strip()[-500:]}")

    @staticmethod
    def _done(path: Path) -> bool:
        return path.exists() and path.stat().st_size > 0

    # -- sources ---------------------------------------------------------------------------------------
    def speech_wav(
        self, text: str = DEFAULT_TEXT, sr: int = 16000, voice: str = "en-us", speed: int = 160
    ) -> Path:
        """espeak-ng speech as a mono 16-bit wav at ``sr`` Hz (espeak's native 22.05 kHz resampled)."""
        out = self._path("speech", "wav", text=text, sr=sr, voice=voice, speed=speed)
        if not self._done(out):
            require_tools("espeak-ng", "ffmpeg")
            raw = out.with_suffix(".raw.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
            self._ffmpeg("-i", str(raw), "-ac", "1", "-ar", str(sr), "-c:a", "pcm_s16le", str(out))
            raw.unlink()
        return out

    def astronaut_png(self, size: int = 512) -> Path:
        """scikit-image's astronaut photo (a frontal face, upper centre) as a ``size`` x ``size`` PNG."""
        out = self._path("astronaut", "png", size=size)
        if not self._done(out):
            import numpy as np
            from skimage import data, io, transform

            img = data.astronaut()
            if size != img.shape[0]:
                img = (transform.resize(img, (size, size), anti_aliasing=True) * 255).astype(np.uint8)
            io.imsave(str(out), img, check_contrast=False)
        return out

    def astronaut_face_png(self, size: int = 256) -> Path:
        """A square crop of the astronaut photo around the face (face about half the width), ``size`` px."""
        out = self._path("astroface", "png", size=size)
        if not self._done(out):
            import numpy as np
            from skimage import data, io, transform

            crop = data.astronaut()[25:225, 125:325]
            img = (transform.resize(crop, (size, size), anti_aliasing=True) * 255).astype(np.uint8)
            io.imsave(str(out), img, check_contrast=False)
        return out

    def _speech_track(self, duration: float, text: str) -> Path:
        """Speech looped/padded to exactly ``duration`` seconds (16 kHz wav)."""
        out = self._path("speechtrack", "wav", duration=duration, text=text)
        if not self._done(out):
            src = self.speech_wav(text)
            self._ffmpeg(
                "-stream_loop", "-1", "-i", str(src), "-af", "apad", "-t", f"{duration:.3f}",
                "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(out),
            )  # fmt: skip
        return out

    # -- videos ----------------------------------------------------------------------------------------
    def tone_video(
        self,
        duration: float = 2.0,
        size: tuple[int, int] = (320, 240),
        fps: int = 25,
        ext: str = "mp4",
        freq: float = 440.0,
    ) -> Path:
        """``testsrc`` pattern + sine tone in the container ``ext`` (mp4, mov, mkv, webm, avi, flv)."""
        vcodec, acodec = _CODECS[ext]
        out = self._path("tone", ext, duration=duration, size=size, fps=fps, freq=freq)
        if not self._done(out):
            w, h = size
            self._ffmpeg(
                "-f", "lavfi", "-i", f"testsrc=s={w}x{h}:r={fps}:d={duration}",
                "-f", "lavfi", "-i", f"sine=f={freq}:d={duration}:sample_rate=44100",
                *vcodec, *acodec, "-shortest", str(out),
            )  # fmt: skip
        return out

    def face_video(
        self,
        duration: float = 3.0,
        size: tuple[int, int] = (640, 480),
        fps: int = 25,
        speech: bool = True,
        text: str = DEFAULT_TEXT,
        motion: bool = True,
        ext: str = "mp4",
    ) -> Path:
        """The astronaut face on a grey canvas (gently panning when ``motion``) with espeak speech muxed in."""
        vcodec, acodec = _CODECS[ext]
        out = self._path(
            "face", ext, duration=duration, size=size, fps=fps, speech=speech, text=text, motion=motion
        )
        if not self._done(out):
            w, h = size
            side = int(h * 1.1)  # the photo a bit taller than the frame: the face stays fully inside
            cw, ch = max(w, side) + w // 5, side
            x = f"({cw}-{w})/2+{w // 12}*sin(2*PI*t/5)" if motion else f"({cw}-{w})/2"
            y = f"({ch}-{h})/2+{h // 20}*sin(2*PI*t/7)" if motion else f"({ch}-{h})/2"
            vf = (
                f"scale={side}:{side},pad={cw}:{ch}:(ow-iw)/2:0:color=gray,"
                f"crop={w}:{h}:x='{x}':y='{y}',fps={fps},format=yuv420p"
            )
            args = [
                "-loop",
                "1",
                "-framerate",
                str(fps),
                "-t",
                f"{duration:.3f}",
                "-i",
                str(self.astronaut_png()),
            ]
            if speech:
                args += ["-i", str(self._speech_track(duration, text))]
            args += ["-vf", vf, *vcodec]
            args += [*acodec, "-shortest"] if speech else ["-an"]
            self._ffmpeg(*args, "-t", f"{duration:.3f}", str(out))
        return out

    def no_face_video(self, duration: float = 2.0, size: tuple[int, int] = (320, 240), fps: int = 25) -> Path:
        """``testsrc`` pattern (no face anywhere) with speech audio."""
        out = self._path("noface", "mp4", duration=duration, size=size, fps=fps)
        if not self._done(out):
            w, h = size
            vcodec, acodec = _CODECS["mp4"]
            self._ffmpeg(
                "-f", "lavfi", "-i", f"testsrc=s={w}x{h}:r={fps}:d={duration}",
                "-i", str(self._speech_track(duration, DEFAULT_TEXT)),
                *vcodec, *acodec, "-shortest", str(out),
            )  # fmt: skip
        return out

    def two_face_video(
        self, duration: float = 1.0, size: tuple[int, int] = (640, 360), fps: int = 10
    ) -> Path:
        """Two astronaut face crops: a large one on the left and a small one on the right; no audio."""
        out = self._path("twoface", "mp4", duration=duration, size=size, fps=fps)
        if not self._done(out):
            w, h = size
            png = str(self.astronaut_face_png())
            big, small = int(h * 0.9), int(h * 0.5)
            fc = (
                f"color=c=gray:s={w}x{h}:r={fps}:d={duration}[bg];"
                f"[0:v]scale={big}:{big}[a];[1:v]scale={small}:{small}[b];"
                f"[bg][a]overlay=x={w // 40}:y=0[t];[t][b]overlay=x={w - small - w // 40}:y={h // 6},format=yuv420p"
            )
            self._ffmpeg(
                "-loop", "1", "-i", png, "-loop", "1", "-i", png, "-filter_complex", fc,
                "-t", f"{duration:.3f}", *_CODECS["mp4"][0], "-an", str(out),
            )  # fmt: skip
        return out

    def no_audio_video(self, duration: float = 1.0, ext: str = "mp4") -> Path:
        """A video without any audio stream."""
        out = self._path("noaudio", ext, duration=duration)
        if not self._done(out):
            self._ffmpeg(
                "-f", "lavfi", "-i", f"testsrc=s=320x240:r=25:d={duration}",
                *_CODECS[ext][0], "-an", str(out),
            )  # fmt: skip
        return out

    def one_frame_video(self, face: bool = True) -> Path:
        """An mp4 holding exactly one video frame (the astronaut face, or the test pattern)."""
        out = self._path("oneframe", "mp4", face=face)
        if not self._done(out):
            src = (
                ["-i", str(self.astronaut_png())] if face else ["-f", "lavfi", "-i", "testsrc=s=320x240:r=25"]
            )
            self._ffmpeg(
                *src, "-frames:v", "1", "-vf", "scale=480:480,format=yuv420p", "-c:v", "libx264", str(out)
            )
        return out

    def rotated_video(self, rotation: int = 90, size: tuple[int, int] = (320, 240)) -> Path:
        """A black video whose stored frames have a white box in the top-left corner, tagged with a
        display rotation (``rotate`` metadata -> display matrix); decoders that honour it show it turned."""
        out = self._path("rotated", "mp4", rotation=rotation, size=size)
        if not self._done(out):
            w, h = size
            plain = out.with_suffix(".plain.mp4")
            self._ffmpeg(
                "-f", "lavfi", "-i",
                f"color=c=black:s={w}x{h}:r=10:d=1,drawbox=x=0:y=0:w={w // 4}:h={h // 4}:color=white:t=fill",
                *_CODECS["mp4"][0], str(plain),
            )  # fmt: skip
            self._ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}", str(out))
            plain.unlink()
        return out

    # -- audio -----------------------------------------------------------------------------------------
    def audio_only(self, fmt: str = "wav", duration: float | None = None, speech: bool = True) -> Path:
        """Audio-only file: espeak speech (or a 220 Hz tone) encoded as ``fmt`` (wav, mp3, m4a, flac, ogg)."""
        out = self._path("audio", fmt, duration=duration, speech=speech)
        if not self._done(out):
            codec = _AUDIO_CODECS.get(fmt, [])
            if speech:
                src = self.speech_wav() if duration is None else self._speech_track(duration, DEFAULT_TEXT)
                self._ffmpeg("-i", str(src), *codec, str(out))
            else:
                self._ffmpeg("-f", "lavfi", "-i", f"sine=f=220:d={duration or 2.0}", *codec, str(out))
        return out

    def silence(self, duration: float = 2.0, fmt: str = "wav", video: bool = False) -> Path:
        """Digital silence: an audio-only file, or (``video=True``) an mp4 pattern video with a silent track."""
        ext = "mp4" if video else fmt
        out = self._path("silence", ext, duration=duration, video=video)
        if not self._done(out):
            audio = ["-f", "lavfi", "-i", f"anullsrc=r=16000:cl=mono:d={duration}"]
            if video:
                vcodec, acodec = _CODECS["mp4"]
                self._ffmpeg(
                    "-f", "lavfi", "-i", f"testsrc=s=320x240:r=25:d={duration}", *audio,
                    *vcodec, *acodec, "-shortest", str(out),
                )  # fmt: skip
            else:
                self._ffmpeg(*audio, "-t", f"{duration}", *_AUDIO_CODECS.get(fmt, []), str(out))
        return out

    # -- bad inputs ------------------------------------------------------------------------------------
    def zero_byte(self, name: str = "empty.mp4") -> Path:
        """An empty (0-byte) file."""
        out = self.root / "bad" / name
        out.parent.mkdir(exist_ok=True)
        out.write_bytes(b"")
        return out

    def truncated_mp4(self) -> Path:
        """The first half of a valid mp4 whose ``moov`` atom sits at the end (so it is cut off)."""
        out = self.root / "bad" / "truncated.mp4"
        if not self._done(out):
            out.parent.mkdir(exist_ok=True)
            data = self.tone_video(duration=2.0).read_bytes()
            out.write_bytes(data[: len(data) // 2])
        return out

    def text_as_mp4(self) -> Path:
        """A plain text file with an ``.mp4`` name."""
        out = self.root / "bad" / "notes.mp4"
        out.parent.mkdir(exist_ok=True)
        out.write_text("This is not a video, just some text.\n" * 20, encoding="utf-8")
        return out

    def ts_segment(self, duration: float = 2.0) -> Path:
        """An MPEG-TS clip (sine tone + ``testsrc`` pattern, H.264/AAC): what the playlist tricks point at."""
        out = self._path("segment", "ts", duration=duration)
        if not self._done(out):
            self._ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={duration}", "-f", "lavfi", "-i",
                         f"testsrc=size=160x120:rate=10:duration={duration}", "-c:v", "libx264", "-preset",
                         "ultrafast", "-c:a", "aac", "-shortest", str(out))  # fmt: skip
        return out

    def playlist_tricks(self) -> dict[str, Path]:
        """Files named ``upload.mp4``-like that are playlists or lists of another local media file (the
        segment of :meth:`ts_segment`), one per trick; each would make ffmpeg read that other file."""
        import base64

        seg = self.ts_segment()

        def hls(entry: str, ended: bool = True) -> str:
            end = "#EXT-X-ENDLIST\n" if ended else ""
            return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{entry}\n{end}"

        data = base64.b64encode(seg.read_bytes()).decode("ascii")
        texts = {
            "hls_absolute": hls(str(seg)),
            "hls_relative_live": hls(seg.name, ended=False),
            "hls_file_url": hls(f"file:{seg}"),
            "hls_subfile": hls(f"subfile:,start,0,end,0,,:{seg}"),
            "hls_data_url": hls(f"data:video/mp2t;base64,{data}"),
            "ffconcat": f"ffconcat version 1.0\nfile {seg.name}\n",
        }
        out = {}
        for name, text in texts.items():
            path = seg.parent / f"{name}.mp4"  # beside the segment: relative entries resolve to it
            path.write_text(text, encoding="utf-8")
            out[name] = path
        return out

    def odd_path(self, src: str | Path, name: str = "clip ünïcödé 名前 (1)") -> Path:
        """A copy of ``src`` under a folder and name with spaces, accents, CJK and brackets."""
        src = Path(src)
        out = self.root / "dir with spaces é" / f"{name}{src.suffix}"
        if not self._done(out):
            out.parent.mkdir(exist_ok=True)
            shutil.copyfile(src, out)
        return out
