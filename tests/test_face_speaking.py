"""Face tracking and the speaking face: constructed boxes and signals, and real faces (../shared)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.face.speaking import choose_face, compose, mouth_activity, speech_at_frames
from dmd_pipeline.face.tracking import FaceTracker, iou, join_fragments

NAMES = ["face_present", "mouth_open", "face_cx"]


# -- tracking ------------------------------------------------------------------------------------------------
def test_iou() -> None:
    a = np.array([[0, 0, 2, 2]])
    assert iou(a, np.array([[1, 1, 3, 3], [2, 2, 3, 3], [0, 0, 2, 2]]))[0] == pytest.approx([1 / 7, 0, 1])


def test_tracker_follows_moving_boxes_through_gaps_and_swaps() -> None:
    tr = FaceTracker(max_missing=2)
    left = np.array([0.1, 0.3, 0.3, 0.6])
    right = np.array([0.6, 0.3, 0.8, 0.6])
    ids = [tr.update(np.array([left, right]))]
    for k in range(1, 6):  # both drift towards each other; detection order swaps every frame
        a, b = left + [0.02 * k, 0, 0.02 * k, 0], right - [0.02 * k, 0, 0.02 * k, 0]
        boxes = np.array([a, b]) if k % 2 else np.array([b, a])
        got = tr.update(boxes)
        ids.append(got if k % 2 else got[::-1])
    assert all(list(i) == [0, 1] for i in ids)
    # a jump to where no face was (no overlap, several face widths away) is a new face
    assert tr.update(np.array([[0.0, 0.0, 0.05, 0.05]])).tolist() == [2]
    # the right face was unseen for one frame: still the same track; a face unseen for longer is gone
    b = right - [0.1, 0, 0.1, 0]
    assert tr.update(np.array([b])).tolist() == [1]
    for _ in range(3):
        tr.update(np.zeros((0, 4)))
    assert tr.update(np.array([b])).tolist() == [3]
    # a small move between sparse frames (no overlap left) keeps the track by centre distance
    tr2 = FaceTracker()
    tr2.update(np.array([[0.1, 0.1, 0.2, 0.2]]))
    assert tr2.update(np.array([[0.22, 0.1, 0.32, 0.2]])).tolist() == [0]  # 1.2 face widths


def test_fragments_of_one_face_are_joined_two_faces_never() -> None:
    box = np.array([0.4, 0.3, 0.6, 0.7])
    far = np.array([0.0, 0.0, 0.1, 0.1])
    # track 0 in frames 0-2, lost, found again nearby as track 1 in frames 8-9; track 2 far away later;
    # track 3 beside track 1 at the same time
    frame = np.array([0, 1, 2, 8, 9, 12, 8])
    track = np.array([0, 0, 0, 1, 1, 2, 3])
    boxes = np.array([box, box, box, box + 0.05, box + 0.05, far, box + [0.25, 0, 0.25, 0]])
    assert join_fragments(frame, track, boxes).tolist() == [0, 0, 0, 0, 0, 2, 3]


# -- the choice on constructed signals -----------------------------------------------------------------------
def _two_faces(
    n: int = 40, fps: float = 10.0, speaking_track: int = 1, seed: int = 0
) -> tuple[FrameFeatures, np.ndarray]:
    """Two faces in every frame: track 0 large on the right, track 1 small on the left; speech in frames
    10-29, during which ``speaking_track``'s mouth opens and closes; the other mouth barely moves."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    speech = np.zeros(n, np.float32)
    speech[10:30] = 0.95
    det_frame, det_track, det_values, det_boxes = [], [], [], []
    for f in range(n):
        for k, box in ((0, [0.5, 0.1, 0.9, 0.9]), (1, [0.1, 0.4, 0.25, 0.7])):
            talking = k == speaking_track and 10 <= f < 30
            mouth = 0.3 + 0.25 * np.sin(f * 2.1) if talking else 0.05 + 0.005 * rng.standard_normal()
            det_frame.append(f)
            det_track.append(k)
            det_values.append([1.0, mouth, (box[0] + box[2]) / 2])
            det_boxes.append(box)
    extras = {
        "det_frame": np.array(det_frame, np.int32),
        "det_track": np.array(det_track, np.int32),
        "det_values": np.array(det_values, np.float32),
        "det_boxes": np.array(det_boxes, np.float32),
        "n_faces": np.full(n, 2, np.int16),
        "boxes": np.zeros((n, 4), np.float32),
    }
    return FrameFeatures(np.zeros((n, 3), np.float32), t, list(NAMES), extras), speech


def test_the_face_whose_mouth_follows_the_speech_is_chosen() -> None:
    for speaker in (0, 1):
        vis, speech = _two_faces(speaking_track=speaker)
        c = choose_face(vis, 1.0, 3.0, speech)
        assert c.track == speaker and c.rule == "speech correlation" and c.faces_seen == 2
        assert c.scores[speaker] > c.scores[1 - speaker]
        box = [0.5, 0.1, 0.4, 0.8] if speaker == 0 else [0.1, 0.4, 0.15, 0.3]
        assert c.box == pytest.approx(box, abs=1e-4)
    # speech through the whole window: no correlation to read, the mouth activity during speech decides
    vis, speech = _two_faces(speaking_track=1)
    c = choose_face(vis, 1.5, 2.5, np.full(40, 0.95, np.float32), pad_s=0.0)
    assert c.track == 1 and c.rule == "mouth activity"


def test_fallbacks_say_which_rule_chose() -> None:
    vis, speech = _two_faces(speaking_track=1)
    no_speech = choose_face(vis, 1.0, 3.0, None)
    assert no_speech.track == 0 and no_speech.rule == "largest face (no speech)"
    assert choose_face(vis, 1.0, 3.0, np.zeros(40, np.float32)).rule == "largest face (no speech)"
    # both mouths equally still while someone speaks: no speaker to name, the largest face
    still, _ = _two_faces(speaking_track=-1)
    c = choose_face(still, 1.0, 3.0, speech)
    assert c.track == 0 and c.rule == "largest face (no clear speaker)"
    # only one face in the segment
    keep = vis.extras["det_track"] == 1
    one = FrameFeatures(
        vis.values, vis.times, vis.names,
        {**vis.extras, **{k: vis.extras[k][keep] for k in ("det_frame", "det_track", "det_values", "det_boxes")},
         "n_faces": np.ones(40, np.int16)},
    )  # fmt: skip
    c = choose_face(one, 1.0, 3.0, speech)
    assert c.track == 1 and c.rule == "only face" and c.faces_seen == 1
    # no face at all
    empty = FrameFeatures(np.zeros((5, 3), np.float32), np.arange(5) / 10, list(NAMES), {})
    c = choose_face(empty, 0.0, 0.5, None)
    assert c.track is None and c.rule == "no face" and c.box is None and c.faces_seen == 0


def test_compose_gives_each_segment_its_speaker() -> None:
    vis, speech = _two_faces(speaking_track=1)
    out, choices, whole = compose(vis, [(1.0, 3.0)], speech)
    assert [c.track for c in choices] == [1] and whole.track == 1
    assert np.all(out.extras["track"] == 1) and np.all(out.column("face_cx") == pytest.approx(0.175))
    assert out.extras["face_choices"][0]["rule"] == "speech correlation"
    # composing again from the result starts from the same detections
    again, choices2, _ = compose(out, [(1.0, 3.0)], None)  # speech from the extras? none: largest face
    assert choices2[0].rule == "largest face (no speech)" and np.all(again.extras["track"] == 0)
    assert np.all(again.extras["boxes"][:, 0] == pytest.approx(0.5))


def test_signals() -> None:
    assert mouth_activity(np.array([0, 1, 2, 5]), np.array([0.0, 0.3, 0.3, 0.9])).tolist() == pytest.approx(
        [0.1, 0.1, 0.1, 0.0]  # changes 0, .3, 0 (gap of 3 frames: 0), edge-padded 3-frame mean
    )
    # 32 ms VAD frames: speech from 1.0 s; video frames at 0.5 and 1.5 s (10 fps: +-0.05 s)
    probs = np.where(np.arange(100) * 0.032 >= 1.0, 1.0, 0.0)
    assert speech_at_frames(np.array([0.5, 1.5]), probs, 0.032, fps=10).tolist() == [0.0, 1.0]


# -- real faces ----------------------------------------------------------------------------------------------
def _ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="module")
def two_real_faces(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RAVDESS actor 1 speaking, scaled down on the left; a larger, still face (a CREMA-D frame) on the
    right; the audio is the speaker's."""
    speaker = shared / "data" / "ravdess" / "video" / "01-01-01-01-01-01-01.mp4"
    still = shared / "data" / "clips" / "1001_DFA_NEU_XX.flv"
    for p in (speaker, still):
        if not p.is_file():
            pytest.skip(f"{p} is absent")
    d = tmp_path_factory.mktemp("speaking")
    out, png = d / "two_faces.mp4", d / "still.png"
    _ffmpeg("-ss", "0.5", "-i", str(still), "-frames:v", "1", str(png))
    _ffmpeg(
        "-i", str(speaker), "-loop", "1", "-framerate", "10", "-t", "3.3", "-i", str(png), "-filter_complex",
        "[0:v]fps=10,scale=320:180,pad=320:360:0:90:color=gray[a];[1:v]scale=480:360[b];"
        "[a][b]hstack=inputs=2:shortest=1,format=yuv420p[v]",
        "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-c:a", "aac",
        str(out),
    )  # fmt: skip
    return out


@pytest.mark.slow
def test_the_smaller_speaking_face_is_chosen(two_real_faces: Path) -> None:
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    ex = Extractor(ExtractionConfig(fps=5.0, asr="none"), concurrent=False)
    try:
        b = ex.extract_clip(two_real_faces, transcript="Kids are talking by the door")
    finally:
        ex.close()
    v = b.visual
    assert v.extras["n_faces"].max() == 2 and len(set(v.extras["det_track"].tolist())) >= 2
    (c,) = v.extras["face_choices"]
    assert c["rule"] == "speech correlation" and c["faces_seen"] == 2, c
    x, y, w, h = c["box"]
    assert x + w < 0.4 and w < 0.2  # the small face on the left (the still face's box is ~0.2 wide)
    present = v.column("face_present") > 0
    assert present.mean() > 0.8 and np.all(v.column("face_cx")[present] < 0.4)
    assert np.all(v.extras["boxes"][present, 2] < 0.4)  # key frames and crops come from its box too


@pytest.mark.slow
def test_one_real_face(shared: Path) -> None:
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    clip = shared / "data" / "ravdess" / "video" / "01-01-01-01-01-01-01.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is absent")
    ex = Extractor(ExtractionConfig(fps=5.0, asr="none"), concurrent=False)
    try:
        b = ex.extract_clip(clip, transcript="Kids are talking by the door")
    finally:
        ex.close()
    v = b.visual
    assert "det_frame" not in v.extras and v.extras["n_faces"].max() == 1
    (c,) = v.extras["face_choices"]
    assert c["rule"] == "only face" and c["faces_seen"] == 1 and c["track"] == 0
    assert 0.3 < c["box"][0] + c["box"][2] / 2 < 0.7  # the actor, centred
    assert np.all(v.extras["track"][v.column("face_present") > 0] == 0)


@pytest.mark.slow
def test_analyze_records_the_speaking_face_per_segment(two_real_faces: Path, tmp_path: Path) -> None:
    """`dmd analyze`: the segment's face channel reads the small speaking face, with its box, the faces
    seen and the rule that chose it."""
    import json

    from typer.testing import CliRunner

    from dmd_pipeline.cli.app import app

    transcript = tmp_path / "words.txt"
    transcript.write_text("Kids are talking by the door\n")
    out = tmp_path / "out"
    args = ["analyze", str(two_real_faces), "--model", "ravdess-voice-emotion", "--out", str(out)]
    args += ["--transcript", str(transcript), "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    result = json.loads((out / "two_faces.json").read_text())
    (seg,) = result["segments"]
    face = seg["face"]
    assert face["chosen_by"] == "speech correlation" and face["faces_seen"] == 2, face
    x, _, w, _ = face["box"]
    assert x + w < 0.4 and face["probabilities"] is not None
    assert result["face"]["chosen_by"] == "speech correlation" and result["face"]["faces_seen"] == 2
    assert all(k["box"] is None or k["box"][2] < 0.4 for k in result["key_frames"])  # x1 of the small face
