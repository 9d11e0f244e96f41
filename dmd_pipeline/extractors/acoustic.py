"""Frame-level acoustic features at 100 Hz (hop 10 ms), a small COVAREP-like set computed with librosa.

Default columns (``AcousticExtractor().feature_names``; 25 dims, 38 with ``deltas=True``):

==================  =====================================================================================
name                meaning
==================  =====================================================================================
f0_hz               fundamental frequency from YIN (``librosa.yin``, 60-500 Hz, 64 ms window); 0 when unvoiced
voiced              1 when the frame is voiced (voicing_prob >= threshold and rms_db >= energy floor), else 0
voicing_prob        normalised autocorrelation of the 64 ms frame at the YIN period, clipped to [0, 1]
hnr_db              harmonics-to-noise ratio from that autocorrelation, 10*log10(r/(1-r)), in [-20, 40] dB
rms_db              frame RMS energy in dBFS (25 ms frames), floor -100 dB (digital silence)
loudness_db         A-weighted spectral power in dB (a loudness proxy; same floor)
zcr                 zero-crossing rate per sample (25 ms frames), in [0, 1]
centroid_khz        spectral centroid (magnitude-weighted mean frequency), kHz; 0 in silence
bandwidth_khz       spectral bandwidth (magnitude-weighted std of frequency around the centroid), kHz
rolloff_khz         frequency below which 85 % of the spectral magnitude lies, kHz
flatness            spectral flatness (geometric / arithmetic mean of the power spectrum), in [0, 1]
alpha_ratio_db      10*log10(power 50-1000 Hz / power 1-5 kHz) (eGeMAPS alpha ratio, low/high; spectral tilt)
mfcc_1 .. mfcc_N    MFCCs 1..N (c0 dropped: energy is rms_db), 40 mel bands 20-8000 Hz, log power, DCT-II
d_mfcc_1 ..         (``deltas=True``) regression deltas of the MFCCs over +-2 frames
==================  =====================================================================================

The STFT uses a 25 ms Hann window (400 samples, n_fft 512) at 16 kHz. Frames are centred: frame ``t``
covers time ``t * 0.01`` s, and a signal of ``n`` samples gives ``1 + n // 160`` frames. Audio at another
sample rate is resampled to 16 kHz first. Output never contains NaN/inf (silence included).

Speed (2 shared cores, warm): 6-9 ms per second of audio; F0/voicing run in blocks of 500 frames so memory
stays bounded on long audio (~65 MB extra for 60 s). The first call in a process pays librosa's lazy imports
(scipy.signal, numba: 2.5-4.7 s measured) and, in a fresh environment, a one-off numba compile (~20 s);
``warmup()`` does that up front. The first use in a process goes through :func:`librosa_ready`, which holds a
lock on numba's cache folder while librosa's kernels are compiled or loaded (see there why).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

import numpy as np
from scipy.ndimage import median_filter

from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.utils import config_hash as _hash

__all__ = ["AcousticExtractor", "librosa_ready"]

_SCALAR_NAMES = [
    "f0_hz",
    "voiced",
    "voicing_prob",
    "hnr_db",
    "rms_db",
    "loudness_db",
    "zcr",
    "centroid_khz",
    "bandwidth_khz",
    "rolloff_khz",
    "flatness",
    "alpha_ratio_db",
]
_DB_FLOOR = -100.0
_BLOCK = 500  # frames per block of the F0/periodicity computation (bounds memory on long audio)
_TINY = 1e-10


class AcousticExtractor:
    """COVAREP-like frame features (see the module docstring for every column) at 100 Hz."""

    hop_s: float = 0.01

    def __init__(
        self,
        sr: int = 16000,
        n_mfcc: int = 13,
        deltas: bool = False,
        fmin: float = 60.0,
        fmax: float = 500.0,
        voicing_threshold: float = 0.45,
        energy_floor_db: float = -50.0,
    ) -> None:
        if sr % 100:
            raise ValueError(f"sr must be a multiple of 100 for a 10 ms hop, got {sr}")
        self.sr = int(sr)
        self.n_mfcc = int(n_mfcc)
        self.deltas = bool(deltas)
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.voicing_threshold = float(voicing_threshold)
        self.energy_floor_db = float(energy_floor_db)
        self.hop = self.sr // 100
        self.win = int(round(0.025 * self.sr))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.f0_frame = 1 << int(np.ceil(np.log2(2.0 * self.sr / self.fmin)))  # >= 2 periods of fmin
        self.feature_names: list[str] = list(_SCALAR_NAMES) + [f"mfcc_{i}" for i in range(1, self.n_mfcc + 1)]
        if self.deltas:
            self.feature_names += [f"d_mfcc_{i}" for i in range(1, self.n_mfcc + 1)]
        self.dim: int = len(self.feature_names)
        self._mel = None
        self._aweight = None

    def settings(self) -> dict:
        """Every setting that changes the output."""
        return {
            "extractor": "acoustic-v1",
            "sr": self.sr,
            "hop": self.hop,
            "win": self.win,
            "n_fft": self.n_fft,
            "f0_frame": self.f0_frame,
            "n_mfcc": self.n_mfcc,
            "deltas": self.deltas,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "voicing_threshold": self.voicing_threshold,
            "energy_floor_db": self.energy_floor_db,
        }

    def config_hash(self) -> str:
        """Short stable hash of the settings and the librosa version (no model file involved)."""
        import librosa

        return _hash({**self.settings(), "librosa": librosa.__version__})

    def warmup(self) -> None:
        """Run once on 0.1 s of silence: pays librosa's lazy imports (scipy.signal, numba; about 3-6 s in
        a fresh process, plus a one-off numba compile in a fresh environment) before timing-critical work."""
        self.extract(np.zeros(self.sr // 10, np.float32), self.sr)

    def extract(self, audio: np.ndarray, sr: int) -> FrameFeatures:
        """Features of a mono signal (float, any scale around [-1, 1]); resampled when ``sr`` differs."""
        librosa = librosa_ready()
        y = np.asarray(audio, dtype=np.float32).reshape(-1)
        if y.size and sr != self.sr:
            y = librosa.resample(y, orig_sr=sr, target_sr=self.sr, res_type="soxr_hq").astype(np.float32)
        y = np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
        n_frames = 1 + y.size // self.hop if y.size else 0
        times = np.arange(n_frames, dtype=np.float64) * self.hop_s
        if n_frames == 0:
            return FrameFeatures(np.zeros((0, self.dim), np.float32), times, list(self.feature_names))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "n_fft too large" for clips under 32 ms
            cols = self._compute(y, librosa)
        values = np.stack([c[:n_frames] for c in cols], axis=1) if cols else np.zeros((n_frames, 0))
        values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return FrameFeatures(values, times, list(self.feature_names))

    # -- internals -------------------------------------------------------------------------------------
    def _compute(self, y: np.ndarray, librosa) -> list[np.ndarray]:
        sr, hop = self.sr, self.hop
        # Energy and zero crossings on 25 ms frames.
        rms = librosa.feature.rms(y=y, frame_length=self.win, hop_length=hop, center=True)[0]
        rms_db = np.maximum(20.0 * np.log10(np.maximum(rms, 1e-5)), _DB_FLOOR)
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=self.win, hop_length=hop, center=True)[0]

        # One STFT for every spectral feature.
        mag = np.abs(librosa.stft(y, n_fft=self.n_fft, hop_length=hop, win_length=self.win, center=True))
        power = mag.astype(np.float64) ** 2
        freqs = np.linspace(0.0, sr / 2.0, mag.shape[0])
        msum = mag.sum(axis=0)
        has = msum > _TINY
        safe = np.where(has, msum, 1.0)
        centroid = np.where(has, (freqs[:, None] * mag).sum(axis=0) / safe, 0.0)
        spread = (mag * (freqs[:, None] - centroid[None, :]) ** 2).sum(axis=0) / safe
        bandwidth = np.where(has, np.sqrt(np.maximum(spread, 0.0)), 0.0)
        cum = np.cumsum(mag, axis=0)
        idx = np.argmax(cum >= 0.85 * cum[-1:, :], axis=0)
        rolloff = np.where(has, freqs[idx], 0.0)
        p = power + _TINY
        flatness = np.exp(np.mean(np.log(p), axis=0)) / np.mean(p, axis=0)
        low = power[(freqs >= 50) & (freqs < 1000)].sum(axis=0)
        high = power[(freqs >= 1000) & (freqs < 5000)].sum(axis=0)
        alpha = np.where(has, 10.0 * np.log10((low + _TINY) / (high + _TINY)), 0.0)
        if self._aweight is None:
            self._aweight = 10.0 ** (librosa.A_weighting(np.maximum(freqs, 1.0)) / 10.0)
        # Normalised so that a full-scale sine gives about 0 dB before weighting (Hann window energy).
        norm = (np.hanning(self.win + 2)[1:-1] ** 2).sum() * self.win / 2.0
        a_pow = (power * self._aweight[:, None]).sum(axis=0) / norm
        loudness = np.maximum(10.0 * np.log10(a_pow + 1e-10), _DB_FLOOR)

        # MFCCs from the same power spectrogram.
        if self._mel is None:
            self._mel = librosa.filters.mel(sr=sr, n_fft=self.n_fft, n_mels=40, fmin=20.0, fmax=sr / 2.0)
        mel = self._mel @ power
        log_mel = 10.0 * np.log10(np.maximum(mel, _TINY))
        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=self.n_mfcc + 1)[1:]

        # F0 by YIN, voicing from the normalised autocorrelation (see _periodicity), in blocks of frames.
        f0, nacf = self._f0_and_periodicity(y, rms_db.shape[0], librosa)
        voiced = (nacf >= self.voicing_threshold) & (rms_db >= self.energy_floor_db)
        f0_out = np.where(voiced, f0, 0.0)
        r = np.clip(nacf, 1e-3, 1.0 - 1e-3)
        hnr = np.clip(10.0 * np.log10(r / (1.0 - r)), -20.0, 40.0)

        cols = [
            f0_out,
            voiced.astype(np.float64),
            nacf,
            hnr,
            rms_db,
            loudness,
            zcr,
            centroid / 1000.0,
            bandwidth / 1000.0,
            rolloff / 1000.0,
            np.clip(flatness, 0.0, 1.0),
            alpha,
        ]
        cols += list(mfcc)
        if self.deltas:
            cols += list(_delta(mfcc))
        return cols

    def _f0_and_periodicity(self, y: np.ndarray, n_frames: int, librosa) -> tuple[np.ndarray, np.ndarray]:
        """YIN F0 and periodicity of every centred frame, computed block by block so that memory stays
        bounded on long audio. Equal to ``librosa.yin(y, center=True)`` (zero padding) frame by frame."""
        n, hop = self.f0_frame, self.hop
        ypad = np.pad(y, n // 2)
        f0 = np.zeros(n_frames)
        nacf = np.zeros(n_frames)
        for a in range(0, n_frames, _BLOCK):
            b = min(a + _BLOCK, n_frames)
            seg = ypad[a * hop : (b - 1) * hop + n]
            if seg.size < n:
                seg = np.pad(seg, (0, n - seg.size))
            f0[a:b] = librosa.yin(
                seg, fmin=self.fmin, fmax=self.fmax, sr=self.sr, frame_length=n, hop_length=hop, center=False
            )[: b - a]
            frames = librosa.util.frame(seg, frame_length=n, hop_length=hop, axis=0)[: b - a]
            nacf[a:b] = self._periodicity(frames)
        f0 = np.nan_to_num(f0, nan=self.fmin, posinf=self.fmax, neginf=self.fmin)
        if f0.size >= 5:  # 5-frame median removes isolated octave jumps of YIN
            f0 = median_filter(f0, size=5, mode="nearest")
        return f0, nacf

    def _periodicity(self, frames: np.ndarray) -> np.ndarray:
        """Per frame (rows of ``frames``), the peak of the normalised autocorrelation r(T)/sqrt(E_head E_tail)
        over the lags T of the F0 search range (sr/fmax .. sr/fmin): near 1 for periodic (voiced) frames,
        near 0 for noise and silence. Independent of YIN's choice of octave."""
        n = frames.shape[1]
        x = frames.astype(np.float64)
        spec = np.fft.rfft(x, n=2 * n, axis=1)
        lags = np.arange(int(self.sr / self.fmax), int(np.ceil(self.sr / self.fmin)) + 1)
        ac = np.fft.irfft(spec.real**2 + spec.imag**2, axis=1)[:, lags]
        cs = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x**2, axis=1)], axis=1)
        denom = np.sqrt(cs[:, n - lags] * (cs[:, -1:] - cs[:, lags]))
        ok = denom > 1e-9 * n
        r = np.where(ok, ac / np.where(ok, denom, 1.0), 0.0)
        return np.clip(r.max(axis=1), 0.0, 1.0)


_READY: list[ModuleType] = []
_READY_LOCK = threading.Lock()


def librosa_ready() -> ModuleType:
    """librosa, imported and with every kernel this extractor runs compiled or loaded, once per process.

    Why: librosa compiles its numba kernels with ``cache=True`` into ``NUMBA_CACHE_DIR``, one folder shared by
    every process of an install (``dmd_pipeline/__init__.py``). Processes that compile the same kernels at
    the same time (``-j 2`` workers, or a test run beside a CLI, on a fresh install) can leave a cache index
    that points at code compiled for another signature, and every later process that loads it crashes with
    a segmentation fault in ``librosa.util.localmin`` (seen on a fresh clone's test run). So the first use in
    a process imports librosa and runs the extractor once on 0.1 s of silence while holding an exclusive
    lock on that folder: one process compiles and writes, the others wait and then load a complete cache.
    Afterwards nothing is locked.
    """
    with _READY_LOCK:
        if not _READY:
            with _numba_cache_lock():
                import librosa

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    AcousticExtractor()._compute(np.zeros(1600, np.float32), librosa)
            _READY.append(librosa)
    return _READY[0]


@contextlib.contextmanager
def _numba_cache_lock() -> Iterator[None]:
    """An exclusive ``flock`` on ``$NUMBA_CACHE_DIR/.dmd-compile.lock`` (no lock where that cannot be had:
    no fcntl, no cache folder set, or a read-only one; numba then does not write a cache either)."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    fd = None
    try:
        import fcntl

        if folder:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(os.path.join(folder, ".dmd-compile.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _delta(x: np.ndarray, k: int = 2) -> np.ndarray:
    """Regression deltas over +-k frames with edge padding, any number of frames (rows = features)."""
    if x.shape[1] == 0:
        return x.copy()
    xp = np.pad(x, ((0, 0), (k, k)), mode="edge")
    n = x.shape[1]
    num = sum(i * (xp[:, k + i : k + i + n] - xp[:, k - i : k - i + n]) for i in range(1, k + 1))
    return num / (2.0 * sum(i * i for i in range(1, k + 1)))
