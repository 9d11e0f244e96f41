"""How much of a recording is speech: the evidence a voice channel needs before it answers.

Silero VAD (the ONNX model that ships inside faster-whisper, run by onnxruntime on one thread; offline,
no download) gives a speech probability per 32 ms frame of 16 kHz audio; a frame is speech when it is at
least :data:`SPEECH_THRESHOLD` (Silero's own default). :func:`speech_seconds` counts those frames, with no
padding or smoothing, so synthetic tones, noise and silence count (almost) nothing and a 0.1 s clip
cannot reach the minimum the voice channel asks for (``MIN_VOICE_SPEECH_S`` in
:mod:`dmd_pipeline.analysis`; chosen by measurement, ``benchmarks/voice_evidence.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import threading

import numpy as np

SAMPLE_RATE = 16000
#: Samples per Silero frame at 16 kHz (32 ms).
FRAME = 512
FRAME_S = FRAME / SAMPLE_RATE
#: Speech probability at or above which a frame is speech.
SPEECH_THRESHOLD = 0.5

_LOCK = threading.Lock()  # one onnxruntime session, used by one thread at a time


@functools.lru_cache(maxsize=1)
def _model() -> object:
    from dmd_pipeline.extractors.faster_whisper_import import faster_whisper_module

    faster_whisper_module()
    from faster_whisper.vad import get_vad_model

    return get_vad_model()


def speech_probabilities(audio16: np.ndarray) -> np.ndarray:
    """Silero's speech probability for each 32 ms frame of 16 kHz mono audio (the last frame zero-padded);
    empty for empty audio."""
    x = np.asarray(audio16, dtype=np.float32).reshape(-1)
    if x.size == 0:
        return np.zeros(0, dtype=np.float32)
    x = np.pad(x, (0, (-x.size) % FRAME))
    with _LOCK:
        probs = _model()(x)
    return np.asarray(probs, dtype=np.float32).reshape(-1)[: x.size // FRAME]


def speech_seconds(audio16: np.ndarray, threshold: float = SPEECH_THRESHOLD) -> float:
    """Seconds of 16 kHz mono audio that Silero VAD calls speech (frames at or above ``threshold``)."""
    probs = speech_probabilities(audio16)
    return float(np.count_nonzero(probs >= threshold)) * FRAME_S
