"""The fused answer in a result (schema 1.3): picked from the channels a result has, in the JSON (valid against
the schema, read back), the headline, the CSV/SRT/VTT and summary.csv cells. Results are built by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from dmd_pipeline.analysis.batch import SUMMARY_EXTRA_COLUMNS, summary_row
from dmd_pipeline.analysis.fused import fuse_result, fused_phrase, model_account, voice_run, words_run
from dmd_pipeline.analysis.result import (
    EDGE_NAMES,
    AnalysisResult,
    Cues,
    GraphEdges,
    MediaSummary,
    ModalityInfo,
    ModelInfo,
    ModelRun,
    Prediction,
    SegmentResult,
    TranscriptInfo,
    validate_result,
)

VOICE = ("angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
FACE = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def peaked(classes: tuple[str, ...], top: str, p: float) -> dict[str, float]:
    rest = (1.0 - p) / (len(classes) - 1)
    return {c: p if c == top else rest for c in classes}


def info(name: str, task: str, modalities: list[str]) -> ModelInfo:
    classes = list(VOICE) if task == "classification" else None
    return ModelInfo(name, f"/m/{name}", task, len(classes or [1]), classes, modalities)


def build(
    voice_tops: list[str] | None, scores: list[float], primary_mods: list[str] | None = None
) -> AnalysisResult:
    """Two segments scored by a words model (and a voice model when ``voice_tops`` is given)."""
    words = info("words", "regression", primary_mods or ["text"])
    runs = [
        ModelRun.from_info(
            words, Prediction.from_score(sum(scores) / len(scores)), primary_mods or ["text"], []
        )
    ]
    if voice_tops is not None:
        overall = Prediction.from_probabilities(peaked(VOICE, voice_tops[0], 0.7))
        runs.append(ModelRun.from_info(info("voice", "classification", ["audio"]), overall, ["audio"], []))
    segs = []
    for i, score in enumerate(scores):
        preds = {"words": Prediction.from_score(score)}
        if voice_tops is not None:
            preds["voice"] = Prediction.from_probabilities(peaked(VOICE, voice_tops[i], 0.7))
        edges = GraphEdges(
            {e: (0.5 if e == "A->L" else 0.1) for e in EDGE_NAMES}, {e: 1 / 6 for e in EDGE_NAMES}
        )
        segs.append(SegmentResult(i, 2.0 * i, 2.0 * i + 1.5, f"seg {i}", preds["words"], [], edges, preds))
    return AnalysisResult(
        file="/data/clip.mp4",
        duration=4.0,
        media=MediaSummary(True, True, 320, 240, 25.0),
        overall=runs[0].overall,
        segments=segs,
        modalities=ModalityInfo(["text", "audio", "vision"], ["text"], ["text"], ["audio", "vision"], ""),
        transcript=TranscriptInfo("whisper", 4, {"forced": 4}),
        cues=Cues(2.0, [], {}),
        model=words,
        models=runs,
    )


def test_channels_are_picked_by_what_the_models_are() -> None:
    r = build(["happy", "sad"], [1.0, -1.0])
    assert voice_run(r.models).name == "voice" and words_run(r.models).name == "words"
    assert voice_run(build(None, [0.5]).models) is None


def test_fused_answer_in_the_json_valid_and_read_back() -> None:
    r = build(["happy", "sad"], [1.5, -1.5])
    fuse_result(r, {"words": 0.8})
    doc = r.to_dict()
    assert validate_result(doc) == []
    assert [s["fused"]["label"] for s in doc["segments"]] == ["happy", "sad"]
    for s in doc["segments"]:
        assert sum(s["fused"]["contributions"].values()) == pytest.approx(1.0)
        assert s["fused"]["contributions"]["face"] == 0.0  # no face channel in this result
        assert s["fused"]["agreement"] is not None  # voice and words both spoke
    assert doc["fused"]["label"] == "happy"  # from the file-level voice (happy) and words (0.0)
    assert doc["segments"][0]["fused"]["valence"] > 0 > doc["segments"][1]["fused"]["valence"]
    assert AnalysisResult.from_dict(doc).to_dict() == doc


def test_headline_leads_with_the_fused_answer_then_each_channel() -> None:
    r = build(["angry", "angry"], [-2.0, -2.0])
    channels = r.headline
    fuse_result(r)
    lead, rest = r.headline.split(" | ")
    assert rest == channels
    assert lead.startswith(f"angry {r.fused['probability']:.2f} — voice ")
    assert lead == fused_phrase(r.fused)


def test_a_conflict_is_named_in_the_headline() -> None:
    from dmd_pipeline.analysis.result import FaceChannel

    r = build(["sad", "sad"], [0.0, 0.0])
    probs = peaked(FACE, "happy", 0.8)
    r.face = FaceChannel("fer", probs, "happy", 0.8, 1.0, 20)  # the face channel as a result carries it
    for s in r.segments:
        s.face = FaceChannel("fer", probs, "happy", 0.8, 1.0, 10)
    fuse_result(r)
    assert r.fused["uncertain"] and r.fused["uncertain_reason"] == "conflict"
    assert "uncertain (conflict: face happy, voice sad)" in r.headline
    assert r.fused["contributions"]["face"] > 0 and r.segments[0].fused["contributions"]["face"] > 0


def test_a_face_dataclass_or_no_face_at_all() -> None:
    r = build(["happy", "happy"], [0.0, 0.0])
    object.__setattr__(r.segments[0], "face", SimpleNamespace())  # not a face dict: ignored
    object.__setattr__(
        r.segments[1], "face", {"probabilities": None, "visible_fraction": 0.0}
    )  # n/a (no face)
    fuse_result(r)
    assert all(s.fused["contributions"]["face"] == 0.0 for s in r.segments)
    assert all(s.fused["label"] == "happy" for s in r.segments)


def test_words_only_keeps_the_headline_and_gives_a_valence() -> None:
    r = build(None, [1.5, -3.0])
    before = r.headline
    fuse_result(r)
    assert r.headline == before  # no face or voice: nothing to lead with
    assert r.fused["label"] is None and r.fused["uncertain_reason"] == "missing channel"
    assert [s.fused["valence"] for s in r.segments] == pytest.approx([0.5, -1.0])
    assert validate_result(r.to_dict()) == []


def test_tables_and_subtitles_carry_the_fused_answer() -> None:
    r = build(["happy", "angry"], [2.0, -2.0])
    fuse_result(r)
    rows = list(csv.DictReader(io.StringIO(r.to_csv())))
    assert [row["fused:label"] for row in rows] == ["happy", "angry"]
    assert all(row["fused:uncertain"] in ("true", "false") for row in rows)
    assert float(rows[0]["fused:p"]) == pytest.approx(r.segments[0].fused["probability"], abs=1e-4)
    assert float(rows[0]["fused:valence"]) > 0 > float(rows[1]["fused:valence"])  # the derived timeline
    first_cue = r.to_srt().split("\n\n")[0]
    assert "[fused: happy " in first_cue
    assert "[fused: angry " in r.to_vtt()
    row = summary_row(r.to_dict(), r.file, Path("clip.json"), "ok")
    assert set(SUMMARY_EXTRA_COLUMNS) <= set(row)
    assert row["fused:label"] == r.fused["label"] and row["fused:uncertain"] in ("true", "false")
    old = r.to_dict()
    old.pop("fused")
    assert summary_row(old, r.file, None, "ok")["fused:label"] == ""  # an older result: empty cells


def test_model_account_of_a_multimodal_model_only() -> None:
    assert model_account(build(["happy", "happy"], [0.0, 0.0])) is None  # text-only primary
    r = build(["happy", "happy"], [0.0, 0.0], primary_mods=["text", "audio"])
    account = model_account(r)
    assert account is not None and account.startswith("words's graph: HomoGD mostly voice -> words 0.50")
    assert "face" not in account  # edges to a modality it was not fed are left out
    fuse_result(r)
    assert r.fused["model_account"] == account and validate_result(r.to_dict()) == []


def test_report_opens_with_the_answer_the_strip_and_the_valence_timeline(tmp_path: Path) -> None:
    from dmd_pipeline.analysis.report import write_report
    from dmd_pipeline.analysis.report_answer import strip_cells

    r = build(["happy", "sad"], [2.0, 0.0])
    face = {"probabilities": peaked(FACE, "happy", 0.9), "visible_fraction": 1.0}
    object.__setattr__(r.segments[0], "face", face)  # the face seen in the first segment only
    fuse_result(r)
    page = write_report(r, tmp_path, "clip", media_path=tmp_path / "missing.mp4")
    text = page.read_text(encoding="utf-8")
    assert text.index('id="fused-answer"') < text.index("<h2>Models</h2>")  # the answer comes first
    assert text.count('class="row" data-channel=') == 4
    assert text.index('data-channel="fused"') < text.index('data-channel="face"')  # the fused row on top
    assert (tmp_path / "clip_files" / "valence_arousal.png").is_file()
    assert "derived" in text
    rows = strip_cells(r)
    assert [title for _, _, title, _ in rows["face"]] == ["happy 0.90", "n/a"]
    assert rows["voice"][1][2].startswith("sad ") and rows["words"][0][2] == "sentiment +2.00"


def test_the_words_model_answers_for_its_sign_accuracy() -> None:
    from dmd_pipeline.analysis.registry import load_model

    words = load_model("mosi-text-minilm")
    acc = words.sign_accuracy
    assert acc == words.meta["metrics"]["valid"]["Has0_acc_2"] and 0.5 < acc < 1.0
    voice = load_model("ravdess-voice-emotion")
    assert voice.sign_accuracy is None  # a classifier has no sentiment sign


def test_headline_shares_add_up_to_one_tenth_by_tenth():
    """0.66/0.27/0.07 rounds to 0.7 + 0.3 + 0.1 = 1.1 one by one; the headline shows shares that add up."""
    for shares in (
        {"face": 0.66, "voice": 0.27, "words": 0.07},
        {"face": 0.34, "voice": 0.33, "words": 0.33},
        {"face": 0.04, "voice": 0.04, "words": 0.92},
    ):
        phrase = fused_phrase({"label": "happy", "probability": 0.7, "contributions": shares})
        parts = phrase.split(" — ")[1].split(" · ")
        assert abs(sum(float(p.split()[1]) for p in parts) - 1.0) < 1e-9, phrase
