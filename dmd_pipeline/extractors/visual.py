"""Per-frame facial features with mediapipe's Tasks ``FaceLandmarker`` (478 landmarks, 52 blendshapes, pose).

Columns (``VisualExtractor().feature_names``; 66 dims, + 1434 with ``landmarks=True``):

=======================  =================================================================================
name                     meaning
=======================  =================================================================================
face_present             1 when the tracked face was found in the frame, else 0 (then every column is 0)
bs_<name> (52)           mediapipe blendshape scores in [0, 1], ARKit names (``bs__neutral``,
                         ``bs_browDownLeft`` ... ``bs_tongueOut``); Left/Right = the subject's side
head_yaw_deg             rotation about the face's vertical axis, from the facial transformation matrix
head_pitch_deg           rotation about the face's left-right axis (nodding)
head_roll_deg            in-plane rotation; positive when the face turns counter-clockwise in the image
mouth_open               inner-lip gap (landmarks 13-14) / inter-ocular distance
mouth_width              mouth-corner distance (61-291) / inter-ocular distance
eye_open_left            subject's left eye: lid gap (386-374) / eye width (362-263)
eye_open_right           subject's right eye: lid gap (159-145) / eye width (33-133)
brow_raise_left          brow (334) to upper lid (386) distance / inter-ocular distance
brow_raise_right         brow (105) to upper lid (159) distance / inter-ocular distance
face_width, face_height  landmark bounding box size, as a fraction of the frame width / height
face_cx, face_cy         box centre, as a fraction of the frame width / height
lm_<i>_x/y/z (optional)  raw normalised landmarks (x, y in [0, 1] of the frame; z relative depth)
=======================  =================================================================================

The inter-ocular distance is measured between the outer eye corners (33-263) in pixels. Head angles use
the rotation part of the 4x4 matrix decomposed as R = Rz(roll) Ry(yaw) Rx(pitch) (degrees); mirroring
the image flips the sign of yaw and roll.

Frames without a face are kept (zeros, ``face_present`` 0), never dropped. Every detected face (up to
``num_faces``) is tracked across frames (:class:`~dmd_pipeline.face.tracking.FaceTracker`: IoU, else centre
distance within ``max_jump`` face widths; a track ends after ``reacquire_frames`` frames unseen). With one
track in the clip the rows are that face's. With several, every detection is kept (``det_*`` below) and the
rows are the largest face's (:func:`~dmd_pipeline.face.speaking.compose` without speech); the pipeline then
composes them again from the speech activity, so that each segment reads its speaking face
(:mod:`dmd_pipeline.face.speaking`).

``extras``: ``boxes`` (T, 4) float32 normalised x0, y0, x1, y1 of the rows' face (zeros when absent),
``track`` (T,) int32 the rows' track id (-1: no face), ``n_faces`` (T,) faces detected, ``frame_size``
(width, height) of the last frame, ``ms_per_frame`` mean landmarker time; with ``face_crop`` (a
:class:`~dmd_pipeline.face.crop.CropTemplate`) also ``face_crops`` (T, size, size) uint8: the rows' face's
eye-aligned grayscale crop (:func:`~dmd_pipeline.face.crop.aligned_crop`) for the face-expression model,
zeros when absent; the crop is taken here because the frame is in memory only now. With several tracks
also the M detections: ``det_frame`` (M,) frame index, ``det_track`` (M,) track id, ``det_values`` (M, D)
feature rows, ``det_boxes`` (M, 4), ``det_mouth`` (M,) the mouth opening (what the speaking-face rule
reads, kept apart from the rows so that any feature setting can be composed) and, with ``face_crop``, ``det_crops`` (M, size, size).

One landmarker (VIDEO running mode) is created per extractor and reused across clips; each clip's frame
timestamps are shifted by a running offset so that mediapipe always sees increasing timestamps. An
instance is not thread-safe; use one per thread. ``close()`` (or ``with``) frees it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.model_files import FACE_LANDMARKER_SHA256, face_landmarker_path
from dmd_pipeline.utils import close_with, quiet_native_stderr, sha256_file
from dmd_pipeline.utils import config_hash as _hash

__all__ = ["BLENDSHAPE_NAMES", "VisualExtractor", "head_pose_from_matrix"]

BLENDSHAPE_NAMES: list[str] = [
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft",
    "noseSneerRight",
]  # fmt: skip
_POSE_NAMES = ["head_yaw_deg", "head_pitch_deg", "head_roll_deg"]
_GEO_NAMES = [
    "mouth_open", "mouth_width", "eye_open_left", "eye_open_right", "brow_raise_left", "brow_raise_right",
    "face_width", "face_height", "face_cx", "face_cy",
]  # fmt: skip
_N_LANDMARKS = 478
_BS_INDEX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}

# Landmarkers still open at interpreter exit are closed before concurrent.futures shuts its executors down
# (mediapipe dispatches close() through one; left to __del__, it fails noisily during shutdown).
_LIVE: weakref.WeakSet = weakref.WeakSet()


def _close_live() -> None:
    for ex in list(_LIVE):
        with contextlib.suppress(Exception):
            ex.close()


_EXIT_HOOK: list[bool] = []


def _register_exit_hook() -> None:
    """Register ``_close_live`` after mediapipe (and so concurrent.futures) is imported: threading's exit
    hooks run last-registered first, so ours then runs before the executors shut down."""
    if not _EXIT_HOOK:
        getattr(threading, "_register_atexit", atexit.register)(_close_live)
        _EXIT_HOOK.append(True)


def head_pose_from_matrix(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from a 4x4 facial transformation matrix (R = Rz Ry Rx)."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(r, axis=0)
    r = r / np.where(norms > 1e-9, norms, 1.0)  # drop any uniform scale
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)


def _geometry(pts: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Geometric ratios and the normalised box from landmarks ``pts`` (N, 3) in normalised coordinates."""
    xy = pts[:, :2] * np.array([width, height], dtype=np.float64)

    def d(a: int, b: int) -> float:
        return float(np.linalg.norm(xy[a] - xy[b]))

    iod = max(d(33, 263), 1e-6)
    x0, y0 = np.clip(pts[:, 0].min(), 0, 1), np.clip(pts[:, 1].min(), 0, 1)
    x1, y1 = np.clip(pts[:, 0].max(), 0, 1), np.clip(pts[:, 1].max(), 0, 1)
    geo = np.array(
        [
            d(13, 14) / iod,
            d(61, 291) / iod,
            d(386, 374) / max(d(362, 263), 1e-6),
            d(159, 145) / max(d(33, 133), 1e-6),
            d(334, 386) / iod,
            d(105, 159) / iod,
            x1 - x0,
            y1 - y0,
            (x0 + x1) / 2,
            (y0 + y1) / 2,
        ]
    )
    return geo, np.array([x0, y0, x1, y1])


class VisualExtractor:
    """Face features per sampled frame (see the module docstring for every column)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        num_faces: int = 3,
        landmarks: bool = False,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        max_jump: float = 1.5,
        reacquire_frames: int = 5,
        face_crop: Any = None,
    ) -> None:
        self.model_path = face_landmarker_path(model_path)
        self._user_model = model_path is not None
        self.num_faces = int(num_faces)
        self.landmarks = bool(landmarks)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence_confidence = float(min_presence_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self.max_jump = float(max_jump)
        self.reacquire_frames = int(reacquire_frames)
        self.face_crop = face_crop  # CropTemplate | None
        self.feature_names: list[str] = (
            ["face_present"] + [f"bs_{n}" for n in BLENDSHAPE_NAMES] + _POSE_NAMES + _GEO_NAMES
        )
        if self.landmarks:
            self.feature_names += [f"lm_{i}_{c}" for i in range(_N_LANDMARKS) for c in "xyz"]
        self.dim: int = len(self.feature_names)
        self._landmarker = None
        self._closer: weakref.finalize | None = None
        self._warm = False
        self._next_ts_ms = 0
        self._model_sha: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def _get_landmarker(self):
        if self._landmarker is None:
            os.environ.setdefault("GLOG_minloglevel", "2")  # quieter mediapipe C++ logging
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions

            opts = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.model_path)),
                running_mode=vision.RunningMode.VIDEO,
                num_faces=self.num_faces,
                min_face_detection_confidence=self.min_detection_confidence,
                min_face_presence_confidence=self.min_presence_confidence,
                min_tracking_confidence=self.min_tracking_confidence,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
            with quiet_native_stderr():
                self._landmarker = vision.FaceLandmarker.create_from_options(opts)
            self._closer = close_with(self, self._landmarker)
            self._warm = False
            _LIVE.add(self)
            _register_exit_hook()
        return self._landmarker

    def close(self) -> None:
        """Free the mediapipe graph (a later ``extract`` creates a new one)."""
        lm, self._landmarker = self._landmarker, None
        closer, self._closer = self._closer, None
        if closer is not None:
            closer()  # lm.close(), once
        elif lm is not None:
            lm.close()
        _LIVE.discard(self)

    def __enter__(self) -> VisualExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity --------------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Every setting that changes the output."""
        return {
            "extractor": "visual-v2",  # v2: every face tracked (face.tracking)
            "num_faces": self.num_faces,
            "landmarks": self.landmarks,
            "min_detection_confidence": self.min_detection_confidence,
            "min_presence_confidence": self.min_presence_confidence,
            "min_tracking_confidence": self.min_tracking_confidence,
            "max_jump": self.max_jump,
            "reacquire_frames": self.reacquire_frames,
            **({"face_crop": self.face_crop.to_dict()} if self.face_crop is not None else {}),
        }

    def config_hash(self) -> str:
        """Short stable hash of the settings and the model file's sha256."""
        if self._model_sha is None:
            if self._user_model:
                self._model_sha = sha256_file(self.model_path)
            else:
                self._model_sha = FACE_LANDMARKER_SHA256["face_landmarker.task"]
        return _hash({**self.settings(), "model_sha256": self._model_sha})

    # -- extraction ------------------------------------------------------------------------------------
    def _crop(self, img: np.ndarray, pts: np.ndarray | None) -> np.ndarray:
        """The tracked face's aligned crop (zeros when there is none or the landmarks are degenerate)."""
        from dmd_pipeline.face.crop import aligned_crop

        if pts is None:
            return _no_face_crop(int(self.face_crop.size))
        try:
            return aligned_crop(img, pts, self.face_crop)
        except ValueError:
            return _no_face_crop(int(self.face_crop.size))

    def _row(self, result: Any, i: int, geo: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """The feature row of face ``i`` of a landmarker result."""
        row = np.zeros(self.dim, dtype=np.float64)
        row[0] = 1.0
        if result.face_blendshapes and i < len(result.face_blendshapes):
            for cat in result.face_blendshapes[i]:
                j = _BS_INDEX.get(cat.category_name)
                if j is not None:
                    row[1 + j] = cat.score
        k = 1 + len(BLENDSHAPE_NAMES)
        mats = result.facial_transformation_matrixes or []
        if i < len(mats):
            row[k : k + 3] = head_pose_from_matrix(np.asarray(mats[i]))
        k += 3
        row[k : k + len(_GEO_NAMES)] = geo
        k += len(_GEO_NAMES)
        if self.landmarks:
            row[k:] = pts[:_N_LANDMARKS].reshape(-1)
        return row

    def extract(self, frames: Iterable[tuple[float, np.ndarray]]) -> FrameFeatures:
        """Features for ``(timestamp_s, HxWx3 uint8 RGB)`` frames, e.g. from ``media.iter_frames``."""
        import mediapipe as mp

        from dmd_pipeline.face.tracking import FaceTracker

        landmarker = self._get_landmarker()
        tracker = FaceTracker(max_jump=self.max_jump, max_missing=self.reacquire_frames)
        times: list[float] = []
        n_faces: list[int] = []
        det_frame: list[int] = []
        det_track: list[int] = []
        det_rows: list[np.ndarray] = []
        det_boxes: list[np.ndarray] = []
        det_crops: list[np.ndarray] = []
        spent = 0.0
        t_first: float | None = None
        base = self._next_ts_ms
        last_ts = base - 1
        size = (0, 0)
        for t, frame in frames:
            img = np.ascontiguousarray(frame, dtype=np.uint8)
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"frames must be HxWx3 RGB uint8 arrays, got shape {img.shape}")
            h, w = img.shape[:2]
            size = (w, h)
            if t_first is None:
                t_first = float(t)
            ts = max(base + int(round((float(t) - t_first) * 1000.0)), last_ts + 1)
            last_ts = ts
            t0 = time.perf_counter()
            mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=img)
            if self._warm:
                result = landmarker.detect_for_video(mp_image, ts)
            else:  # the graph's first run logs TFLite/XNNPACK set-up notes from C++: not for the user
                with quiet_native_stderr():
                    result = landmarker.detect_for_video(mp_image, ts)
                self._warm = True
            spent += time.perf_counter() - t0

            faces = result.face_landmarks or []
            n_faces.append(len(faces))
            if faces:
                pts_all = [np.array([[p.x, p.y, p.z] for p in f], dtype=np.float64) for f in faces]
                cand = [_geometry(p, w, h) for p in pts_all]
                ids = tracker.update(np.array([b for _, b in cand]))
                for i, (geo, box) in enumerate(cand):
                    det_frame.append(len(times))
                    det_track.append(int(ids[i]))
                    det_rows.append(self._row(result, i, geo, pts_all[i]))
                    det_boxes.append(box)
                    if self.face_crop is not None:
                        det_crops.append(self._crop(img, pts_all[i]))
            else:
                tracker.update(np.zeros((0, 4)))
            times.append(float(t))
        # The next clip starts well after this one on mediapipe's clock.
        self._next_ts_ms = last_ts + 1000
        return self._frames(times, n_faces, det_frame, det_track, det_rows, det_boxes, det_crops, size, spent)

    def _frames(
        self,
        times: list[float],
        n_faces: list[int],
        det_frame: list[int],
        det_track: list[int],
        det_rows: list[np.ndarray],
        det_boxes: list[np.ndarray],
        det_crops: list[np.ndarray],
        size: tuple[int, int],
        spent: float,
    ) -> FrameFeatures:
        """The clip's frames from its detections: with one track its rows; with several, the detections
        (``det_*`` extras) and, as rows, the largest face (:func:`~dmd_pipeline.face.speaking.compose`
        with no speech; the pipeline composes again with the speech activity)."""
        from dmd_pipeline.face.speaking import compose, mouth_level
        from dmd_pipeline.face.tracking import join_fragments

        n = len(times)
        m = len(det_frame)
        frame = np.array(det_frame, dtype=np.int32)
        boxes = np.array(det_boxes, dtype=np.float32).reshape(m, 4)
        track = join_fragments(frame, np.array(det_track, dtype=np.int32), boxes).astype(np.int32)
        rows = np.nan_to_num(
            np.array(det_rows, dtype=np.float32).reshape(m, self.dim), nan=0.0, posinf=0.0, neginf=0.0
        )
        extras: dict[str, Any] = {
            "n_faces": np.array(n_faces, dtype=np.int16),
            "frame_size": size,
            "ms_per_frame": (spent / n * 1000.0) if n else 0.0,
        }
        crop_side = int(self.face_crop.size) if self.face_crop is not None else 0
        crops = np.array(det_crops, dtype=np.uint8).reshape(m, crop_side, crop_side) if crop_side else None
        values = np.zeros((n, self.dim), dtype=np.float32)
        frame_boxes = np.zeros((n, 4), dtype=np.float32)
        if len(np.unique(track)) <= 1:  # one face (or none): its rows are the frames
            values[frame] = rows
            frame_boxes[frame] = boxes
            extras["boxes"] = frame_boxes
            extras["track"] = np.full(n, -1, dtype=np.int32)
            extras["track"][frame] = track
            if crops is not None:
                extras["face_crops"] = np.zeros((n, crop_side, crop_side), dtype=np.uint8)
                extras["face_crops"][frame] = crops
            return FrameFeatures(values, np.array(times, dtype=np.float64), list(self.feature_names), extras)
        extras.update(det_frame=frame, det_track=track, det_values=rows, det_boxes=boxes, boxes=frame_boxes)
        extras["det_mouth"] = mouth_level(rows, self.feature_names).astype(np.float32)
        if crops is not None:
            extras["det_crops"] = crops
            extras["face_crops"] = np.zeros((n, crop_side, crop_side), dtype=np.uint8)
        ff = FrameFeatures(values, np.array(times, dtype=np.float64), list(self.feature_names), extras)
        return compose(ff, [], None)[0]


def _no_face_crop(size: int) -> np.ndarray:
    return np.zeros((size, size), dtype=np.uint8)
