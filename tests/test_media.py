"""Tests of dmd_pipeline.media: probing, audio decoding, frame streaming, bad inputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from media_factory import MediaFactory, require_tools, session_factory

from dmd_pipeline.errors import MediaError
from dmd_pipeline.media import FFmpegNotFoundError, frame_size, iter_frames, load_audio, probe

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIP_SIZES = {"0h-zjBukYpk_1.mp4": (480, 360), "Sqr0AcuoNnk_12.mp4": (640, 360)}  # from data/README + probe


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    require_tools("ffmpeg", "ffprobe", "espeak-ng")
    return session_factory(tmp_path_factory)


def _clips(shared_clips: Path) -> list[Path]:
    clips = sorted(p for p in shared_clips.iterdir() if p.suffix in {".mp4", ".flv"})
    assert len(clips) == 8, clips
    return clips


# -- real clips ------------------------------------------------------------------------------------------
def test_real_clips_probe_audio_frames(shared_clips: Path) -> None:
    for clip in _clips(shared_clips):
        info = probe(clip)
        assert info.has_audio and info.has_video, clip.name
        assert 1.5 < info.duration < 3.0, (clip.name, info.duration)
        assert info.fps > 20 and info.rotation == 0
        expected = CLIP_SIZES.get(clip.name, (480, 360))
        assert (info.width, info.height) == expected, clip.name

        audio = load_audio(clip, info=info)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(audio.size / 16000 - info.duration) < 0.1, (clip.name, audio.size, info.duration)
        assert np.isfinite(audio).all() and float(np.sqrt(np.mean(audio**2))) > 1e-3

        frames = list(iter_frames(clip, fps=5.0, info=info))
        times = np.array([t for t, _ in frames])
        assert abs(len(frames) - info.duration * 5) <= 2, (clip.name, len(frames))
        assert np.all(np.diff(times) > 0) and times[0] == 0.0 and times[-1] <= info.duration
        assert all(f.shape == (expected[1], expected[0], 3) and f.dtype == np.uint8 for _, f in frames)
        assert max(float(f.std()) for _, f in frames) > 10  # real picture content, not blank frames


# -- containers and audio-only files --------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv", "webm", "avi", "flv"])
def test_containers(media: MediaFactory, ext: str) -> None:
    path = media.tone_video(duration=1.0, ext=ext)
    info = probe(path)
    assert info.has_audio and info.has_video and (info.width, info.height) == (320, 240)
    assert abs(info.duration - 1.0) < 0.1 and abs(info.fps - 25) < 0.5
    audio = load_audio(path)
    assert abs(audio.size - 16000) < 1600
    # a 440 Hz tone: the spectrum peaks at 440 Hz
    spec = np.abs(np.fft.rfft(audio[:8000]))
    assert abs(np.argmax(spec) * 16000 / 8000 - 440) <= 4
    frames = list(iter_frames(path, fps=10))
    assert 9 <= len(frames) <= 11 and frames[0][1].shape == (240, 320, 3)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a", "flac", "ogg"])
def test_audio_only_formats(media: MediaFactory, fmt: str) -> None:
    ref = load_audio(media.speech_wav())
    path = media.audio_only(fmt)
    info = probe(path)
    assert info.has_audio and not info.has_video and info.width == 0
    audio = load_audio(path, info=info)
    assert abs(audio.size - ref.size) < 0.15 * 16000  # encoder padding only
    assert float(np.abs(audio).max()) > 0.05
    with pytest.raises(MediaError, match="no video stream") as err:
        next(iter_frames(path))
    assert path.name in str(err.value)


def test_resample_rate(media: MediaFactory) -> None:
    wav = media.speech_wav()
    a16 = load_audio(wav)
    a8 = load_audio(wav, sr=8000)
    assert abs(a8.size * 2 - a16.size) <= 2


# -- bad inputs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["zero_byte", "truncated_mp4", "text_as_mp4"])
def test_bad_inputs_raise_media_error(media: MediaFactory, kind: str) -> None:
    path = getattr(media, kind)()
    for call in (probe, load_audio, lambda p: next(iter_frames(p))):
        with pytest.raises(MediaError) as err:
            call(path)
        msg = str(err.value)
        assert path.name in msg and "\n" not in msg and len(msg) < 400, msg
        assert err.value.path == str(path) and err.value.reason


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="not a regular file"):
        probe(tmp_path)


def test_no_audio_video(media: MediaFactory) -> None:
    path = media.no_audio_video()
    info = probe(path)
    assert info.has_video and not info.has_audio
    with pytest.raises(MediaError, match="no audio stream") as err:
        load_audio(path)
    assert path.name in str(err.value)


def test_missing_ffmpeg_binary(media: MediaFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = media.tone_video(duration=1.0)
    monkeypatch.setenv("DMD_FFPROBE", "/nonexistent/ffprobe-missing")
    with pytest.raises(FFmpegNotFoundError, match="install ffmpeg"):
        probe(path)
    monkeypatch.delenv("DMD_FFPROBE")
    monkeypatch.setenv("DMD_FFMPEG", "ffmpeg-not-installed-here")
    with pytest.raises(FFmpegNotFoundError, match="ffmpeg-not-installed-here"):
        load_audio(path)


# -- segments, sizes, rotation, streaming ------------------------------------------------------------------
def test_audio_segment_matches_full_decode(media: MediaFactory) -> None:
    wav = media.speech_wav()
    full = load_audio(wav)
    seg = load_audio(wav, start=1.0, end=1.5)
    assert seg.size == 8000
    ref = full[16000:24000]
    corr = float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref)))
    assert corr > 0.99
    with pytest.raises(MediaError, match="not after its start"):
        load_audio(wav, start=2.0, end=1.0)
    with pytest.raises(MediaError, match="past the end"):
        load_audio(wav, start=100.0)


def test_frame_segment_and_max_side(media: MediaFactory) -> None:
    path = media.face_video()
    frames = list(iter_frames(path, fps=10, start=1.0, end=2.0, max_side=320))
    times = [t for t, _ in frames]
    assert 9 <= len(frames) <= 11 and times[0] == pytest.approx(1.0) and times[-1] < 2.0
    assert frames[0][1].shape == (240, 320, 3)
    native = next(iter_frames(path, max_side=None))[1]
    assert native.shape == (480, 640, 3)
    assert frame_size(probe(path), 100) == (100, 74)  # 75 rounded down to even


def test_rotation_metadata_is_honoured(media: MediaFactory) -> None:
    path = media.rotated_video(rotation=90, size=(320, 240))
    info = probe(path)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (240, 320)  # display size, after rotation
    frames = list(iter_frames(path, fps=10))
    frame = frames[0][1]
    assert frame.shape == (320, 240, 3)
    # the stored top-left white box is no longer top-left after the 90 degree display rotation
    corners = {
        "tl": frame[:40, :30].mean(),
        "tr": frame[:40, -30:].mean(),
        "bl": frame[-40:, :30].mean(),
        "br": frame[-40:, -30:].mean(),
    }
    assert corners["tl"] < 50 and max(corners.values()) > 200
    scaled = next(iter_frames(path, max_side=160))[1]
    assert scaled.shape == (160, 120, 3)


def test_early_exit_stops_ffmpeg(media: MediaFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    procs: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def spy(*args, **kwargs):
        p = real_popen(*args, **kwargs)
        if Path(p.args[0]).name.startswith("ffmpeg"):  # not ffprobe
            procs.append(p)
        return p

    monkeypatch.setattr("dmd_pipeline.media.subprocess.Popen", spy)
    gen = iter_frames(media.face_video(), fps=25, max_side=None)
    _, first = next(gen)
    assert first.shape == (480, 640, 3) and first.flags.writeable
    assert len(procs) == 1 and procs[0].poll() is None  # still streaming: frames are not all in memory
    gen.close()
    assert procs[0].poll() is not None  # the process was ended and reaped


def test_one_frame_video(media: MediaFactory) -> None:
    path = media.one_frame_video()
    info = probe(path)
    assert info.n_frames == 1
    frames = list(iter_frames(path, fps=10))
    assert len(frames) == 1 and frames[0][0] == 0.0 and frames[0][1].shape == (480, 480, 3)


def test_path_with_spaces_and_non_ascii(media: MediaFactory) -> None:
    path = media.odd_path(media.face_video())
    assert " " in str(path) and not str(path).isascii()
    info = probe(path)
    assert info.has_audio and info.has_video
    assert load_audio(path, end=0.5).size == 8000
    assert len(list(iter_frames(path, fps=2))) == 6


def test_silence_decodes_to_zeros(media: MediaFactory) -> None:
    audio = load_audio(media.silence(duration=1.0))
    assert audio.size == 16000 and float(np.abs(audio).max()) == 0.0
