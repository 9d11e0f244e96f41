"""The face channel in `dmd analyze` results (schema 1.3): per segment and per file, the headline, models[].

A tiny untrained face model and the tiny text model of ``test_analyze_cli`` keep this cheap; the media are
the factory's astronaut video (a face), its test-pattern video (no face) and a speech wav (no video).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from media_factory import DEFAULT_TEXT, MediaFactory, session_factory
from test_analyze_cli import make_tiny_model
from typer.testing import CliRunner

from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip, split_face_model
from dmd_pipeline.analysis.batch import per_model_columns, summary_row
from dmd_pipeline.analysis.export import segment_columns, segment_rows, srt, vtt
from dmd_pipeline.analysis.face import FaceFrames, face_channel, face_timeline
from dmd_pipeline.analysis.registry import (
    ModelRef,
    face_model_ref,
    load_model,
    load_models,
    resolve_model_refs,
    with_face_model,
)
from dmd_pipeline.analysis.report import write_report
from dmd_pipeline.analysis.result import (
    NO_FACE,
    NO_VIDEO,
    AnalysisResult,
    ModelInfo,
    ModelRun,
    Prediction,
    make_headline,
    validate_result,
)
from dmd_pipeline.cli.app import app
from dmd_pipeline.errors import ConfigError
from dmd_pipeline.face.model import BUNDLED_FACE_MODEL, FaceExpressionModel, save_face_model
from dmd_pipeline.face.network import FaceExpressionNet, FaceNetConfig


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def face_dir(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    net = FaceExpressionNet(FaceNetConfig(width=4, hidden=8)).eval()
    return save_face_model(tmp_path_factory.mktemp("face") / "tiny-face", net)


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny_text")


@pytest.fixture(scope="session")
def models(face_dir: Path, text_dir: Path) -> list:
    return load_models([str(text_dir), str(face_dir)])


def _check_face(face: dict, classes: list[str]) -> None:
    if face["probabilities"] is None:
        assert face["label"] is None and face["probability"] is None and face["note"]
        assert face["box"] is None
        return
    assert list(face["probabilities"]) == classes
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert face["probability"] == face["probabilities"][face["label"]]
    assert 0 < face["visible_fraction"] <= 1 and face["note"] is None
    x, y, w, h = face["box"]
    assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < w <= 1 and 0 < h <= 1


# ---- the registry ---------------------------------------------------------------------------------------
def test_face_model_resolves_and_loads_through_the_registry(face_dir: Path, text_dir: Path) -> None:
    refs = resolve_model_refs([str(text_dir), str(face_dir)])
    assert [r.kind for r in refs] == ["dmd", "face"]
    assert refs[1] == ModelRef("tiny-face", face_dir.resolve(), "face")
    assert face_model_ref(BUNDLED_FACE_MODEL).kind == "face"
    # --no-face, the default face model, another one in its place
    assert [r.kind for r in with_face_model(refs, False)] == ["dmd"]
    assert with_face_model(refs[:1], True)[-1].name == BUNDLED_FACE_MODEL
    assert with_face_model(refs, True)[-1].path == face_dir.resolve()  # the one --model named is kept
    assert with_face_model(refs[:1], str(face_dir))[-1].name == "tiny-face"
    loaded = load_models(refs)
    dmd, face = split_face_model(loaded)
    assert isinstance(face, FaceExpressionModel) and face.name == "tiny-face" and len(dmd) == 1
    with pytest.raises(ConfigError, match="one face model"):
        split_face_model([*loaded, face])
    with pytest.raises(ConfigError, match="photos only"):
        split_face_model([face])


# ---- spans, headline -----------------------------------------------------------------------------------
def test_face_channel_of_a_span_is_na_without_a_visible_face() -> None:
    t = np.arange(10) * 0.1
    probs = np.tile(np.array([[0.7, 0.3]], np.float32), (10, 1))
    probs[5:] = np.nan  # gone for the second half
    boxes = np.tile(np.array([[0.2, 0.1, 0.6, 0.7]]), (10, 1))
    frames = FaceFrames(t, probs, boxes, np.ones(10, int))
    seen = face_channel("m", ["a", "b"], frames, 0.0, 1.0)
    assert seen.label == "a" and seen.visible_fraction == pytest.approx(0.5)
    assert seen.box == pytest.approx([0.2, 0.1, 0.4, 0.6]) and seen.faces_seen == 1
    gone = face_channel("m", ["a", "b"], frames, 0.65, 1.0)
    assert gone.probabilities is None and gone.note == NO_FACE and gone.n_frames == 4 and gone.faces_seen == 0
    assert face_channel("m", ["a", "b"], None, 0.0, 1.0).note == NO_VIDEO
    tl = face_timeline("m", ["a", "b"], frames, 1.0, 2.0)
    assert tl is not None and tl.times == [0.0, 0.5] and tl.probabilities["a"][0] == pytest.approx(0.7)


def test_headline_leads_with_the_face() -> None:
    def run(name: str, task: str, mods: list[str], overall: Prediction, role: str | None = None) -> ModelRun:
        info = ModelInfo(name, "", task, 1 if task == "regression" else 2, None, mods)
        r = ModelRun.from_info(info, overall, mods, [])
        r.role = role or r.role
        return r

    words = run("w", "regression", ["text"], Prediction.from_score(1.6))
    voice = run("v", "classification", ["audio"], Prediction.from_probabilities({"calm": 0.56, "sad": 0.44}))
    face = run("f", "classification", ["vision"], Prediction.from_probabilities({"happy": 0.81, "sad": 0.19}),
               "expression")  # fmt: skip
    assert (
        make_headline([words, voice, face]) == "face: happy 0.81 · voice: calm 0.56 · words: positive +1.60"
    )
    none = run("f", "classification", ["vision"], Prediction(), "expression")
    line = make_headline([words, none], ["text", "vision"], reasons={"f": NO_FACE})
    assert line == "words: positive +1.60 · face: n/a (no face)"


# ---- analysis -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face_result(media: MediaFactory, models: list) -> AnalysisResult:
    return analyze_clip(media.face_video(duration=2.0), models, AnalyzeOptions(transcript=DEFAULT_TEXT))


def test_video_with_a_face_has_the_face_channel(face_result: AnalysisResult, models: list) -> None:
    doc = face_result.to_dict()
    assert validate_result(doc) == []
    classes = models[1].classes
    _check_face(doc["face"], classes)
    assert doc["face"]["visible_fraction"] >= 0.9 and doc["face"]["faces_seen"] == 1
    for seg in doc["segments"]:
        _check_face(seg["face"], classes)
        assert seg["predictions"]["tiny-face"]["probabilities"] == seg["face"]["probabilities"]
    run = doc["models"][-1]
    assert run["name"] == "tiny-face" and run["role"] == "expression" and run["modalities_used"] == ["vision"]
    assert run["calibration"] == {"calibrated": False, "temperature": None}
    # the fused answer leads (schema 1.3, issue 18), then the channels, the face first
    assert f" | face: {doc['face']['label']} " in doc["headline"] and doc["fused"]["label"] is not None
    tl = doc["face_timeline"]
    assert tl["model"] == "tiny-face" and len(tl["times"]) == len(tl["probabilities"][classes[0]])
    assert AnalysisResult.from_dict(doc).to_dict() == doc
    assert "face_model" in doc["timings"]


def test_no_face_and_no_video_are_na_never_zeros(media: MediaFactory, models: list) -> None:
    blank = analyze_clip(media.no_face_video(), models, AnalyzeOptions(transcript=DEFAULT_TEXT)).to_dict()
    assert validate_result(blank) == []
    assert blank["face"]["probabilities"] is None and blank["face"]["note"] == NO_FACE
    assert blank["face"]["n_frames"] > 0 and blank["face"]["visible_fraction"] == 0.0
    assert all(s["face"]["note"] == NO_FACE for s in blank["segments"])
    assert "face: n/a (no face)" in blank["headline"]
    assert any("no face was found" in w for w in blank["warnings"])
    assert blank["models"][-1]["overall"]["probabilities"] is None

    wav = analyze_clip(media.speech_wav(), models, AnalyzeOptions(transcript=DEFAULT_TEXT)).to_dict()
    assert validate_result(wav) == []
    assert wav["face"]["note"] == NO_VIDEO and wav["face"]["n_frames"] == 0
    assert wav["face_timeline"] is None and "face: n/a (no video)" in wav["headline"]
    assert not any("face" in w for w in wav["warnings"])  # not a warning about the user's file


def test_without_a_face_model_the_face_is_null(media: MediaFactory, text_dir: Path) -> None:
    r = analyze_clip(media.speech_wav(), [load_model(str(text_dir))], AnalyzeOptions(transcript=DEFAULT_TEXT))
    doc = r.to_dict()
    assert validate_result(doc) == [] and doc["face"] is None and doc["face_timeline"] is None
    assert all(s["face"] is None for s in doc["segments"]) and "face" not in doc["headline"]


def test_cli_face_options(media: MediaFactory, text_dir: Path, face_dir: Path, tmp_path: Path) -> None:
    wav = media.speech_wav()
    runner = CliRunner()
    base = ["analyze", str(wav), "--model", str(text_dir), "--asr", "none", "-q"]
    res = runner.invoke(app, [*base, "--face-model", str(face_dir), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    doc = json.loads(next((tmp_path / "a").glob("*.json")).read_text())
    assert [m["name"] for m in doc["models"]][-1] == "tiny-face" and doc["face"]["note"] == NO_VIDEO
    res = runner.invoke(app, [*base, "--no-face", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    doc = json.loads(next((tmp_path / "b").glob("*.json")).read_text())
    assert doc["face"] is None and len(doc["models"]) == 1
    res = runner.invoke(app, [*base, "--no-face", "--face-model", str(face_dir)])
    assert res.exit_code == 2 and "contradict" in res.output


# ---- writers ------------------------------------------------------------------------------------------
def test_writers_carry_the_face_channel(face_result: AnalysisResult, tmp_path: Path) -> None:
    doc = face_result.to_dict()
    cols = segment_columns(doc)
    assert cols[-3:] == ["face:label", "face:p", "face:visible"]
    assert not any(c.startswith("tiny-face:") for c in cols)  # the face is not repeated as a model column
    for row, seg in zip(segment_rows(doc), doc["segments"], strict=True):
        assert row["face:label"] == seg["face"]["label"]
        assert row["face:p"] == round(seg["face"]["probability"], 4)
        assert row["face:visible"] == round(seg["face"]["visible_fraction"], 4)
    assert f"face: {doc['segments'][0]['face']['label']} " in srt(doc)
    assert "(visible " in vtt(doc)
    assert [c for c in per_model_columns(doc) if c.startswith("face")] == [
        "face:label",
        "face:p",
        "face:visible",
    ]
    row = summary_row(doc, doc["file"], None, "ok")
    assert row["face:label"] == doc["face"]["label"] and float(row["face:p"]) == pytest.approx(
        doc["face"]["probability"], abs=1e-4
    )
    page = write_report(face_result, tmp_path, "clip")
    html = page.read_text()
    assert "Face over time" in html and (tmp_path / "clip_files" / "face.png").stat().st_size > 0


def test_writers_without_a_face(media: MediaFactory, models: list) -> None:
    doc = analyze_clip(media.no_face_video(), models, AnalyzeOptions(transcript=DEFAULT_TEXT)).to_dict()
    rows = segment_rows(doc)
    assert all(r["face:label"] == NO_FACE and r["face:p"] == "" for r in rows)
    assert "face: n/a (no face)" in srt(doc)
    row = summary_row(doc, doc["file"], None, "ok")
    assert row["face:label"] == NO_FACE and row["face:p"] == "" and row["face:visible"] == "0.0000"


# ---- a photo ------------------------------------------------------------------------------------------
def test_photo_gives_the_face_channel_only(
    media: MediaFactory, text_dir: Path, face_dir: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(media.astronaut_png().read_bytes())
    out = tmp_path / "o"
    args = ["analyze", str(photo), "--model", str(text_dir), "--face-model", str(face_dir), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--format", "csv"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "photo.json").read_text())
    assert validate_result(doc) == []
    assert [m["name"] for m in doc["models"]] == ["tiny-face"]  # no voice, no words
    assert doc["headline"].endswith(f" | face: {doc['face']['label']} {doc['face']['probability']:.2f}")
    _check_face(doc["face"], ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"])
    assert doc["face"]["n_frames"] == 1 and doc["face"]["visible_fraction"] == 1.0
    assert doc["segments"][0]["face"] == doc["face"] and doc["transcript"]["n_words"] == 0
    assert "face:label" in (out / "photo.csv").read_text().splitlines()[0]
    # its report: the answer, the class probabilities and the face box; nothing over time (one moment)
    page = write_report(analyze_clip(photo, load_models([str(face_dir)])), tmp_path / "r", "photo")
    html = page.read_text()
    assert "Class probabilities" in html and "frame_1.png" in html
    assert "Timeline" not in html and "over time" not in html
    assert not (tmp_path / "r" / "photo_files" / "timeline.png").exists()


def test_photo_rules_small_and_faceless(media: MediaFactory, models: list, tmp_path: Path) -> None:
    face = models[1]
    close = analyze_clip(media.astronaut_face_png(), [face]).to_dict()  # a face model alone reads a photo
    assert validate_result(close) == [] and close["face"]["label"] is not None
    assert close["key_frames"][0]["box"] is not None
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), (90, 120, 200)).save(blank)
    none = analyze_clip(blank, models).to_dict()  # no face in a large image: n/a, never an answer
    assert validate_result(none) == [] and none["face"]["note"] == NO_FACE
    assert none["headline"] == "face: n/a (no face)" and none["overall"]["probabilities"] is None
    small = tmp_path / "small.png"
    Image.new("RGB", (48, 48), (128, 128, 128)).save(small)
    tiny = analyze_clip(small, models).to_dict()  # a small image is taken for a face crop (as FER's)
    assert tiny["face"]["label"] is not None and any("read whole" in w for w in tiny["warnings"])


def test_two_faces_are_counted_and_the_chosen_face_is_boxed(media: MediaFactory, models: list) -> None:
    """The speaking-face choice (face.speaking) gives each segment's box and faces seen."""
    doc = analyze_clip(media.two_face_video(), models, AnalyzeOptions(transcript=DEFAULT_TEXT)).to_dict()
    assert validate_result(doc) == []
    assert doc["face"]["faces_seen"] == 2
    for seg in doc["segments"]:
        assert seg["face"]["faces_seen"] == 2 and seg["face"]["box"] is not None
