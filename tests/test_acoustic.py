"""Tests of the acoustic extractor (librosa, 100 Hz frames)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from media_factory import MediaFactory, require_tools, session_factory

from dmd_pipeline.extractors import acoustic as acoustic_mod
from dmd_pipeline.extractors.acoustic import AcousticExtractor
from dmd_pipeline.media import load_audio, probe

SR = 16000


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    require_tools("ffmpeg", "ffprobe", "espeak-ng")
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def ex() -> AcousticExtractor:
    e = AcousticExtractor()
    e.extract(np.zeros(1600, np.float32), SR)  # numba compile / warm-up once
    return e


def _tone(freq: float, amp: float = 0.5, dur: float = 1.0, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(dur * SR)) / SR
    y = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    return (amp * y / np.abs(y).max()).astype(np.float32)


def _check_shape(ff, n_samples: int, ex: AcousticExtractor) -> None:
    assert ff.values.shape == (1 + n_samples // 160, ex.dim)
    assert ff.names == ex.feature_names and len(ff.names) == ex.dim
    assert np.isfinite(ff.values).all()
    assert np.allclose(np.diff(ff.times), 0.01)


def test_real_clips_plausible_f0(shared_clips: Path, ex: AcousticExtractor) -> None:
    for clip in sorted(p for p in shared_clips.iterdir() if p.suffix in {".mp4", ".flv"}):
        audio = load_audio(clip)
        ff = ex.extract(audio, SR)
        _check_shape(ff, audio.size, ex)
        assert ff.times[0] == 0.0 and ff.times[-1] <= audio.size / SR
        # mp3-in-flv decodes ~40 ms past the duration in the header
        assert ff.times[-1] <= probe(clip).duration + 0.06
        voiced = ff.column("voiced") > 0
        assert voiced.sum() >= 10, clip.name
        f0 = ff.column("f0_hz")
        assert np.all(f0[~voiced] == 0) and np.all(f0[voiced] >= 60)
        assert 70 <= float(np.median(f0[voiced])) <= 400, clip.name
        # voiced frames are the loud ones
        assert ff.column("rms_db")[voiced].mean() > ff.column("rms_db")[~voiced].mean()


def test_espeak_speech(media: MediaFactory, ex: AcousticExtractor) -> None:
    audio = load_audio(media.speech_wav())
    ff = ex.extract(audio, SR)
    _check_shape(ff, audio.size, ex)
    voiced = ff.column("voiced") > 0
    assert 0.3 < voiced.mean() < 0.95
    assert 70 <= float(np.median(ff.column("f0_hz")[voiced])) <= 250  # espeak's default male voice


@pytest.mark.parametrize("freq", [110.0, 200.0, 330.0])
def test_f0_of_harmonic_tone(ex: AcousticExtractor, freq: float) -> None:
    ff = ex.extract(_tone(freq, harmonics=5), SR)
    voiced = ff.column("voiced") > 0
    assert voiced.mean() > 0.9
    assert abs(float(np.median(ff.column("f0_hz")[voiced])) - freq) < 0.02 * freq
    assert ff.column("voicing_prob")[5:-5].min() > 0.9 and ff.column("hnr_db")[5:-5].mean() > 15


def test_silence_and_noise(ex: AcousticExtractor, media: MediaFactory) -> None:
    for audio in (np.zeros(SR, np.float32), load_audio(media.silence(duration=1.0))):
        ff = ex.extract(audio, SR)
        _check_shape(ff, audio.size, ex)
        assert ff.column("voiced").sum() == 0 and ff.column("f0_hz").sum() == 0
        assert np.all(ff.column("rms_db") == -100.0) and np.all(ff.column("centroid_khz") == 0.0)
    noise = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32)
    ff = ex.extract(noise, SR)
    assert ff.column("voiced").mean() < 0.1
    assert ff.column("flatness").mean() > 0.3 and ff.column("zcr").mean() > 0.3


def test_energy_and_spectral_shape(ex: AcousticExtractor) -> None:
    loud, quiet = ex.extract(_tone(440, 0.5), SR), ex.extract(_tone(440, 0.25), SR)
    mid = slice(10, -10)
    for name in ("rms_db", "loudness_db"):
        diff = loud.column(name)[mid].mean() - quiet.column(name)[mid].mean()
        assert abs(diff - 6.02) < 0.3, (name, diff)
    assert abs(loud.column("rms_db")[mid].mean() - 20 * np.log10(0.5 / np.sqrt(2))) < 0.5
    low, high = ex.extract(_tone(300), SR), ex.extract(_tone(3000), SR)
    assert low.column("centroid_khz")[mid].mean() < 0.6 < 2.5 < high.column("centroid_khz")[mid].mean()
    assert low.column("alpha_ratio_db")[mid].mean() > 20 > -20 > high.column("alpha_ratio_db")[mid].mean()
    assert not np.allclose(low.values[mid, 12:], high.values[mid, 12:])  # MFCCs differ


def test_short_empty_and_resampled_input(ex: AcousticExtractor, media: MediaFactory) -> None:
    assert ex.extract(np.zeros(0, np.float32), SR).values.shape == (0, ex.dim)
    for n in (1, 100, 500):
        ff = ex.extract(np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32), SR)
        _check_shape(ff, n, ex)
    wav = media.speech_wav()
    a16, a44 = load_audio(wav), load_audio(wav, sr=44100)
    f16, f44 = ex.extract(a16, SR), ex.extract(a44, 44100)
    assert abs(f16.n_frames - f44.n_frames) <= 1
    v = (f16.column("voiced") > 0)[: min(f16.n_frames, f44.n_frames)]
    m16 = np.median(f16.column("f0_hz")[: v.size][v])
    assert abs(np.median(f44.column("f0_hz")[: v.size][v]) - m16) < 0.05 * m16


def test_deltas_names_and_hash() -> None:
    base, with_d = AcousticExtractor(), AcousticExtractor(deltas=True, n_mfcc=20)
    assert base.dim == 25 and with_d.dim == 12 + 40
    assert with_d.feature_names[-1] == "d_mfcc_20"
    ff = with_d.extract(_tone(200, harmonics=3), SR)
    d = ff.values[:, [with_d.feature_names.index(f"d_mfcc_{i}") for i in range(1, 21)]]
    assert np.abs(d[10:-10]).max() < 1.0  # a steady tone has (near) constant MFCCs
    assert base.config_hash() == AcousticExtractor().config_hash() != with_d.config_hash()
    assert AcousticExtractor(voicing_threshold=0.6).config_hash() != base.config_hash()
    # every column is documented in the module docstring table
    for name in base.feature_names[:12] + ["mfcc_1", "d_mfcc_1"]:
        assert name in (acoustic_mod.__doc__ or ""), name


def test_speed_warm(ex: AcousticExtractor, media: MediaFactory) -> None:
    audio = np.tile(load_audio(media.speech_wav()), 2)[: 10 * SR]
    t0 = time.perf_counter()
    ex.extract(audio, SR)
    rtf = (time.perf_counter() - t0) / (audio.size / SR)
    assert rtf < 0.1, f"acoustic extraction took {rtf:.3f} s per second of audio"  # ~0.007 when idle


def test_concurrent_first_uses_leave_a_numba_cache_later_processes_can_load(tmp_path) -> None:
    """Three processes use the extractor for the first time at once on a cold numba cache, then two more
    load that cache. Without the compile lock of ``librosa_ready`` the later ones crashed (SIGSEGV in
    librosa.util.localmin: the concurrent writers left an index pointing at the wrong code)."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np; from dmd_pipeline.extractors.acoustic import AcousticExtractor as A; "
        "x = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1; "
        "print(A().extract(x, 16000).values.shape)"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp_path,  # outside the checkout: the crash showed there, not with the checkout as cwd
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(p: subprocess.Popen) -> None:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-2000:]
        assert "(301, 25)" in out

    for p in [start() for _ in range(3)]:  # all three start before the first is awaited
        finish(p)
    for p in [start(), start()]:
        finish(p)
