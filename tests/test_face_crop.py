"""The face crop procedure: eye alignment on synthetic landmarks, and on a real RAVDESS video frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.face.crop import (
    FER_TEMPLATE,
    CropTemplate,
    FaceFinder,
    aligned_crop,
    eye_centres,
    to_gray,
    whole_image_crop,
)


def _fake_landmarks(left: tuple[float, float], right: tuple[float, float], w: int, h: int) -> np.ndarray:
    """478 normalised landmarks whose eye corners average to the given pixel eye centres."""
    pts = np.full((478, 3), 0.5)
    for (a, b), (x, y) in (((33, 133), left), ((362, 263), right)):
        pts[a, :2] = ((x - 3) / w, y / h)
        pts[b, :2] = ((x + 3) / w, y / h)
    return pts


def _dot_image(centres: list[tuple[float, float]], w: int = 320, h: int = 240) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for x, y in centres:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 16] = 255
    return img


def _blob_centre(crop: np.ndarray, half: str) -> np.ndarray:
    """Intensity-weighted centre (x, y) of the bright blob in the crop's left or right half."""
    c = crop.astype(np.float64)
    mid = c.shape[1] // 2
    part = c[:, :mid] if half == "left" else c[:, mid:]
    yy, xx = np.mgrid[0 : part.shape[0], 0 : part.shape[1]]
    s = part.sum()
    assert s > 0, "the eye dot fell outside the crop"
    x = (xx * part).sum() / s + (0 if half == "left" else mid)
    return np.array([x, (yy * part).sum() / s])


@pytest.mark.parametrize("tilt_deg", [0.0, 20.0, -35.0])
def test_eyes_land_on_the_template(tilt_deg: float) -> None:
    cx, cy, r = 160.0, 120.0, 40.0
    a = np.radians(tilt_deg)
    left = (cx - r * np.cos(a), cy - r * np.sin(a))
    right = (cx + r * np.cos(a), cy + r * np.sin(a))
    img = _dot_image([left, right])
    crop = aligned_crop(img, _fake_landmarks(left, right, 320, 240), FER_TEMPLATE)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    want_l = np.array([FER_TEMPLATE.eye_x[0], FER_TEMPLATE.eye_y]) * 48
    want_r = np.array([FER_TEMPLATE.eye_x[1], FER_TEMPLATE.eye_y]) * 48
    # pixel centres sit at +0.5 in the template's continuous coordinates
    assert np.allclose(_blob_centre(crop, "left") + 0.5, want_l, atol=1.0)
    assert np.allclose(_blob_centre(crop, "right") + 0.5, want_r, atol=1.0)


def test_eye_order_does_not_depend_on_landmark_side() -> None:
    pts = _fake_landmarks((200, 100), (100, 100), 320, 240)  # a mirrored mesh: "right" eye on the left
    a, b = eye_centres(pts, 320, 240)
    assert a[0] < b[0]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        eye_centres(np.zeros((10, 2)), 10, 10)
    with pytest.raises(ValueError, match="coincide"):
        aligned_crop(np.zeros((20, 20), np.uint8), np.full((478, 3), 0.5))
    with pytest.raises(ValueError, match="image"):
        to_gray(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="template"):
        CropTemplate.from_dict({"eye_x": [0.7, 0.3], "eye_y": 0.4})
    assert CropTemplate.from_dict(FER_TEMPLATE.to_dict()) == FER_TEMPLATE


def test_whole_image_crop_keeps_a_face_crop_whole() -> None:
    img = (np.arange(96 * 96) % 251).reshape(96, 96).astype(np.uint8)
    out = whole_image_crop(img, 48)
    assert out.shape == (48, 48)
    assert abs(float(out.mean()) - float(img.mean())) < 2.0


@pytest.fixture(scope="module")
def ravdess_frame(shared: Path) -> np.ndarray:
    from dmd_pipeline.media import iter_frames

    video = shared / "data" / "ravdess" / "video" / "01-01-01-01-01-01-01.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    for t, frame in iter_frames(video, fps=2.0):
        if t >= 1.0:
            return frame
    pytest.fail(f"{video}: no frame after 1 s")


def test_crop_of_a_real_video_frame_is_eye_aligned(ravdess_frame: np.ndarray) -> None:
    """The landmarker finds the actor's face, and finds it again in our 48x48 crop (upscaled) with the eyes
    where the template puts them: the crop frames a face as FER's images do."""
    with FaceFinder(num_faces=1) as finder:
        fc = finder.crop(ravdess_frame)
        assert fc.found and fc.n_faces == 1
        x, y, w, h = fc.box
        assert 0 <= x < x + w <= 1 and 0 <= y < y + h <= 1 and w > 0.05
        assert fc.crop.shape == (48, 48) and fc.crop.dtype == np.uint8
        again = finder.landmarks(fc.crop)
    assert again, "no face found again in the aligned crop"
    left, right = eye_centres(again[0], 1, 1)
    assert abs(left[0] - FER_TEMPLATE.eye_x[0]) < 0.05 and abs(right[0] - FER_TEMPLATE.eye_x[1]) < 0.05
    assert abs((left[1] + right[1]) / 2 - FER_TEMPLATE.eye_y) < 0.05
