"""How to analyse one file: :class:`AnalyzeOptions` (the models are passed separately; what a result records
of its options is :mod:`dmd_pipeline.analysis.options`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Face frames the face model reads per second by default (``--face-fps``): half the 4 fps visual frames,
#: one per step of the 2 Hz face timeline (so it has no gaps); BENCHMARKS.md has what it costs.
DEFAULT_FACE_FPS = 2.0


@dataclass
class AnalyzeOptions:
    """How to analyse a clip (the model is passed separately)."""

    asr: str = "whisper"  # whisper | pocketsphinx | none (used when no transcript/sidecar)
    language: str = "auto"  # auto | en | a Whisper language code (dmd_pipeline/extractors/language.py)
    asr_model: str = "base"  # the Whisper model that transcribes English: base | tiny.en (--asr-model)
    transcript: str | Path | None = None  # transcript file (.txt/.srt/.vtt/.json) or literal text
    cue_rate_hz: float = 2.0
    max_segment_s: float = 10.0  # utterances longer than this are cut at pauses
    min_segment_s: float = 1.0  # shorter ones are merged into a close neighbour
    key_frames: int = 3
    batch_size: int = 16
    fps: float | None = None  # visual sampling rate; None: the model's feature spec, else 10 (4 if unused)
    # at most this many face frames a second are read by the face model (evenly spaced, at least one per
    # segment with a face; the visible fraction still counts every frame); 0 = every visual frame
    face_fps: float = DEFAULT_FACE_FPS
    # files longer than 1.5x this are extracted and scored in windows of about this length (memory bounded
    # by the window, not the file); 0 = always whole
    stream_window_s: float = 60.0
