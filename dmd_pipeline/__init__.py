"""dmd-pipeline: raw video to multimodal sentiment/emotion scores with DMD (CVPR 2023).

Data flows one way: media -> extractors -> features -> model -> results.
Heavy libraries (torch, mediapipe, librosa, transformers) are imported lazily by the modules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
