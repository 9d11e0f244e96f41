"""Faces for DMD: the named visual feature settings (``dmd extract --visual``).

=========================  ============================================================================
setting                    columns per video frame
=========================  ============================================================================
``landmarks`` (default)    the FaceLandmarker features of :mod:`dmd_pipeline.extractors.visual` (66: face
                           presence, 52 blendshapes, head pose, mouth/eye/brow ratios, box; + 1434 raw
                           landmarks with ``keep_landmarks``): what every model trained before had
``expression``             ``face_present``, then the face-expression network's (the bundled
                           ``fer-face-expression``) class probabilities ``expr_p_<class>`` (7: angry,
                           disgust, fear, happy, neutral, sad, surprise) and its penultimate-layer
                           embedding ``expr_emb_<i>`` (256) of the frame's aligned face crop
``expression+landmarks``   the ``landmarks`` columns, then the ``expr_p_*`` and ``expr_emb_*`` columns
=========================  ============================================================================

The expression columns are the mean over the crop and its mirror image (as the model is evaluated); a
frame without a face has zeros there and ``face_present`` 0. They are computed for every detected face
(``det_values``), so the speaking-face composition (:mod:`dmd_pipeline.face.speaking`) picks them with the
rest of the face's row. :class:`VisualFeatureSet` has the extractor interface (``feature_names``, ``dim``,
``settings``, ``config_hash``, ``extract``, ``close``) so the pipeline, the feature cache key and a model's
recorded feature spec treat it like the plain landmarker.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.extractors.base import FrameFeatures

__all__ = ["VISUAL_SETTINGS", "VisualFeatureSet", "make_visual_extractor"]

#: The named visual feature settings; the first is the default.
VISUAL_SETTINGS: tuple[str, ...] = ("landmarks", "expression", "expression+landmarks")


def make_visual_extractor(
    setting: str = "landmarks",
    face_model: str | Path | None = None,
    keep_landmarks: bool = False,
    face_crop: Any = None,
) -> Any:
    """The extractor of a visual setting: the plain :class:`~dmd_pipeline.extractors.visual.VisualExtractor`
    for ``landmarks``, else a :class:`VisualFeatureSet`. ``face_model`` is the face_landmarker.task;
    ``face_crop`` a :class:`~dmd_pipeline.face.crop.CropTemplate` whose crops the face channel reads
    (``extras["face_crops"]``; an expression setting keeps its model's crops, which must be the same)."""
    from dmd_pipeline.extractors.visual import VisualExtractor

    if setting not in VISUAL_SETTINGS:
        raise ValueError(f"unknown visual setting {setting!r}; choose one of {', '.join(VISUAL_SETTINGS)}")
    if setting == "landmarks":
        return VisualExtractor(model_path=face_model, landmarks=keep_landmarks, face_crop=face_crop)
    ex = VisualFeatureSet(setting, face_model=face_model, keep_landmarks=keep_landmarks)
    if face_crop is not None and face_crop != ex.model.template:
        ex.close()
        from dmd_pipeline.errors import ConfigError

        raise ConfigError(
            f"the face channel's crop framing {face_crop.to_dict()} differs from the expression features' "
            f"{ex.model.template.to_dict()}: one extraction cannot keep both (analyse in separate runs)"
        )
    return ex


class VisualFeatureSet:
    """The ``expression`` / ``expression+landmarks`` columns (module docstring) over the frames of a clip."""

    def __init__(
        self,
        setting: str = "expression",
        face_model: str | Path | None = None,
        keep_landmarks: bool = False,
        expression_model: Any = None,
        batch: int = 128,
    ) -> None:
        from dmd_pipeline.extractors.visual import VisualExtractor
        from dmd_pipeline.face.model import FaceExpressionModel

        if setting not in VISUAL_SETTINGS[1:]:
            raise ValueError(f"VisualFeatureSet is for {VISUAL_SETTINGS[1:]}, got {setting!r}")
        self.setting = setting
        self.model = expression_model if expression_model is not None else FaceExpressionModel.load()
        self.batch = int(batch)
        self.landmarker = VisualExtractor(
            model_path=face_model, landmarks=keep_landmarks, face_crop=self.model.template
        )
        expr = [f"expr_p_{c}" for c in self.model.classes] + [
            f"expr_emb_{i}" for i in range(int(self.model.net.config.hidden))
        ]
        base = list(self.landmarker.feature_names)
        self._keep = [0] if setting == "expression" else list(range(len(base)))
        self.feature_names: list[str] = [base[i] for i in self._keep] + expr
        self.dim: int = len(self.feature_names)

    def settings(self) -> dict:
        """Every setting that changes the output (the landmarker's and the expression model's identity)."""
        return {
            "visual": self.setting,
            "landmarker": self.landmarker.settings(),
            "expression_model": {
                "name": self.model.name,
                "weights_sha256": self.model.meta.get("weights_sha256"),
            },
        }

    def config_hash(self) -> str:
        """Short stable hash of the settings and the landmarker file's sha256."""
        from dmd_pipeline.utils import config_hash

        return config_hash({**self.settings(), "landmarker_hash": self.landmarker.config_hash()})

    def close(self) -> None:
        """Free the mediapipe graph."""
        self.landmarker.close()

    def __enter__(self) -> VisualFeatureSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _columns(self, rows: np.ndarray, crops: np.ndarray) -> np.ndarray:
        """The setting's columns for landmarker rows (N, D) and their crops (N, s, s): zeros where
        ``face_present`` is 0."""
        rows = np.asarray(rows, dtype=np.float32).reshape(len(crops), -1)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        out[:, : len(self._keep)] = rows[:, self._keep]
        ok = rows[:, 0] > 0.5
        if ok.any():
            emb, probs = self.model.features(crops[ok], batch=self.batch)
            k = len(self._keep)
            out[ok, k : k + probs.shape[1]] = probs
            out[ok, k + probs.shape[1] :] = emb
        return out

    def extract(self, frames: Iterable[tuple[float, np.ndarray]]) -> FrameFeatures:
        """The setting's columns for ``(timestamp_s, HxWx3 uint8 RGB)`` frames (the landmarker's extras
        kept, with the detections' rows in the same columns)."""
        from dmd_pipeline.face.speaking import compose

        ff = self.landmarker.extract(frames)
        extras = dict(ff.extras)
        if "det_values" not in extras:  # one face: its rows
            values = self._columns(ff.values, extras["face_crops"])
            return FrameFeatures(values, ff.times, list(self.feature_names), extras)
        # several: every detection once, and the rows composed from them as the landmarker did
        extras["det_values"] = self._columns(extras["det_values"], extras["det_crops"])
        zeros = np.zeros((ff.n_frames, self.dim), dtype=np.float32)
        return compose(FrameFeatures(zeros, ff.times, list(self.feature_names), extras), [], None)[0]
