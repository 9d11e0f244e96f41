"""``dmd analyze`` and ``analyze_clip`` end to end, with tiny untrained models built in tmp folders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from media_factory import DEFAULT_TEXT, MediaFactory, session_factory
from typer.testing import CliRunner

from dmd_pipeline.analysis.result import MODALITIES, validate_result
from dmd_pipeline.cli.app import app


def make_tiny_model(
    out: Path, modalities=("text",), num_classes: int = 1, dims=(384, 25, 66), seed=0
) -> Path:
    """An untrained, small DMD checkpoint (the training helper's format) in ``out``."""
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    cfg = get_preset(
        "mosi_aligned", feature_dims=dims, dst_feature_dim=12, nheads=2, nlevels=1, num_classes=num_classes
    )
    meta = {"modalities": list(modalities), "task": "regression" if num_classes == 1 else "classification"}
    if num_classes > 1:
        meta["class_names"] = [f"c{i}" for i in range(num_classes)]
    save_checkpoint(out, DMDSystem(cfg), meta)
    return out


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny_text")


def _strict_json(path: Path) -> dict:
    def bad(token: str):
        raise AssertionError(f"{path.name} holds {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=bad)


def _check_result(doc: dict) -> None:
    """Properties every result must have: valid, finite, ordered, covering the speech."""
    assert validate_result(doc) == []
    segs = doc["segments"]
    assert all(a["start"] <= b["start"] for a, b in zip(segs, segs[1:], strict=False))
    words = [w for s in segs for w in s["words"]]
    if words:
        assert segs[0]["start"] <= words[0]["start"] + 1e-6
        assert segs[-1]["end"] >= words[-1]["end"] - 1e-6
        for s in segs:
            for w in s["words"]:
                assert s["start"] - 1e-6 <= w["start"] <= w["end"] <= s["end"] + 1e-6
    for s in segs:
        for kind in ("homo", "hetero"):
            assert math.isclose(sum(s["edges"][kind].values()), 1.0, abs_tol=1e-4)
    for series in doc["cues"]["series"].values():
        assert len(series["values"]) == len(doc["cues"]["times"])
    assert set(doc["modalities"]["used"]) | set(doc["modalities"]["zero_filled"]) == set(MODALITIES)
    # schema 1.1: the 1.0 fields are the first (primary) model's
    first = doc["models"][0]
    assert first["info"] == doc["model"] and first["overall"] == doc["overall"]
    assert first["modalities_used"] == doc["modalities"]["used"]
    assert all(s["predictions"][first["name"]] == s["prediction"] for s in segs)
    assert doc["headline"]


@pytest.mark.slow
def test_cli_one_clip_with_transcript_file(tmp_path: Path, media: MediaFactory, tiny_model: Path) -> None:
    clip = media.face_video(duration=5.0, size=(320, 240))
    tx = tmp_path / "words.txt"
    tx.write_text(DEFAULT_TEXT)
    out = tmp_path / "out"
    args = ["analyze", str(clip), "--model", str(tiny_model), "--out", str(out), "--transcript", str(tx)]
    res = CliRunner().invoke(app, [*args, "--format", "csv"])
    assert res.exit_code == 0, res.output
    doc = _strict_json(out / f"{clip.stem}.json")
    _check_result(doc)
    # the console headline: the fused answer, then the channels (the bundled face model reads the face first)
    assert " | face: " in doc["headline"] and " · words: " in doc["headline"]
    assert doc["headline"] in res.output
    assert doc["transcript"]["source"] == f"file:{tx}"
    assert doc["transcript"]["n_words"] == len(DEFAULT_TEXT.split())
    assert doc["modalities"]["present"] == ["text", "audio", "vision"]
    assert doc["modalities"]["used"] == ["text"] and doc["modalities"]["zero_filled"] == ["audio", "vision"]
    assert "fed as zeros" in doc["modalities"]["note"]
    cues = doc["cues"]["series"]
    assert any(v is not None for v in cues["smile"]["values"]), "the astronaut face should give smile values"
    assert any(v is not None and 60 < v < 500 for v in cues["f0"]["values"])
    assert cues["f0"]["unit"] == "Hz" and cues["head_yaw"]["unit"] == "degrees"
    assert doc["key_frames"] and all(k["box"] is not None for k in doc["key_frames"])
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["modalities_used"] == "text"
    assert float(rows[0]["score"]) == pytest.approx(doc["overall"]["score"], abs=1e-3)
    seg_rows = list(csv.DictReader((out / f"{clip.stem}.csv").open()))
    assert len(seg_rows) == len(doc["segments"])
    # a second run finds the complete result and does not redo it
    mtime = (out / f"{clip.stem}.json").stat().st_mtime_ns
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / f"{clip.stem}.json").stat().st_mtime_ns == mtime


def test_usage_errors_exit_2(tmp_path: Path, tiny_model: Path) -> None:
    r = CliRunner()
    res = r.invoke(app, ["analyze", str(tmp_path / "missing.mp4"), "--model", str(tiny_model)])
    assert res.exit_code == 2
    (tmp_path / "a.wav").write_bytes(b"")
    res = r.invoke(app, ["analyze", str(tmp_path / "a.wav"), "--model", "no_such_model"])
    assert res.exit_code == 2 and "no_such_model" in res.output and "available" in res.output
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    res = r.invoke(app, ["analyze", str(empty), "--model", str(tiny_model)])
    assert res.exit_code == 2 and "no media files" in res.output
    (tmp_path / "b.wav").write_bytes(b"")
    (tmp_path / "t.txt").write_text("hello")
    res = r.invoke(
        app,
        [
            "analyze",
            str(tmp_path / "a.wav"),
            str(tmp_path / "b.wav"),
            "--transcript",
            str(tmp_path / "t.txt"),
        ],
    )
    assert res.exit_code == 2
    res = r.invoke(app, ["analyze", str(tmp_path / "a.wav"), "--format", "xml"])
    assert res.exit_code == 2


@pytest.mark.slow
def test_multimodal_and_classification_models(tmp_path: Path, media: MediaFactory) -> None:
    """All-modality regression and 3-class models on audio-only speech (vision missing -> zeros)."""
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip
    from dmd_pipeline.analysis.registry import load_model

    wav = media.speech_wav(DEFAULT_TEXT)
    reg = load_model(make_tiny_model(tmp_path / "all", modalities=MODALITIES))
    cls = load_model(make_tiny_model(tmp_path / "cls", modalities=("text", "audio"), num_classes=3, seed=1))
    opts = AnalyzeOptions(transcript=DEFAULT_TEXT)
    r = analyze_clip(wav, reg, opts)
    doc = r.to_dict()
    _check_result(doc)
    assert doc["modalities"]["used"] == ["text", "audio"] and doc["modalities"]["zero_filled"] == ["vision"]
    assert "vision but the file has none" in doc["modalities"]["note"]
    assert doc["media"]["has_video"] is False and doc["key_frames"] == []
    assert -3 <= doc["overall"]["score"] <= 3
    seg_scores = [s["prediction"]["score"] for s in doc["segments"]]
    assert min(seg_scores) - 1e-6 <= doc["overall"]["score"] <= max(seg_scores) + 1e-6

    c = analyze_clip(wav, cls, opts).to_dict()
    _check_result(c)
    o = c["overall"]
    assert o["score"] is None and o["label7"] is None
    assert math.isclose(sum(o["probabilities"].values()), 1.0, abs_tol=1e-6)
    assert o["predicted_class"] == max(o["probabilities"], key=o["probabilities"].get)
    assert c["model"]["class_names"] == ["c0", "c1", "c2"]


@pytest.mark.slow
def test_no_speech_gives_one_whole_clip_segment(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    clip = media.tone_video(duration=2.0)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["analyze", str(clip), "--model", str(tiny_model), "--out", str(out), "--asr", "none", "-q"]
    )
    assert res.exit_code == 0, res.output
    doc = _strict_json(out / f"{clip.stem}.json")
    _check_result(doc)
    assert len(doc["segments"]) == 1
    seg = doc["segments"][0]
    assert seg["start"] == 0 and seg["end"] == pytest.approx(doc["duration"], abs=0.05) and seg["text"] == ""
    assert "text" not in doc["modalities"]["used"]
    assert any("has nothing to score (its predictions are null" in w for w in doc["warnings"])
    # A text-only model with no words has nothing to score: null score and labels, not a made-up number.
    for pred in (doc["overall"], seg["prediction"]):
        assert pred["score"] is None and pred["label7"] is None and pred["label2"] is None
    row = next(csv.DictReader((out / "summary.csv").read_text().splitlines()))
    assert row["score"] == "" and row["label7"] == "" and row["status"] == "ok"


@pytest.mark.slow
def test_real_clips_with_whisper(shared_clips: Path, tmp_path: Path, tiny_model: Path) -> None:
    """Two real CMU-MOSI clips through ASR (Whisper) -> one JSON each; report pages built."""
    clips = [shared_clips / "0h-zjBukYpk_1.mp4", shared_clips / "Sqr0AcuoNnk_12.mp4"]
    for c in clips:
        if not c.is_file():
            pytest.skip(f"{c} is absent")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["analyze", *map(str, clips), "--model", str(tiny_model), "--out", str(out), "--report"]
    )
    assert res.exit_code == 0, res.output
    for c in clips:
        doc = _strict_json(out / f"{c.stem}.json")
        _check_result(doc)
        assert doc["transcript"]["source"] == "whisper" and doc["transcript"]["n_words"] > 0
        assert 2.0 < doc["duration"] < 3.0
        assert (out / f"{c.stem}.html").is_file()
    assert (out / "index.html").is_file()


def test_model_trained_on_extracted_pickle_keeps_class_names_and_settings(tmp_path: Path) -> None:
    """`dmd train --data X.pkl` records the pickle's sidecar meta as ``feature_spec``: its class names,
    ``aligned`` flag and extraction settings (one level further down) must reach the analysis."""
    import torch

    from dmd_pipeline.analysis.analyze import AnalyzeOptions, get_extractor
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = get_preset("mosi_unaligned", dst_feature_dim=12, nheads=2, nlevels=1, num_classes=3)
    cfg.name = "custom"  # the preset name must not be what tells aligned/unaligned apart
    sidecar_meta = {
        "feature_spec": {"dims": {"text": 384, "audio": 25, "vision": 66}, "config": {"fps": 5.0}},
        "aligned": False,
        "task": "classification",
        "class_names": ["ANG", "HAP", "SAD"],
    }
    save_checkpoint(tmp_path / "m", DMDSystem(cfg), {"feature_spec": sidecar_meta})
    loaded = load_model(tmp_path / "m")
    assert loaded.task == "classification"
    assert loaded.class_names == ["ANG", "HAP", "SAD"]
    assert loaded.aligned is False
    ext = get_extractor(loaded, AnalyzeOptions(asr="none"))
    assert ext.config.fps == 5.0 and ext.config.aligned is False


@pytest.mark.parametrize("duration", [0.04, 2.0, 2.439])
def test_cue_times_lie_inside_the_clip(duration: float) -> None:
    """A one-frame clip (0.04 s) or a partial last cell must not get a cue time past the end."""
    from dmd_pipeline.analysis.analyze import compute_cues

    cues = compute_cues(None, None, duration, rate_hz=2.0)
    assert len(cues.times) == math.ceil(duration * 2.0 - 1e-9)
    assert all(0 <= t <= duration for t in cues.times)
    assert cues.times == sorted(cues.times) and cues.times[0] == pytest.approx(min(0.25, duration / 2))
