"""The face crop the expression network reads: eye-aligned, grayscale, framed like FER2013's crops.

FER2013's 48x48 images are face-detector boxes, not aligned crops. The network is trained on them whole,
so at inference the crop must frame a face the way they do. :class:`CropTemplate` records where the two
eye centres sit in such a crop (as fractions of its side); it is measured on FER2013 training images by
``recipes/train_face_expression.py calibrate`` (FaceLandmarker on the upscaled images, mean eye centres)
and travels in the model's config, so a model always gets the framing it was trained with.

:func:`aligned_crop` maps a face's eye centres (from the 478 FaceLandmarker landmarks) onto the template
with a similarity transform (rotation that levels the eyes, uniform scale, shift) and samples the
grayscale image there; pixels outside the frame repeat the border. :func:`eye_centres` takes the mean of
each eye's two corners (landmarks 33/133 and 362/263), which do not move with the gaze as the iris does.

:func:`find_face_landmarks` runs FaceLandmarker on one still image (IMAGE mode), upscaling small images
first (the landmarker misses faces in 48-pixel images); :func:`crop_image` is the whole procedure for an
image file or array: the largest face found, aligned; when none is found, the whole image (it may
already be a face crop, as FER's are).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FER_TEMPLATE",
    "CropTemplate",
    "FaceCrop",
    "FaceFinder",
    "aligned_crop",
    "crop_image",
    "eye_centres",
    "to_gray",
]

# Landmark indices of each eye's corners (mediapipe face mesh): subject's right eye (image left) 33/133,
# subject's left eye (image right) 362/263.
_RIGHT_EYE = (33, 133)
_LEFT_EYE = (362, 263)


@dataclass(frozen=True)
class CropTemplate:
    """Where the eye centres sit in the crop, as fractions of its side; ``size`` is the crop's side in px.

    ``eye_y`` is the height of both eyes; ``eye_x`` the horizontal positions of the eye on the image's
    left and on its right."""

    eye_x: tuple[float, float]
    eye_y: float
    size: int = 48

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for a model's config.json)."""
        d = asdict(self)
        d["eye_x"] = list(self.eye_x)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CropTemplate:
        """Build from a config dict, checking that the eyes lie inside the crop in the right order."""
        ex = tuple(float(v) for v in d["eye_x"])
        ey, size = float(d["eye_y"]), int(d.get("size", 48))
        if len(ex) != 2 or not (0.0 < ex[0] < ex[1] < 1.0) or not (0.0 < ey < 1.0) or not 8 <= size <= 512:
            raise ValueError(f"invalid crop template {d!r}: need 0 < eye_x[0] < eye_x[1] < 1, 0 < eye_y < 1")
        return cls(eye_x=(ex[0], ex[1]), eye_y=ey, size=size)


# FER2013's framing: the median eye centres over 1,723 faces found in 2,000 training images (``recipes/
# train_face_expression.py calibrate``; 86 % of the upscaled images gave a face).
FER_TEMPLATE = CropTemplate(eye_x=(0.32, 0.68), eye_y=0.40, size=48)


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) luminance of an (H, W) or (H, W, 3) RGB image (ITU-R 601 weights, as PIL's "L")."""
    a = np.asarray(image)
    if a.ndim == 2:
        return a.astype(np.uint8, copy=False)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        g = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
        return np.clip(np.rint(g), 0, 255).astype(np.uint8)
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {a.shape}")


def eye_centres(landmarks: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (x, y) of the eye on the image's left and the one on its right, from normalised
    FaceLandmarker landmarks (N >= 468, 2 or 3)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 468 or pts.shape[1] < 2:
        raise ValueError(f"expected FaceLandmarker landmarks (>= 468, 2+), got shape {pts.shape}")
    xy = pts[:, :2] * np.array([width, height], dtype=np.float64)
    a = xy[list(_RIGHT_EYE)].mean(axis=0)
    b = xy[list(_LEFT_EYE)].mean(axis=0)
    return (a, b) if a[0] <= b[0] else (b, a)


def _similarity(src_l: np.ndarray, src_r: np.ndarray, template: CropTemplate) -> np.ndarray:
    """2x3 matrix mapping image pixels to crop pixels: the eyes onto the template's eye positions."""
    s = template.size
    dst_l = np.array([template.eye_x[0] * s, template.eye_y * s])
    dst_r = np.array([template.eye_x[1] * s, template.eye_y * s])
    v_src, v_dst = src_r - src_l, dst_r - dst_l
    n_src = float(np.hypot(*v_src))
    if n_src < 1e-6:
        raise ValueError("the two eye centres coincide: no alignment possible")
    scale = float(np.hypot(*v_dst)) / n_src
    ang = np.arctan2(v_dst[1], v_dst[0]) - np.arctan2(v_src[1], v_src[0])
    c, si = scale * np.cos(ang), scale * np.sin(ang)
    rot = np.array([[c, -si], [si, c]])
    t = dst_l - rot @ src_l
    return np.hstack([rot, t[:, None]])


def aligned_crop(
    image: np.ndarray, landmarks: np.ndarray, template: CropTemplate = FER_TEMPLATE
) -> np.ndarray:
    """uint8 (size, size) grayscale crop of the face whose normalised landmarks are given, eyes on the
    template (see the module docstring). ``image`` is (H, W) gray or (H, W, 3) RGB uint8.

    Only the region the crop covers is converted and resampled: a large face is first shrunk with area
    averaging (no aliasing) to at most twice the crop's scale, then warped bilinearly."""
    import cv2

    a = np.asarray(image)
    h, w = a.shape[:2]
    left, right = eye_centres(landmarks, w, h)
    m = _similarity(left, right, template)  # continuous coordinates (pixel i spans [i, i + 1))
    s = template.size
    inv = cv2.invertAffineTransform(m)
    corners = inv @ np.array([[0, s, 0, s], [0, 0, s, s], [1, 1, 1, 1]], dtype=np.float64)
    x0 = int(np.clip(np.floor(corners[0].min()) - 2, 0, w - 1))
    y0 = int(np.clip(np.floor(corners[1].min()) - 2, 0, h - 1))
    x1 = int(np.clip(np.ceil(corners[0].max()) + 2, x0 + 1, w))
    y1 = int(np.clip(np.ceil(corners[1].max()) + 2, y0 + 1, h))
    roi = to_gray(a[y0:y1, x0:x1])
    lin = m[:, :2].copy()
    t = m[:, 2] + lin @ np.array([x0, y0], dtype=np.float64)  # roi coordinates
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    if scale < 0.5:
        f = scale * 2.0
        nw, nh = max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))
        fx, fy = nw / roi.shape[1], nh / roi.shape[0]
        roi = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
        lin = lin / np.array([fx, fy])  # continuous coordinates scale exactly by (fx, fy)
    # pixel indices: continuous coordinate = index + 0.5, in the source and in the crop
    t_pix = t + lin @ np.array([0.5, 0.5]) - 0.5
    mat = np.hstack([lin, t_pix[:, None]])
    return cv2.warpAffine(roi, mat, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class FaceCrop:
    """One image's crop: ``crop`` (size, size) uint8; ``found`` False when no face was found and the whole
    image was used; ``box`` the face's landmark box [x, y, w, h] as fractions of the image (None if not
    found); ``n_faces`` how many faces were detected."""

    crop: np.ndarray
    found: bool
    box: list[float] | None
    n_faces: int


class FaceFinder:
    """FaceLandmarker in IMAGE mode for still images (one per thread; ``close()`` or ``with`` frees it).

    Images whose shorter side is under ``min_side`` pixels are upscaled (bicubic) before detection: the
    landmarker's detector misses faces that fill a 48-pixel image. Landmarks are normalised, so the
    upscaling does not change them."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        num_faces: int = 3,
        min_side: int = 192,
        min_detection_confidence: float = 0.3,
    ) -> None:
        from dmd_pipeline.model_files import face_landmarker_path

        self.model_path = face_landmarker_path(model_path)
        self.num_faces = int(num_faces)
        self.min_side = int(min_side)
        self.min_detection_confidence = float(min_detection_confidence)
        self._lm = None
        self._closer = None

    def _landmarker(self):
        if self._lm is None:
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions

            from dmd_pipeline.utils import close_with, quiet_native_stderr

            opts = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.model_path)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=self.num_faces,
                min_face_detection_confidence=self.min_detection_confidence,
            )
            with quiet_native_stderr():
                self._lm = vision.FaceLandmarker.create_from_options(opts)
            self._closer = close_with(self, self._lm)
        return self._lm

    def close(self) -> None:
        """Free the mediapipe graph."""
        lm, self._lm = self._lm, None
        closer, self._closer = self._closer, None
        if closer is not None:
            closer()  # lm.close(), once
        elif lm is not None:
            with contextlib.suppress(Exception):
                lm.close()

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def landmarks(self, image: np.ndarray) -> list[np.ndarray]:
        """Normalised (478, 3) landmarks of every face found in an (H, W, 3) RGB or (H, W) gray uint8 image."""
        import cv2
        import mediapipe as mp

        a = np.asarray(image, dtype=np.uint8)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        h, w = a.shape[:2]
        if min(h, w) < self.min_side:
            f = self.min_side / min(h, w)
            a = cv2.resize(a, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
        res = self._landmarker().detect(
            mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(a))
        )
        return [
            np.array([[p.x, p.y, p.z] for p in face], dtype=np.float64) for face in res.face_landmarks or []
        ]

    def crop(self, image: np.ndarray, template: CropTemplate = FER_TEMPLATE) -> FaceCrop:
        """The largest face's aligned crop, or the whole image resized when no face is found."""
        faces = self.landmarks(image)
        if not faces:
            return FaceCrop(whole_image_crop(image, template.size), False, None, 0)
        boxes = [_box(f) for f in faces]
        i = int(np.argmax([b[2] * b[3] for b in boxes]))
        return FaceCrop(aligned_crop(image, faces[i], template), True, boxes[i], len(faces))


def _box(landmarks: np.ndarray) -> list[float]:
    x0, y0 = np.clip(landmarks[:, :2].min(axis=0), 0, 1)
    x1, y1 = np.clip(landmarks[:, :2].max(axis=0), 0, 1)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def whole_image_crop(image: np.ndarray, size: int = 48) -> np.ndarray:
    """The whole image as a (size, size) grayscale crop (for images that already are face crops)."""
    import cv2

    gray = to_gray(image)
    interp = cv2.INTER_AREA if min(gray.shape) > size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


#: A face whose landmark box covers at least this fraction of an image fills it: the image is a face crop
#: already and is used whole (``dmd evaluate`` on images, ``dmd analyze photo.jpg``).
FILL_FRACTION = 0.4


def image_face_crop(
    image: np.ndarray,
    finder: FaceFinder,
    template: CropTemplate = FER_TEMPLATE,
    fill_fraction: float = FILL_FRACTION,
    whole_without_face: bool = True,
) -> tuple[np.ndarray | None, FaceCrop, bool]:
    """(the crop a face model reads, the :class:`FaceCrop` found, whether the image was used whole) of a
    still image: the largest face's aligned crop; the whole image when the face found fills it (at least
    ``fill_fraction`` of its area) or, with ``whole_without_face``, when no face is found (an image that
    already is a face crop, e.g. FER's 48x48 faces); None for the crop when no face is found otherwise."""
    fc = finder.crop(image, template)
    if fc.found and fc.box is not None and fc.box[2] * fc.box[3] < fill_fraction:
        return fc.crop, fc, False
    if fc.found or whole_without_face:
        return whole_image_crop(image, template.size), fc, True
    return None, fc, False


def crop_image(image: np.ndarray, finder: FaceFinder, template: CropTemplate = FER_TEMPLATE) -> FaceCrop:
    """:meth:`FaceFinder.crop` as a function (the procedure used on image files by ``dmd evaluate``)."""
    return finder.crop(image, template)
