"""Feature extractors (transcript, alignment, text, acoustic, visual).

Kept import-light on purpose: import the submodule you need, e.g.
``from dmd_pipeline.extractors.acoustic import AcousticExtractor`` (librosa) or
``from dmd_pipeline.extractors.visual import VisualExtractor`` (mediapipe).
"""

from dmd_pipeline.extractors.base import FrameFeatures

__all__ = ["FrameFeatures"]
