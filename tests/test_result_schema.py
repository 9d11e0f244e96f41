"""The analysis result: labels, JSON round trip, and the versioned JSON Schema (draft 2020-12)."""

from __future__ import annotations

import copy
import json
import math

import jsonschema
import pytest

from dmd_pipeline.analysis.result import (
    EDGE_NAMES,
    LABEL7_NAMES,
    SCHEMA_VERSION,
    AnalysisResult,
    Cues,
    CueSeries,
    GraphEdges,
    KeyFrame,
    MediaSummary,
    ModalityInfo,
    ModelInfo,
    Prediction,
    SegmentResult,
    TranscriptInfo,
    WordResult,
    label2,
    label7,
    label7_index,
    load_schema,
    read_result_file,
    validate_result,
)


def sample_result(task: str = "regression", n_segments: int = 3, text: str = "so good") -> AnalysisResult:
    """A plausible result built by hand (no model needed)."""
    segs = []
    edges = {e: 1 / 6 for e in EDGE_NAMES}
    for i in range(n_segments):
        start, end = 2.0 * i, 2.0 * i + 1.8
        if task == "regression":
            pred = Prediction.from_score(-2.4 + 2.2 * i)
        else:
            p = [0.2, 0.3, 0.5] if i % 2 else [0.6, 0.3, 0.1]
            pred = Prediction.from_probabilities(dict(zip(["neg", "neu", "pos"], p, strict=True)))
        words = [
            WordResult(w, start + 0.3 * k, start + 0.3 * k + 0.25, "forced")
            for k, w in enumerate(text.split())
        ]
        segs.append(
            SegmentResult(i, start, end, f"{text} {i}", pred, words, GraphEdges(dict(edges), dict(edges)))
        )
    overall = (
        Prediction.from_score(sum(s.prediction.score for s in segs) / len(segs))
        if task == "regression"
        else Prediction.from_probabilities({"neg": 0.4, "neu": 0.3, "pos": 0.3})
    )
    times = [0.25 + 0.5 * k for k in range(12)]
    return AnalysisResult(
        file="/data/clip.mp4",
        duration=6.0,
        media=MediaSummary(True, True, 320, 240, 25.0),
        overall=overall,
        segments=segs,
        modalities=ModalityInfo(["text", "audio", "vision"], ["text"], ["text"], ["audio", "vision"], "n"),
        transcript=TranscriptInfo("whisper", 2 * n_segments, {"forced": 2 * n_segments}),
        cues=Cues(
            2.0,
            times,
            {
                "smile": CueSeries("blendshape score 0-1", "smile", [0.1 * (k % 5) for k in range(12)]),
                "f0": CueSeries("Hz", "pitch", [None if k % 3 == 0 else 120.0 + k for k in range(12)]),
            },
        ),
        model=ModelInfo(
            "tiny",
            "/m",
            task,
            1 if task == "regression" else 3,
            None if task == "regression" else ["neg", "neu", "pos"],
            ["text"],
        ),
        key_frames=[KeyFrame(0.5, [0.3, 0.1, 0.6, 0.5]), KeyFrame(3.0, None)],
        timings={"total": 1.5},
        tool_version="0.1.0",
        created_at="2026-01-01T00:00:00+00:00",
    )


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("score", "idx", "bin_"),
    [(-3.7, -3, "negative"), (-2.5, -2, "negative"), (-0.5, 0, "negative"), (0.0, 0, "positive"),
     (0.49, 0, "positive"), (1.5, 2, "positive"), (2.51, 3, "positive"), (9.0, 3, "positive")],
)  # fmt: skip
def test_labels_round_half_even_and_clip(score: float, idx: int, bin_: str) -> None:
    assert label7_index(score) == idx
    assert label7(score) == LABEL7_NAMES[idx + 3]
    assert label2(score) == bin_


def test_prediction_clips_score_but_keeps_raw() -> None:
    p = Prediction.from_score(4.2)
    assert p.score == 3.0 and p.raw_score == pytest.approx(4.2)
    assert p.label7 == "strongly positive"


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_round_trip_and_validates(task: str) -> None:
    r = sample_result(task)
    doc = r.to_dict()
    assert validate_result(doc) == []
    jsonschema.validate(doc, load_schema())
    back = AnalysisResult.from_json(r.to_json())
    assert back.to_dict() == doc
    assert list(doc)[0] == "schema_version"


def test_nan_becomes_null_never_nan_in_json() -> None:
    r = sample_result()
    r.cues.series["smile"].values[3] = math.nan
    r.segments[0].prediction.raw_score = math.inf
    text = r.to_json()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["cues"]["series"]["smile"]["values"][3] is None
    assert validate_result(doc) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("segments"),
        lambda d: d.__setitem__("schema_version", "0.9"),
        lambda d: d["overall"].__setitem__("score", 3.5),
        lambda d: d["overall"].__setitem__("label7", "very good"),
        lambda d: d["segments"][0]["edges"]["homo"].pop("V->L"),
        lambda d: d["modalities"]["used"].append("smell"),
        lambda d: d.__setitem__("segments", []),
        lambda d: d["segments"][0]["words"][0].pop("source"),
        lambda d: d.pop("headline"),
        lambda d: d.pop("models"),
        lambda d: d.__setitem__("models", []),
        lambda d: d["models"][0].__setitem__("role", "mood"),
        lambda d: d["models"][0]["overall"].__setitem__("score", -4.0),
        lambda d: d["segments"][0].pop("predictions"),
        lambda d: d["segments"][0].__setitem__("predictions", {}),
    ],
)
def test_invalid_documents_are_rejected(mutate) -> None:
    doc = copy.deepcopy(sample_result().to_dict())
    mutate(doc)
    assert validate_result(doc), "a broken document must not validate"


def test_read_result_file_rejects_truncated_json(tmp_path) -> None:
    p = tmp_path / "x.json"
    text = sample_result().to_json()
    p.write_text(text[: len(text) // 2])
    doc, problems = read_result_file(p)
    assert doc is None and problems
    p.write_text(text)
    doc, problems = read_result_file(p)
    assert problems == [] and doc["file"] == "/data/clip.mp4"


def test_schema_1_1_fields_of_a_one_model_result() -> None:
    """A result built with the 1.0 fields only gets ``models``, ``predictions`` and ``headline`` from them."""
    doc = sample_result().to_dict()
    assert doc["schema_version"] == "1.5" and list(doc)[:2] == ["schema_version", "headline"]
    (run,) = doc["models"]
    assert run["name"] == "tiny" and run["role"] == "sentiment" and run["info"] == doc["model"]
    assert run["overall"] == doc["overall"] and run["modalities_used"] == ["text"] and run["windows"] == []
    assert all(s["predictions"] == {"tiny": s["prediction"]} for s in doc["segments"])
    o = doc["overall"]
    assert doc["headline"] == f"words: {o['label7']} {o['score']:+.2f}"
    cls = sample_result("classification").to_dict()
    assert cls["models"][0]["role"] == "emotion" and cls["headline"] == "words: neg 0.40"


def test_reads_schema_1_0_documents() -> None:
    """``from_dict`` still reads a 1.0 document (no models/headline/predictions) and upgrades it."""
    old = sample_result().to_dict()
    old["schema_version"] = "1.0"
    del old["headline"], old["models"]
    for s in old["segments"]:
        del s["predictions"]
    assert validate_result(old), "a 1.0 document is not a current-version document"
    back = AnalysisResult.from_dict(old)
    new = back.to_dict()
    assert new["schema_version"] == SCHEMA_VERSION and validate_result(new) == []
    assert new["models"][0]["info"] == old["model"] and new["models"][0]["overall"] == old["overall"]
    assert [s["predictions"]["tiny"] for s in new["segments"]] == [s["prediction"] for s in old["segments"]]
    assert new["headline"].startswith("words: ")
