"""Several models over one extraction: sentiment from the words + emotion from the voice (schema 1.1).

The voice-emotion models here are tiny, untrained DMD checkpoints built in tmp folders with the meta a
``dmd extract --acoustic whisper`` pickle gives (audio only, 8 classes, 4 s analysis window); the text model
is the tiny text-only regression model of ``test_analyze_cli``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from media_factory import DEFAULT_TEXT, MediaFactory, session_factory
from test_analyze_cli import make_tiny_model
from typer.testing import CliRunner

from dmd_pipeline.analysis.analyze import (
    AnalyzeOptions,
    acoustic_setting,
    analysis_windows,
    analyze_clip,
    get_extractor,
    model_columns,
)
from dmd_pipeline.analysis.registry import default_model_names, load_model, split_model_refs
from dmd_pipeline.analysis.result import (
    AnalysisResult,
    ModelInfo,
    ModelRun,
    Prediction,
    load_schema,
    make_headline,
    validate_result,
)
from dmd_pipeline.cli.app import app
from dmd_pipeline.errors import ConfigError

EMOTIONS = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]
WHISPER_NAMES = [f"whisper_{i}" for i in range(384)]
LONG_TEXT = (
    "The train was late again this morning, and nobody told us why. We waited on the platform for "
    "almost an hour, and then it was cancelled."
)


def make_emotion_model(
    out: Path,
    acoustic: str = "whisper",
    audio_dim: int = 384,
    names: list[str] | None = WHISPER_NAMES,
    window: float | None = 4.0,
    seed: int = 0,
) -> Path:
    """An untrained 8-class audio-only DMD checkpoint whose meta records the whisper feature spec."""
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint
    from dmd_pipeline.pipeline import ExtractionConfig

    torch.manual_seed(seed)
    cfg = get_preset(
        "mosi_aligned",
        feature_dims=(384, audio_dim, 66),
        dst_feature_dim=10,
        nheads=2,
        nlevels=1,
        seq_lens=(50, 100, 50),
        num_classes=8,
    )
    spec: dict = {
        "config": ExtractionConfig.for_setting(False, acoustic=acoustic, asr="none").to_dict(),
        "dims": {"text": 384, "audio": audio_dim, "vision": 66},
        "acoustic": acoustic,
    }
    if names is not None:
        spec["names"] = {"audio": list(names)}
    meta: dict = {
        "name": out.name,
        "modalities": ["audio"],
        "task": "classification",
        "class_names": EMOTIONS,
        "feature_spec": {"feature_spec": spec, "aligned": False, "class_names": EMOTIONS},
    }
    if window is not None:
        meta["analysis_window_s"] = window
    save_checkpoint(out, DMDSystem(cfg), meta)
    return out


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi_models")
    return {
        "text": make_tiny_model(root / "words-sentiment"),
        "voice": make_emotion_model(root / "voice-emotion"),
    }


@pytest.fixture(scope="session")
def models(model_dirs):
    """The loaded (text, voice) pair, shared so the extractor and its encoders load once."""
    return [load_model(model_dirs["text"]), load_model(model_dirs["voice"])]


SPEECH_CALLS: dict[str, int] = {}  # extractor stage runs during the speech_result analysis


@pytest.fixture(scope="session")
def speech_result(models, media: MediaFactory) -> AnalysisResult:
    wav = media.speech_wav(DEFAULT_TEXT)
    opts = AnalyzeOptions(transcript=DEFAULT_TEXT)
    ext = get_extractor(models, opts)
    before = dict(ext.calls)
    result = analyze_clip(wav, models, opts)
    SPEECH_CALLS.update({k: v - before.get(k, 0) for k, v in ext.calls.items()})
    return result


def _probs_ok(p: dict) -> None:
    probs = p["probabilities"]
    assert list(probs) == EMOTIONS
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-6)
    assert all(0.0 <= v <= 1.0 for v in probs.values())
    assert p["predicted_class"] == max(probs, key=probs.get)
    assert p["score"] is None and p["label7"] is None


# ---- pure functions --------------------------------------------------------------------------------
def test_headline_format() -> None:
    def run(name, task, mods, overall):
        info = ModelInfo(name, "/m", task, 1 if task == "regression" else 8, None, mods)
        return ModelRun.from_info(
            info, overall, mods if overall.score is not None or overall.probabilities else [], []
        )

    probs = dict.fromkeys(EMOTIONS, 0.29 / 7) | {"angry": 0.71}
    words = run("mosi-text-minilm", "regression", ["text"], Prediction.from_score(-0.12))
    voice = run("ravdess-voice-emotion", "classification", ["audio"], Prediction.from_probabilities(probs))
    assert make_headline([words, voice], ["text", "audio"]) == "voice: angry 0.71 · words: neutral -0.12"
    mute = run("ravdess-voice-emotion", "classification", ["audio"], Prediction())
    assert make_headline([words, mute], ["text", "vision"]) == "words: neutral -0.12 · voice: n/a (no audio)"
    both = run("av", "regression", ["audio", "vision"], Prediction.from_score(1.6))
    assert make_headline([both], ["audio", "vision"]) == "voice+face: positive +1.60"


@pytest.mark.parametrize(
    ("dur", "n"), [(3.0, 1), (6.0, 1), (6.1, 2), (10.0, 2), (10.4, 3), (14.2, 4), (40.0, 10)]
)
def test_analysis_windows_split_long_segments_equally(dur: float, n: int) -> None:
    wins = analysis_windows(1.0, 1.0 + dur, 4.0)
    assert len(wins) == n
    assert wins[0][0] == 1.0 and wins[-1][1] == pytest.approx(1.0 + dur)
    assert all(math.isclose(b - a, dur / n) for a, b in wins)
    assert all(a1 == pytest.approx(b0) for (_, b0), (a1, _) in zip(wins, wins[1:], strict=False))
    assert analysis_windows(0.0, dur, None) == [(0.0, dur)]


def test_model_lists_and_defaults(monkeypatch, model_dirs) -> None:
    a, b = str(model_dirs["text"]), str(model_dirs["voice"])
    assert split_model_refs([f"{a},{b}", a, " "]) == [a, b]
    assert split_model_refs(None) == []
    monkeypatch.setenv("DMD_MODEL", f"{b}, {a}")
    assert default_model_names() == [b, a]
    monkeypatch.delenv("DMD_MODEL")
    names = default_model_names()
    assert names[0] == "mosi-text-minilm" and set(names) <= {"mosi-text-minilm", "voice-emotion-5corpora"}

    from dmd_pipeline import api

    loaded = api.load_model([a, b])
    assert [m.name for m in loaded] == ["words-sentiment", "voice-emotion"]
    assert api.load_model(loaded[0]) is loaded[0]


def test_acoustic_settings_union_and_conflict(tmp_path: Path, models) -> None:
    text, voice = models
    assert acoustic_setting([text]) == "librosa"  # a text model never constrains the audio features
    assert acoustic_setting([text, voice]) == "whisper+librosa"  # whisper plus the librosa cue columns
    ext = get_extractor([text, voice], AnalyzeOptions(asr="none"))
    assert ext.config.acoustic == "whisper+librosa"
    assert ext is get_extractor([text, voice], AnalyzeOptions(asr="none"))  # built once, kept
    lib = load_model(make_tiny_model(tmp_path / "librosa-av", modalities=("text", "audio")))
    assert lib.acoustic_setting == "librosa"
    with pytest.raises(ConfigError, match="incompatible acoustic") as info:
        get_extractor([lib, voice], AnalyzeOptions(asr="none"))
    assert "librosa-av" in str(info.value) and "voice-emotion" in str(info.value)
    assert "100 Hz" in str(info.value) and "50 Hz" in str(info.value)


def test_missing_columns_name_the_model(tmp_path: Path, models) -> None:
    odd = load_model(make_emotion_model(tmp_path / "odd-voice", names=[*WHISPER_NAMES[:383], "mfcc_99"]))
    ext = get_extractor([models[0], odd], AnalyzeOptions(asr="none"))
    with pytest.raises(ConfigError, match="odd-voice") as info:
        model_columns(odd, ext, "audio")
    assert "mfcc_99" in str(info.value) and "whisper+librosa" in str(info.value)


# ---- end to end ------------------------------------------------------------------------------------
def test_two_models_one_extraction(speech_result: AnalysisResult, models) -> None:
    r = speech_result
    ext = get_extractor(models, AnalyzeOptions(transcript=DEFAULT_TEXT))
    assert ext.config.acoustic == "whisper+librosa"
    assert SPEECH_CALLS["acoustic"] == 1 and SPEECH_CALLS["probe"] == 1  # one extraction for both models
    doc = r.to_dict()
    assert validate_result(doc) == []
    jsonschema.validate(doc, load_schema())
    assert doc["schema_version"] == "1.5"
    assert [m["name"] for m in doc["models"]] == ["words-sentiment", "voice-emotion"]
    words, voice = doc["models"]
    assert (words["role"], words["task"], words["modalities_used"]) == ("sentiment", "regression", ["text"])
    assert (voice["role"], voice["task"], voice["modalities_used"]) == (
        "emotion",
        "classification",
        ["audio"],
    )
    assert voice["class_names"] == EMOTIONS and voice["zero_filled"] == ["text", "vision"]
    # 1.0 fields = the primary model
    assert doc["model"] == words["info"] and doc["overall"] == words["overall"]
    assert -3 <= doc["overall"]["score"] <= 3
    _probs_ok(voice["overall"])
    for s in doc["segments"]:
        assert set(s["predictions"]) == {"words-sentiment", "voice-emotion"}
        assert s["predictions"]["words-sentiment"] == s["prediction"]
        _probs_ok(s["predictions"]["voice-emotion"])
    # the overall emotion is the duration-weighted mean of the segments'
    w = np.array([s["end"] - s["start"] for s in doc["segments"]])
    seg_p = np.array(
        [[s["predictions"]["voice-emotion"]["probabilities"][c] for c in EMOTIONS] for s in doc["segments"]]
    )
    assert np.allclose(
        w @ seg_p / w.sum(), [voice["overall"]["probabilities"][c] for c in EMOTIONS], atol=1e-6
    )
    channels = doc["headline"].split(" | ")[-1]  # after the fused answer
    assert channels.startswith("voice: ") and " · words: " in channels
    top = voice["overall"]["predicted_class"]
    assert f"voice: {top} {voice['overall']['probabilities'][top]:.2f}" in doc["headline"]
    # the librosa columns are still there for the pitch/loudness cues
    assert any(v is not None and 60 < v < 500 for v in doc["cues"]["series"]["f0"]["values"])
    assert any(v is not None for v in doc["cues"]["series"]["loudness"]["values"])
    back = AnalysisResult.from_json(r.to_json())
    assert back.to_dict() == doc


def test_report_has_emotion_plot(speech_result: AnalysisResult, tmp_path: Path) -> None:
    from dmd_pipeline.analysis.report import write_report

    page = write_report(speech_result, tmp_path, "talk")
    html = page.read_text(encoding="utf-8")
    assert "talk_files/emotion.png" in html and "Emotion over time" in html
    assert (tmp_path / "talk_files" / "emotion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "talk_files/timeline.png" in html
    assert speech_result.headline.replace("·", "&middot;") in html or speech_result.headline in html
    # a sentiment-only result draws no emotion plot
    single = AnalysisResult.from_dict(speech_result.to_dict())
    single.models = single.models[:1]
    page = write_report(single, tmp_path / "one", "talk")
    assert "emotion.png" not in page.read_text(encoding="utf-8")


def test_long_segment_is_scored_in_windows(models, media: MediaFactory) -> None:
    """No words (no ASR): one whole-file segment, cut into equal 4 s windows for the voice model."""
    wav = media.speech_wav(LONG_TEXT)
    r = analyze_clip(wav, models, AnalyzeOptions(asr="none"))
    assert validate_result(r.to_dict()) == []
    assert len(r.segments) == 1 and r.segments[0].text == ""
    seg = r.segments[0]
    n = round(seg.duration / 4.0)
    assert seg.duration > 6.0 and n >= 2
    voice = r.run("voice-emotion")
    assert len(voice.windows) == n and all(w.segment == 0 for w in voice.windows)
    lens = [w.end - w.start for w in voice.windows]
    assert np.allclose(lens, seg.duration / n, atol=1e-3)
    assert voice.windows[0].start == seg.start and voice.windows[-1].end == pytest.approx(seg.end, abs=1e-3)
    mat = np.array([[w.prediction.probabilities[c] for c in EMOTIONS] for w in voice.windows])
    mean = np.asarray(lens) @ mat / sum(lens)
    got = seg.predictions["voice-emotion"].probabilities
    assert np.allclose(mean, [got[c] for c in EMOTIONS], atol=1e-6)
    assert not np.allclose(mat[0], mat[1]), "the windows must be scored separately"
    # the text model has no words: null, said in the headline
    assert r.overall.score is None and "words: n/a (no words)" in r.headline


def test_video_without_audio_gives_null_emotion(model_dirs, media: MediaFactory) -> None:
    from dmd_pipeline import api

    clip = media.no_audio_video(duration=2.0)
    r = api.analyze(clip, model=[str(model_dirs["text"]), str(model_dirs["voice"])], asr="none")
    doc = r.to_dict()
    assert validate_result(doc) == []
    voice = doc["models"][1]
    assert voice["modalities_used"] == [] and voice["overall"]["probabilities"] is None
    assert "no audio track: the voice model has nothing to score" in voice["note"]
    assert all(s["predictions"]["voice-emotion"]["predicted_class"] is None for s in doc["segments"])
    assert "voice: n/a (no audio)" in doc["headline"]
    assert any("voice-emotion" in w and "nothing to score" in w for w in doc["warnings"])


def test_dims_mismatch_names_the_model(tmp_path: Path, models, media: MediaFactory) -> None:
    """A whisper model without recorded names gets the 384 whisper columns: a 25-d model cannot take them."""
    bad = load_model(make_emotion_model(tmp_path / "narrow-voice", audio_dim=25, names=None))
    with pytest.raises(ConfigError, match="narrow-voice") as info:
        analyze_clip(media.speech_wav("hello there"), [models[0], bad], AnalyzeOptions(asr="none"))
    msg = str(info.value)
    assert "expects 25-d audio" in msg and "384-d" in msg and "whisper+librosa" in msg


@pytest.mark.slow
def test_cli_several_models_summary_and_report(model_dirs, media: MediaFactory, tmp_path: Path) -> None:
    wav = tmp_path / "talk.wav"
    wav.write_bytes(media.speech_wav(DEFAULT_TEXT).read_bytes())
    wav.with_suffix(".txt").write_text(DEFAULT_TEXT)
    out = tmp_path / "out"
    args = ["analyze", str(wav), "--model", str(model_dirs["text"]), "--model", str(model_dirs["voice"])]
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--report", "--format", "csv"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "talk.json").read_text())
    assert validate_result(doc) == []
    assert doc["headline"] in res.output.replace("\n", " ") or doc["headline"].split(" · ")[0] in res.output
    assert "fused" in res.output  # the segment table's fused column (the voice spoke)
    row = next(csv.DictReader((out / "summary.csv").open()))
    assert row["fused:label"] == doc["fused"]["label"] and row["fused:uncertain"] in ("true", "false")
    voice = doc["models"][1]["overall"]
    assert row["voice-emotion:label"] == voice["predicted_class"]
    assert float(row["voice-emotion:p"]) == pytest.approx(max(voice["probabilities"].values()), abs=1e-4)
    assert float(row["words-sentiment:score"]) == pytest.approx(doc["overall"]["score"], abs=1e-4)
    assert float(row["score"]) == pytest.approx(doc["overall"]["score"], abs=1e-3) and row["headline"]
    seg_rows = list(csv.DictReader((out / "talk.csv").open()))
    assert len(seg_rows) == len(doc["segments"]) and all(
        r["voice-emotion:label"] in EMOTIONS for r in seg_rows
    )
    html = (out / "talk.html").read_text(encoding="utf-8")
    assert "talk_files/emotion.png" in html
    # the comma form names the same two models: the result is complete, nothing is redone
    mtime = (out / "talk.json").stat().st_mtime_ns
    res = CliRunner().invoke(
        app, ["analyze", str(wav), "--model", f"{model_dirs['text']},{model_dirs['voice']}", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "talk.json").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_real_ravdess_clips(shared: Path, models) -> None:
    """Real RAVDESS actor-1 clips: an audio-video one scores both; a "video-only" one (its audio track is
    digital silence) gives no emotion."""
    video = shared / "data" / "ravdess" / "video"
    av, mute = video / "01-01-08-01-01-02-01.mp4", video / "02-01-08-01-01-02-01.mp4"
    for p in (av, mute):
        if not p.is_file():
            pytest.skip(f"{p} is absent")
    opts = AnalyzeOptions(transcript="Kids are talking by the door")
    r = analyze_clip(av, models, opts).to_dict()
    assert validate_result(r) == []
    _probs_ok(r["models"][1]["overall"])
    assert r["models"][1]["modalities_used"] == ["audio"] and r["overall"]["score"] is not None
    m = analyze_clip(mute, models, opts).to_dict()
    assert validate_result(m) == []
    voice = m["models"][1]
    assert voice["overall"]["probabilities"] is None and "silent" in voice["note"]
    assert "voice: n/a (no audio)" in m["headline"] and m["overall"]["score"] is not None


def test_cli_incompatible_models_is_a_usage_error(tmp_path: Path, model_dirs, media: MediaFactory) -> None:
    lib = make_tiny_model(tmp_path / "librosa-av", modalities=("text", "audio"))
    wav = media.speech_wav("hello there")
    res = CliRunner().invoke(
        app,
        [
            "analyze",
            str(wav),
            "-m",
            str(lib),
            "-m",
            str(model_dirs["voice"]),
            "-o",
            str(tmp_path / "o"),
            "-q",
        ],
    )
    assert res.exit_code == 2, res.output
    assert "incompatible acoustic" in res.output and "librosa-av" in res.output
    assert not list((tmp_path / "o").glob("*.json"))


def test_input_span_widens_short_windows_to_the_training_clip_length() -> None:
    from dmd_pipeline.analysis.analyze import input_span

    assert input_span(1.0, 2.5, None, 10.0) == (1.0, 2.5)  # not a short-clip model: unchanged
    assert input_span(1.0, 2.5, 4.0, 10.0) == (0.0, 4.0)  # centred at 1.75, clamped at the start
    assert input_span(5.0, 6.0, 4.0, 10.0) == (3.5, 7.5)
    assert input_span(8.5, 9.5, 4.0, 10.0) == (6.0, 10.0)  # clamped at the end
    assert input_span(0.8, 2.9, 4.0, 3.7) == (0.0, 3.7)  # a RAVDESS-length file: the whole clip
    assert input_span(2.0, 7.0, 4.0, 10.0) == (2.0, 7.0)  # long enough already
