"""Acoustic features from the Whisper encoder: 384-d states at 50 Hz (hop 20 ms), and the combined sets.

The bundled Whisper tiny.en (CTranslate2, the model ASR already loads; sha256-checked) turns a log-mel
spectrogram into encoder states: 4 transformer layers over 2x-strided convolutions of 80 mel bands, i.e. one
384-d vector per 20 ms. These states carry much of what a voice sounds like (pitch contour, energy,
voice quality, speaking rate), which is why they are a strong base for speech emotion recognition; the
25 librosa dims (:mod:`dmd_pipeline.extractors.acoustic`) are a weaker, interpretable set.

Columns of the settings (``ExtractionConfig.acoustic``; rates and costs also in the README):

================================  ==========================================================================
setting                           columns
================================  ==========================================================================
``librosa``                       the 25 librosa dims at 100 Hz (see :mod:`~dmd_pipeline.extractors.acoustic`)
``whisper``                       ``whisper_0`` .. ``whisper_383``: final encoder state (after the encoder's
                                  last layer norm) of Whisper tiny.en, dimension i, at 50 Hz; frame ``t``
                                  covers ``[0.02 t, 0.02 t + 0.02)`` s (time stamp = its centre)
``whisper-base``                  ``whisper_base_0`` .. ``whisper_base_511``: the final encoder state (after
                                  the last layer norm) of the multilingual Whisper base, at 50 Hz, computed
                                  in float32 torch (:mod:`~dmd_pipeline.extractors.whisper_layers`)
``whisper-base-layers``           7 x 512 = 3584 columns at 50 Hz, **layer-major**: ``whisper_base_l{k}_{i}``
                                  is dimension i of state k; k = 0 the input embedding (convolutions +
                                  positions), k = 1..5 the output of encoder block k, k = 6 the final
                                  LayerNorm of block 6 (= the ``whisper-base`` columns); column
                                  ``512 k + i``, so ``values.reshape(T, 7, 512)`` gives (frame, layer, dim)
``whisper-base-layers-s2``        the same 3584 columns, each the mean over 2 consecutive 20 ms frames:
                                  25 Hz, frame ``t`` covers ``[0.04 t, 0.04 t + 0.04)`` s
``whisper-base-layers-s4``        the same, mean over 4 frames: 12.5 Hz (80 ms frames)
``whisper-base-layers-s5``        the same, mean over 5 frames: 10 Hz (100 ms frames), the states and rate
                                  of the corpus feature stores (:mod:`dmd_pipeline.data.corpus_features`,
                                  ``pool = 5``) the bundled ``voice-emotion-5corpora`` model was trained on
``<encoder>+librosa``             any of the encoder settings above, then the 25 librosa columns averaged
                                  over each of its frames (2 librosa frames per 20 ms, 4 per 40 ms, 8 per
                                  80 ms); e.g. ``whisper+librosa`` = 409 dims at 50 Hz
================================  ==========================================================================

How the encoder is run: the log-mel spectrogram is computed by faster-whisper's feature extractor over the
clip's own length (no 30 s padding; CTranslate2 accepts a shorter mel) and encoded in **chunks** that never
exceed 30 s (Whisper's position table): a signal of ``d`` seconds is cut into ``n = max(1, round(d /
chunk_s))`` equal chunks (default ``chunk_s = 4``, about the length of the RAVDESS clips the bundled emotion
model was trained on, so a long file is encoded in pieces like those the model saw). Each chunk's mel is
normalised on its own, as Whisper does. The output never contains NaN/inf.

Speed (2 shared cores, int8): about 11 ms per 3.3 s clip after the model is loaded. The Whisper base
settings run the torch encoder in float32 (same chunks): speed and bytes per second of audio per setting in
BENCHMARKS.md and the README.
"""

from __future__ import annotations

import numpy as np

from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.extractors.transcribe import to_16k, whisper_model
from dmd_pipeline.extractors.whisper_layers import chunk_ranges
from dmd_pipeline.model_files import whisper_model_dir
from dmd_pipeline.utils import config_hash as _hash

__all__ = [
    "ACOUSTIC_SETTINGS",
    "ENCODER_SETTINGS",
    "AcousticFeatureSet",
    "WhisperBaseExtractor",
    "WhisperEncoderExtractor",
    "acoustic_rate_hz",
    "encoder_part",
    "make_acoustic_extractor",
]

#: The Whisper encoder parts of a setting and their time stride in 20 ms frames.
ENCODER_SETTINGS: dict[str, int] = {
    "whisper": 1,
    "whisper-base": 1,
    "whisper-base-layers": 1,
    "whisper-base-layers-s2": 2,
    "whisper-base-layers-s4": 4,
    "whisper-base-layers-s5": 5,
}
#: The named acoustic feature settings of :class:`~dmd_pipeline.pipeline.ExtractionConfig` (module docstring).
ACOUSTIC_SETTINGS: tuple[str, ...] = (
    "librosa",
    "whisper",
    "whisper+librosa",
    *(f"{e}{suffix}" for e in list(ENCODER_SETTINGS)[1:] for suffix in ("", "+librosa")),
)
_SR = 16000
_HOP_S = 0.02
_MAX_CHUNK_S = 30.0
_LIBROSA_HOP_S = 0.01


def encoder_part(setting: str) -> str | None:
    """The Whisper encoder part of a setting (``whisper-base+librosa`` -> ``whisper-base``), None for
    ``librosa``; ValueError for an unknown setting."""
    if setting not in ACOUSTIC_SETTINGS:
        raise ValueError(
            f"unknown acoustic setting {setting!r}; choose one of {', '.join(ACOUSTIC_SETTINGS)}"
        )
    enc = setting.split("+", 1)[0]
    return enc if enc in ENCODER_SETTINGS else None


def acoustic_rate_hz(setting: str) -> float:
    """Frames per second of a setting: 100 (librosa), 50, 25, 12.5 or 10."""
    enc = encoder_part(setting)
    return 1.0 / _LIBROSA_HOP_S if enc is None else 1.0 / (_HOP_S * ENCODER_SETTINGS[enc])


class WhisperEncoderExtractor:
    """Whisper encoder states (384-d for tiny.en) at 50 Hz, computed chunk by chunk (see module docstring)."""

    hop_s: float = _HOP_S

    def __init__(self, model_path: str | None = None, chunk_s: float = 4.0) -> None:
        if not 0.5 <= float(chunk_s) <= _MAX_CHUNK_S:
            raise ValueError(f"chunk_s must be in [0.5, {_MAX_CHUNK_S}] s, got {chunk_s}")

        self.model_path = model_path
        self.chunk_s = float(chunk_s)
        self._model = whisper_model(model_path)  # the same loaded model as ASR (one per process)
        self.dim: int = self._encoder_dim()
        self.feature_names: list[str] = [f"whisper_{i}" for i in range(self.dim)]

    def _encoder_dim(self) -> int:
        out = self._encode_chunk(np.zeros(_SR // 2, np.float32))
        return int(out.shape[1])

    def settings(self) -> dict:
        """Every setting that changes the output."""
        return {"extractor": "whisper-encoder-v1", "chunk_s": self.chunk_s, "hop_s": self.hop_s}

    def config_hash(self) -> str:
        """Short stable hash of the settings and the model identity."""
        return _hash({**self.settings(), "model": str(whisper_model_dir(self.model_path).name)})

    def chunks(self, n_samples: int) -> list[tuple[int, int]]:
        """Sample ranges ``[a, b)`` of the equal chunks a signal of ``n_samples`` is encoded in."""
        return chunk_ranges(n_samples, self.chunk_s)

    def _encode_chunk(self, y: np.ndarray) -> np.ndarray:
        """(T, D) encoder states of one chunk, T = ceil(len(y) / 320)."""
        import ctranslate2

        step = int(_HOP_S * _SR)
        n_out = max(1, -(-len(y) // step))
        need = n_out * step + 160  # mel frames = len // 160; +160 keeps the last 20 ms frame whole
        y = np.pad(np.asarray(y, dtype=np.float32), (0, max(0, need - len(y))))
        mel = self._model.feature_extractor(y, padding=0)[:, : 2 * n_out]
        x = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None].astype(np.float32)))
        out = np.asarray(self._model.model.encode(x, to_cpu=True), dtype=np.float32)[0]
        return out[:n_out]

    def extract(self, audio: np.ndarray, sr: int) -> FrameFeatures:
        """Encoder states of a mono signal (resampled to 16 kHz when ``sr`` differs)."""
        y = to_16k(np.asarray(audio, dtype=np.float32).reshape(-1), sr) if sr != _SR else audio
        y = np.nan_to_num(np.asarray(y, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
        parts = [self._encode_chunk(y[a:b]) for a, b in self.chunks(len(y))]
        values = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        times = np.arange(len(values), dtype=np.float64) * _HOP_S + _HOP_S / 2
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        return FrameFeatures(values, times, list(self.feature_names))


class WhisperBaseExtractor:
    """The ``whisper-base*`` encoder parts: Whisper base states from the float32 torch encoder
    (:class:`~dmd_pipeline.extractors.whisper_layers.WhisperLayersExtractor`), the final state alone
    (``layers=False``) or the 7 layer states layer-major, mean-pooled over ``stride`` 20 ms frames. Always the
    bundled Whisper base (:func:`~dmd_pipeline.model_files.whisper_base_dir`): ``ExtractionConfig.whisper_model``
    names the ASR / ``whisper`` setting's model, not this one."""

    def __init__(self, layers: bool = False, stride: int = 1, chunk_s: float = 4.0) -> None:
        from dmd_pipeline.extractors.whisper_layers import WhisperLayersExtractor

        if stride not in (1, 2, 4, 5):
            raise ValueError(f"stride must be 1, 2, 4 or 5 frames, got {stride}")
        self.layers = bool(layers)
        self.stride = int(stride)
        self.encoder = WhisperLayersExtractor(chunk_s=chunk_s)
        self.chunk_s = self.encoder.chunk_s
        width = self.encoder.dim
        self.states: list[int] = (
            self.encoder.layer_states() if self.layers else [self.encoder.encoder.n_blocks + 1]
        )
        if self.layers:
            self.feature_names = [
                f"whisper_base_l{k}_{i}" for k in range(len(self.states)) for i in range(width)
            ]
        else:
            self.feature_names = [f"whisper_base_{i}" for i in range(width)]
        self.dim: int = len(self.feature_names)
        self.hop_s: float = _HOP_S * self.stride

    def settings(self) -> dict:
        """Every setting that changes the output."""
        return {
            "extractor": "whisper-base-torch-v1",
            "chunk_s": self.chunk_s,
            "stride": self.stride,
            "states": self.states,
        }

    def config_hash(self) -> str:
        """Short stable hash of the settings and the model identity (the joined model.bin's sha256)."""
        from dmd_pipeline.model_files import WHISPER_BASE_SHA256

        return _hash({**self.settings(), "model": WHISPER_BASE_SHA256["model.bin"]})

    def extract(self, audio: np.ndarray, sr: int) -> FrameFeatures:
        """States of a mono signal (resampled to 16 kHz when ``sr`` differs), (T, dim) layer-major."""
        y = to_16k(np.asarray(audio, dtype=np.float32).reshape(-1), sr) if sr != _SR else audio
        hs = self.encoder.hidden_states(y, self.states, self.stride)  # (L, T, width)
        values = np.ascontiguousarray(hs.transpose(1, 0, 2).reshape(hs.shape[1], -1))
        times = np.arange(len(values), dtype=np.float64) * self.hop_s + self.hop_s / 2
        return FrameFeatures(values, times, list(self.feature_names))


def _pool_rows(values: np.ndarray, n_out: int, k: int = 2) -> np.ndarray:
    """Librosa rows -> ``n_out`` rows, each the mean of rows ``k t .. k t + k - 1`` (those that exist; the
    last row when none does)."""
    n, d = values.shape
    out = np.zeros((n_out, d), np.float32)
    m = min(n // k, n_out)
    if m:
        out[:m] = values[: k * m].reshape(m, k, d).mean(axis=1)
    for t in range(m, n_out):  # a trailing partial group, or the librosa frames ran out
        if k * t < n:
            out[t] = values[k * t : min(k * t + k, n)].mean(axis=0)
        else:
            out[t] = values[n - 1] if n else 0.0
    return out


class AcousticFeatureSet:
    """The acoustic extractor of one named setting (``ACOUSTIC_SETTINGS``: an encoder part, optionally
    ``+librosa``).

    Same interface as :class:`~dmd_pipeline.extractors.acoustic.AcousticExtractor`: ``extract(audio, sr)``,
    ``dim``, ``feature_names``, ``config_hash()``, ``hop_s``.
    """

    def __init__(self, setting: str = "librosa", whisper_model: str | None = None) -> None:
        enc = encoder_part(setting)  # ValueError for an unknown setting
        from dmd_pipeline.extractors.acoustic import AcousticExtractor

        self.setting = setting
        self.librosa = AcousticExtractor() if setting == "librosa" or setting.endswith("+librosa") else None
        self.whisper: WhisperEncoderExtractor | WhisperBaseExtractor | None = None
        if enc == "whisper":
            self.whisper = WhisperEncoderExtractor(whisper_model)
        elif enc is not None:
            self.whisper = WhisperBaseExtractor(layers="layers" in enc, stride=ENCODER_SETTINGS[enc])
        self.feature_names: list[str] = (list(self.whisper.feature_names) if self.whisper else []) + (
            list(self.librosa.feature_names) if self.librosa else []
        )
        self.dim: int = len(self.feature_names)
        self.hop_s: float = self.whisper.hop_s if self.whisper else AcousticExtractor.hop_s

    def config_hash(self) -> str:
        """Hash of the setting and of each part's own settings."""
        return _hash(
            {
                "setting": self.setting,
                "librosa": self.librosa.config_hash() if self.librosa else None,
                "whisper": self.whisper.config_hash() if self.whisper else None,
            }
        )

    def warmup(self) -> None:
        """Pay librosa's lazy imports/compilation up front (see ``AcousticExtractor.warmup``)."""
        if self.librosa is not None:
            self.librosa.warmup()

    def extract(self, audio: np.ndarray, sr: int) -> FrameFeatures:
        """Features of a mono signal in this setting's layout (see the module docstring)."""
        if self.whisper is None:
            return self.librosa.extract(audio, sr)  # type: ignore[union-attr]
        w = self.whisper.extract(audio, sr)
        if self.librosa is None:
            return w
        lib = self.librosa.extract(audio, sr)
        k = int(round(self.whisper.hop_s / self.librosa.hop_s))
        pooled = _pool_rows(lib.values, w.n_frames, k)
        return FrameFeatures(np.concatenate([w.values, pooled], axis=1), w.times, list(self.feature_names))


def make_acoustic_extractor(setting: str = "librosa", whisper_model: str | None = None):
    """The extractor of a setting: the plain librosa ``AcousticExtractor`` for ``librosa`` (unchanged
    behaviour), else an :class:`AcousticFeatureSet`."""
    if setting == "librosa":
        from dmd_pipeline.extractors.acoustic import AcousticExtractor

        return AcousticExtractor()
    return AcousticFeatureSet(setting, whisper_model)
