"""Face tracking and the speaking face: constructed boxes and signals, and real faces (../shared)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.face.speaking import (
    MIN_CORRELATION,
    MIN_MOUTH_FACE_PX,
    UNCERTAIN,
    choose_face,
    compose,
    mouth_activity,
    speech_at_frames,
)
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


def test_a_rival_that_could_be_the_speaker_makes_the_choice_uncertain() -> None:
    """The correlation winner is kept, but the rule says so when another face could be the speaker: its
    mouth also moves with the speech, it is too small to read, or it is missed in too many frames."""
    vis, speech = _two_faces(speaking_track=1)
    assert choose_face(vis, 1.0, 3.0, speech).rule == "speech correlation"  # the other face is still
    # the large face also mouths, in the second half of the speech (a weaker correlation)
    ex = dict(vis.extras)
    values = ex["det_values"].copy()
    f = ex["det_frame"]
    big = (ex["det_track"] == 0) & (f >= 20) & (f < 30) & (f % 3 == 0)
    values[big, 1] = 0.5
    both = FrameFeatures(vis.values, vis.times, vis.names, {**ex, "det_values": values})
    c = choose_face(both, 1.0, 3.0, speech)
    assert c.track == 1 and c.rule == "speech correlation" + UNCERTAIN, c
    assert c.scores[0] >= MIN_CORRELATION and c.scores[1] > c.scores[0]
    # the speaker is the large face; the small still face is 0.15 of a 320 px frame: 48 px, too small to
    # rule out (in a 640 px frame, 96 px: ruled out)
    vis0, speech0 = _two_faces(speaking_track=0)
    for width, rule in ((320, "speech correlation" + UNCERTAIN), (640, "speech correlation")):
        sized = FrameFeatures(
            vis0.values, vis0.times, vis0.names, {**vis0.extras, "frame_size": (width, 240)}
        )
        c = choose_face(sized, 1.0, 3.0, speech0)
        assert c.track == 0 and c.rule == rule and MIN_MOUTH_FACE_PX > 0.15 * 320, (width, c)
    # the small still face is missed in every third frame: it cannot be ruled out either
    keep = (vis0.extras["det_track"] == 0) | (vis0.extras["det_frame"] % 3 != 0)
    gaps = FrameFeatures(
        vis0.values, vis0.times, vis0.names,
        {**vis0.extras, **{k: vis0.extras[k][keep] for k in ("det_frame", "det_track", "det_values", "det_boxes")}},
    )  # fmt: skip
    c = choose_face(gaps, 1.0, 3.0, speech0)
    assert c.track == 0 and c.rule == "speech correlation" + UNCERTAIN, c


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


SPEAKER = ("ravdess", "video", "01-01-01-01-01-01-01.mp4")  # speech at about 0.9-2.3 s


def _beside_speaker(shared: Path, out: Path, right: list[str], right_filter: str) -> Path:
    """RAVDESS actor 1 speaking, scaled down to 320x180 on the left, beside ``right`` (ffmpeg input
    arguments) filtered by ``right_filter`` (its label ``[b]``); the audio is the speaker's alone."""
    speaker = shared.joinpath("data", *SPEAKER)
    if not speaker.is_file():
        pytest.skip(f"{speaker} is absent")
    _ffmpeg(
        "-i", str(speaker), *right, "-filter_complex",
        f"[0:v]fps=10,scale=320:180,pad=320:360:0:90:color=gray[a];{right_filter};"
        "[a][b]hstack=inputs=2:shortest=1,format=yuv420p[v]",
        "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-c:a", "aac",
        str(out),
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def two_real_faces(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RAVDESS actor 1 speaking, scaled down on the left; a larger, still face (a CREMA-D frame) on the
    right; the audio is the speaker's."""
    still = shared / "data" / "clips" / "1001_DFA_NEU_XX.flv"
    if not still.is_file():
        pytest.skip(f"{still} is absent")
    d = tmp_path_factory.mktemp("speaking")
    png = d / "still.png"
    _ffmpeg("-ss", "0.5", "-i", str(still), "-frames:v", "1", str(png))
    right = ["-loop", "1", "-framerate", "10", "-t", "3.3", "-i", str(png)]
    return _beside_speaker(shared, d / "two_faces.mp4", right, "[1:v]scale=480:360[b]")


@pytest.fixture(scope="module")
def mouthing_faces(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The speaker beside a larger face that mouths words of its own, unheard (its audio is dropped):
    ``before`` a CREMA-D actor saying his sentence at 0.4-1.2 s, mostly before the speaker's voice;
    ``with`` the same actor's sentence moved 0.7 s later, inside the voice; ``beside`` a RAVDESS clip of
    the speaker's own actor mouthing another sentence at the same time at 640x360, which makes the frame
    960 px wide: the speaker's face is about 54 px wide in the 640 px analysed frame."""
    d = tmp_path_factory.mktemp("mouthing")
    out = {}
    for key, clip, delay in (("before", "1001_DFA_HAP_XX.flv", 0.0), ("with", "1001_DFA_FEA_XX.flv", 0.7)):
        src = shared / "data" / "clips" / clip
        if not src.is_file():
            pytest.skip(f"{src} is absent")
        pad = f"tpad=start_duration={delay}:start_mode=clone:stop_duration=3:stop_mode=clone"
        out[key] = _beside_speaker(
            shared, d / f"{key}.mp4", ["-i", str(src)], f"[1:v]fps=10,{pad},scale=480:360[b]"
        )
    src = shared / "data" / "ravdess" / "video" / "02-01-08-01-02-02-01.mp4"  # video only: no voice
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    out["beside"] = _beside_speaker(shared, d / "beside.mp4", ["-i", str(src)], "[1:v]fps=10[b]")
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
def test_a_silent_face_that_mouths_words_is_never_named_the_speaker_for_sure(
    mouthing_faces: dict[str, Path],
) -> None:
    """Both faces move their mouths, one voice is heard. Mouthing at other times than the voice loses to
    the speaker's correlation. Mouthing inside the voice, or beside a speaker's face too small to read,
    is not separable by the timing of mouth movement at `dmd analyze`'s 4 fps (the larger, clearer
    mouth correlates as well or better): the choice must then say that it is uncertain, never a sure
    wrong face (the rule before this test chose the silent face by plain 'speech correlation')."""
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    ex = Extractor(ExtractionConfig(fps=4.0, asr="none"), concurrent=False)
    try:
        got = {
            k: ex.extract_clip(p, transcript="Kids are talking by the door").visual
            for k, p in mouthing_faces.items()
        }
    finally:
        ex.close()
    for key, v in got.items():
        assert v.extras["n_faces"].max() == 2, key
        (c,) = v.extras["face_choices"]
        x, _, w, _ = c["box"]
        speaker = x + w < 0.4  # the speaker is on the left (at most 320 of 800 or 960 px)
        if key == "before":
            assert speaker and c["rule"] == "speech correlation", (key, c)
        else:
            assert speaker or c["rule"].endswith(UNCERTAIN) or c["rule"].startswith("largest face"), (key, c)


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
