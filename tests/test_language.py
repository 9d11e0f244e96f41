"""Issue 21, item 5: speech in any language.

Language identification by Whisper base on real Polish and Italian clips, ``--language pl`` forcing the
language, an English clip staying English (transcribed by Whisper base by default, by tiny.en when
``--asr-model tiny.en`` asks for it; its words scored), the words channel saying
``n/a (language pl)`` for words the English text model cannot read, and the 1.3 result validating. The unit
tests need no model; the real-clip ones skip without ``../shared``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dmd_pipeline.analysis.options import options_difference, result_options
from dmd_pipeline.analysis.result import validate_result
from dmd_pipeline.extractors import language as lang_id
from dmd_pipeline.extractors.words import normalize_text

POLISH = "speech/nemo/MK0_neutral_87.opus"
ITALIAN = "speech/emovo/neu-f3-l1.opus"
ENGLISH = "clips/Sqr0AcuoNnk_12.mp4"


# ---- without models ----------------------------------------------------------------------------------
def test_check_language() -> None:
    assert lang_id.check_language("auto") == "auto"
    assert lang_id.check_language(" PL ") == "pl"
    assert lang_id.check_language(None) == "auto"
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        lang_id.check_language("xx")


def test_cli_refuses_an_unknown_language() -> None:
    from dmd_pipeline.cli.app import app

    res = CliRunner().invoke(app, ["analyze", "x.mp4", "--language", "klingon"])
    assert res.exit_code == 2
    assert "Error: Invalid value for '--language': unknown language 'klingon'" in res.output
    assert "use 'auto'" in res.output and all(f" {c}," in " ".join(res.output.split()) for c in ("en", "pl", "de"))


def test_check_asr_model() -> None:
    assert lang_id.check_asr_model(None) == lang_id.DEFAULT_ASR_MODEL == "base"
    assert lang_id.check_asr_model(" Tiny.EN ") == "tiny.en"
    assert lang_id.check_asr_model("whisper-tiny.en") == "tiny.en"  # the name a result records
    with pytest.raises(ValueError, match="unknown speech-recognition model 'small'") as err:
        lang_id.check_asr_model("small")
    assert "'base'" in str(err.value) and "'tiny.en'" in str(err.value)


def test_english_is_transcribed_by_the_chosen_model() -> None:
    from dmd_pipeline.model_files import whisper_base_dir

    base = (lang_id.MULTILINGUAL_MODEL, whisper_base_dir())
    assert lang_id.asr_model_for("en") == base  # the default: Whisper base, which identified it anyway
    assert lang_id.asr_model_for(None) == base
    assert lang_id.asr_model_for("en", asr_model="tiny.en") == (lang_id.ENGLISH_MODEL, None)  # bundled
    assert lang_id.asr_model_for("pl", asr_model="tiny.en") == base  # tiny.en reads English only
    assert lang_id.asr_model_for("en", "/my/whisper", "base") == ("whisper (user model)", "/my/whisper")
    with pytest.raises(ValueError, match="unknown speech-recognition model"):
        lang_id.asr_model_for("en", asr_model="large")


@pytest.mark.parametrize("command", ["analyze", "extract", "live"])
def test_cli_refuses_an_unknown_asr_model(command: str) -> None:
    from dmd_pipeline.cli.app import app

    args = [command, "x.mp4", "--asr-model", "small"] + (["-o", "out"] if command == "extract" else [])
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "Invalid value for '--asr-model': unknown speech-recognition model 'small'" in text
    assert "'base' (whisper-base), 'tiny.en' (whisper-tiny.en)" in text


def test_the_commands_default_to_their_documented_english_model() -> None:
    """``dmd analyze``/``extract``, the API, batch, serve uploads and ``dmd live`` agree with the library's
    defaults (the CLI writes its defaults out, to keep ``dmd --help`` light)."""
    import inspect

    from dmd_pipeline.analysis.analysis_options import AnalyzeOptions
    from dmd_pipeline.analysis.batch import BatchOptions
    from dmd_pipeline.api import analyze
    from dmd_pipeline.cli import analyze as cli_analyze
    from dmd_pipeline.cli import extract as cli_extract
    from dmd_pipeline.cli import live as cli_live
    from dmd_pipeline.feature_config import ExtractionConfig
    from dmd_pipeline.live.runner import LIVE_ASR_MODEL, LiveOptions
    from dmd_pipeline.serve.jobs import Job

    def cli_default(fn) -> str:
        return inspect.signature(fn).parameters["asr_model"].default.default

    default = lang_id.DEFAULT_ASR_MODEL
    assert AnalyzeOptions().asr_model == ExtractionConfig().asr_model == default
    assert BatchOptions(out_dir=Path(".")).asr_model == Job("i", "f", "u", 0).asr_model == default
    assert inspect.signature(analyze).parameters["asr_model"].default == default
    assert cli_default(cli_analyze.analyze) == cli_default(cli_extract.extract) == default
    assert LiveOptions().asr_model == cli_default(cli_live.live) == LIVE_ASR_MODEL


def test_words_of_any_script_survive_normalisation() -> None:
    assert normalize_text("Mleko jest źródłem wapnia!") == "mleko jest źródłem wapnia"
    assert normalize_text("یہ اچھا ہے۔") == "یہ اچھا ہے"
    assert normalize_text("Don't forget a jacket.") == "don't forget a jacket"  # ASCII: as before


def test_segment_language_takes_the_most_overlapping_segment() -> None:
    from dmd_pipeline.analysis.analyze import segment_language

    spoken = {
        "code": "en",
        "probability": 0.9,
        "source": "detected",
        "segments": [
            {"start": 0.0, "end": 3.0, "code": "en", "probability": 0.95, "source": "detected"},
            {"start": 3.0, "end": 9.0, "code": "pl", "probability": 0.8, "source": "detected"},
        ],
    }
    assert segment_language(spoken, 2.5, 8.0)["code"] == "pl"
    assert segment_language(spoken, 0.0, 2.9)["code"] == "en"
    assert segment_language(spoken, 20.0, 21.0) == {"code": "en", "probability": 0.9, "source": "file"}
    assert segment_language(None, 0.0, 1.0) is None


def test_a_changed_language_redoes_a_result() -> None:
    auto = result_options("whisper", None, [], "auto")
    assert options_difference(auto, result_options("whisper", None, [], "auto")) is None
    assert options_difference(auto, result_options("whisper", None, [], "pl")) == "--language changed (auto -> pl)"


def test_a_changed_english_model_redoes_a_result() -> None:
    base = result_options("whisper", None, [], "auto")
    tiny = result_options("whisper", None, [], "auto", asr_model="tiny.en")
    assert base["asr_model"] == "base" and options_difference(base, dict(base)) is None
    assert options_difference(tiny, base) == "--asr-model changed (tiny.en -> base)"
    before = {k: v for k, v in tiny.items() if k != "asr_model"}  # a result from before --asr-model: tiny.en
    assert options_difference(before, base) == "--asr-model changed (tiny.en -> base)"
    assert options_difference(before, tiny) is None
    # where no English is transcribed by Whisper, the English model does not matter
    for kw in ({"language": "pl"}, {"asr": "none"}, {"transcript": "it was fine"}):
        args = {"asr": "whisper", "transcript": None, "model_dirs": [], "language": "auto", **kw}
        assert options_difference(result_options(**args, asr_model="tiny.en"), result_options(**args)) is None


def test_headline_says_why_the_words_are_not_scored() -> None:
    from dmd_pipeline.analysis.result import ModelInfo, ModelRun, Prediction, make_headline

    info = ModelInfo("words", "", "regression", 1, None, ["text"])
    run = ModelRun.from_info(info, Prediction(), [], ["text"], "")
    assert make_headline([run], ["text", "audio"], None, {"words": "n/a (language pl)"}) == "words: n/a (language pl)"


def test_speech_models_say_what_each_did() -> None:
    from dmd_pipeline.model_files import WHISPER_BASE_SHA256, WHISPER_SHA256

    english = lang_id.speech_models(["whisper-tiny.en"], identified=True)
    assert [(m["name"], m["use"]) for m in english] == [
        ("whisper-tiny.en", "transcribed English"),
        ("whisper-base", "identified the language"),
    ]
    assert english[0]["languages"] == ["en"] and english[0]["sha256"] == WHISPER_SHA256
    assert english[1]["languages"] == "any" and english[1]["sha256"] == WHISPER_BASE_SHA256
    polish = lang_id.speech_models(["whisper-base"], identified=True)
    assert [m["use"] for m in polish] == ["identified the language and transcribed it"]
    given = lang_id.speech_models(["whisper-base"], identified=False)  # --language pl
    assert [m["use"] for m in given] == ["transcribed the given language"]
    assert lang_id.speech_models(["whisper (user model)"], identified=False)[0]["sha256"] is None
    assert lang_id.speech_models([], identified=False) == []


class _FakeMel:
    """faster-whisper's feature extractor's shape: 100 log-mel frames a second (plus one), 30 s windows."""

    nb_max_frames, n_samples = 3000, 480000

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return np.zeros((80, len(audio) // 160 + 1), np.float32)


class _FakeWhisper:
    """Records the frames of each encoder pass; answers ``answers[k]`` for the k-th pass."""

    def __init__(self, answers: list[tuple[str, float]]) -> None:
        from types import SimpleNamespace

        self.answers, self.frames = list(answers), []
        self.feature_extractor = _FakeMel()
        self.model = SimpleNamespace(detect_language=self._detect)

    def encode(self, features: np.ndarray) -> int:
        self.frames.append(features.shape[-1])
        return len(self.frames) - 1

    def _detect(self, k: int) -> list[list[tuple[str, float]]]:
        code, prob = self.answers[k]
        return [[(f"<|{code}|>", prob), ("<|xx|>", 1.0 - prob)]]


def test_a_clear_quick_pass_is_the_answer() -> None:
    model = _FakeWhisper([("pl", 0.95)])
    found = lang_id.detect(np.zeros(3 * 16000, np.float32), model, vad=False)
    assert found == {"code": "pl", "probability": 0.95, "source": "detected"}
    assert model.frames == [int(lang_id.QUICK_MIN_S * 100)]  # one short pass, not Whisper's 30 s


def test_an_unclear_quick_pass_falls_back_to_whispers_padded_pass() -> None:
    model = _FakeWhisper([("sk", 0.6), ("pl", 0.7)])
    found = lang_id.detect(np.zeros(8 * 16000, np.float32), model, vad=False)
    assert found["code"] == "pl" and model.frames == [802, 3000]  # its own 8 s, then 30 s padded
    model = _FakeWhisper([("de", 0.3), ("de", 0.4)])  # 50 s, nothing clear: two windows vote
    found = lang_id.detect(np.zeros(50 * 16000, np.float32), model, vad=False)
    assert model.frames == [3000, 3000] and found == {"code": "de", "probability": 0.4, "source": "detected"}


def test_a_short_clear_file_is_one_language() -> None:
    clear = lang_id.record("pl", 0.9, "detected")
    assert lang_id.one_language(clear, 12.0)
    assert not lang_id.one_language(clear, lang_id.WINDOW_S + 1)  # the window did not see all of it
    assert not lang_id.one_language(lang_id.record("pl", 0.6, "detected"), 12.0)  # unclear: maybe mixed
    assert not lang_id.one_language(lang_id.record("pl", None, "given"), 12.0)
    assert not lang_id.one_language(None, 12.0)


# ---- real clips --------------------------------------------------------------------------------------
def _clip(shared: Path, rel: str) -> Path:
    p = shared / "data" / rel
    if not p.is_file():
        pytest.skip(f"{p} is absent; skipping the language tests on real clips")
    return p


@pytest.fixture(scope="module")
def base_model():
    from dmd_pipeline.errors import ModelFileError
    from dmd_pipeline.extractors.transcribe import whisper_base_model

    try:
        return whisper_base_model()
    except ModelFileError as exc:
        pytest.skip(f"Whisper base is not installed: {exc}")


@pytest.mark.parametrize(("rel", "code"), [(POLISH, "pl"), (ITALIAN, "it")])
def test_detects_polish_and_italian_speech(shared: Path, base_model, rel: str, code: str) -> None:
    from dmd_pipeline import media

    audio = media.load_audio(_clip(shared, rel))
    found = lang_id.detect(audio, base_model)
    assert found["code"] == code, found
    assert found["source"] == "detected" and 0.0 < found["probability"] <= 1.0


@pytest.fixture(scope="module")
def models():
    from dmd_pipeline.analysis.registry import load_models

    return load_models(None)


def _analyze(path: Path, models, language: str, asr_model: str = "base") -> dict:
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip

    doc = analyze_clip(path, models, AnalyzeOptions(language=language, asr_model=asr_model)).to_dict()
    assert validate_result(doc) == []
    return doc


@pytest.fixture(scope="module")
def polish_doc(shared: Path, base_model, models) -> dict:
    return _analyze(_clip(shared, POLISH), models, "auto")


def test_polish_words_are_not_scored_by_the_english_text_model(polish_doc: dict) -> None:
    doc = polish_doc
    assert doc["language"]["code"] == "pl" and doc["language"]["source"] == "detected"
    assert doc["transcript"]["asr_model"] == "whisper-base"
    assert [m["name"] for m in doc["transcript"]["asr_models"]] == ["whisper-base"]
    assert all(s["language"]["code"] == "pl" for s in doc["segments"])
    words = next(m for m in doc["models"] if "text" in m["info"]["modalities"])
    assert words["overall"]["score"] is None
    assert "language pl" in words["note"]
    assert "words: n/a (language pl)" in doc["headline"]
    voice = [m for m in doc["models"] if m["info"]["modalities"] == ["audio"]]
    assert all(m["overall"]["probabilities"] for m in voice)  # the voice still answers


def test_language_option_forces_the_language(shared: Path, base_model, models) -> None:
    doc = _analyze(_clip(shared, ITALIAN), models, "pl")
    assert doc["language"] == {"code": "pl", "probability": None, "source": "given"}
    assert doc["transcript"]["asr_model"] == "whisper-base"
    assert "words: n/a (language pl)" in doc["headline"]


def test_an_english_clip_stays_english(shared: Path, base_model, models) -> None:
    auto = _analyze(_clip(shared, ENGLISH), models, "auto")
    assert auto["language"]["code"] == "en" and auto["language"]["source"] == "detected"
    assert auto["transcript"]["asr_model"] == "whisper-base"  # the default English model
    assert [(m["name"], m["use"]) for m in auto["transcript"]["asr_models"]] == [
        ("whisper-base", "identified the language and transcribed it")
    ]
    words = next(m for m in auto["models"] if "text" in m["info"]["modalities"])
    assert words["overall"]["score"] is not None
    english = _analyze(_clip(shared, ENGLISH), models, "en")  # no identification, the same English model
    assert english["language"] == {"code": "en", "probability": None, "source": "given"}
    assert [(m["name"], m["use"]) for m in english["transcript"]["asr_models"]] == [
        ("whisper-base", "transcribed the given language")
    ]
    assert [s["text"] for s in auto["segments"]] == [s["text"] for s in english["segments"]]
    score = next(m for m in english["models"] if "text" in m["info"]["modalities"])["overall"]["score"]
    assert np.isclose(words["overall"]["score"], score)
    tiny = _analyze(_clip(shared, ENGLISH), models, "en", asr_model="tiny.en")  # asked for: tiny.en
    assert tiny["transcript"]["asr_model"] == "whisper-tiny.en"
    assert [m["name"] for m in tiny["transcript"]["asr_models"]] == ["whisper-tiny.en"]  # base never ran


def test_a_process_that_transcribes_english_with_base_never_loads_tiny_en(shared: Path, base_model) -> None:
    """The cost of the switch: with the default English model a ``dmd analyze`` process loads Whisper base
    only (it identifies the language and transcribes); tiny.en is loaded only when asked for. A fresh
    process, as the CLI runs it (this one may hold tiny.en from other tests)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from dmd_pipeline.api import analyze\n"
        "from dmd_pipeline.extractors import transcribe as tx\n"
        "from dmd_pipeline.model_files import whisper_model_dir\n"
        "doc = analyze(sys.argv[1], asr_model=sys.argv[2]).to_dict()\n"
        "tiny = str(whisper_model_dir(None))\n"
        "print(json.dumps({'tiny_loaded': any(k[0] == tiny for k in tx._MODEL_CACHE),\n"
        "                  'asr_model': doc['transcript']['asr_model'], 'options': doc['options']['asr_model']}))\n"
    )
    clip = str(_clip(shared, ENGLISH))
    for choice, model, loaded in (("base", "whisper-base", False), ("tiny.en", "whisper-tiny.en", True)):
        res = subprocess.run([sys.executable, "-c", code, clip, choice], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        got = json.loads(res.stdout.strip().splitlines()[-1])
        assert got == {"tiny_loaded": loaded, "asr_model": model, "options": choice}


def test_a_voice_model_is_not_told_about_languages(polish_doc: dict) -> None:
    """Only a model that reads words loses them to a language: the voice model's note and input are as
    before (text present, fed as zeros)."""
    voice = [m for m in polish_doc["models"] if m["info"]["modalities"] == ["audio"]]
    assert voice and all("language" not in m["note"] and "text" in m["note"] for m in voice)


def test_the_serve_page_offers_the_api_languages() -> None:
    """The ``dmd serve`` page's language choice maps onto the API's ``language`` field: ``auto`` first (the
    default), every value one the API accepts, and the upload sends it."""
    import re

    page = (Path(lang_id.__file__).parents[1] / "serve" / "page.html").read_text(encoding="utf-8")
    select = re.search(r'<select id="language">(.*?)</select>', page, re.S)
    assert select, "no language selector on the page"
    values = re.findall(r'<option value="([^"]+)"', select.group(1))
    assert values[0] == "auto" and "en" in values and len(set(values)) == len(values)
    assert all(lang_id.check_language(v) == v for v in values)
    assert 'form.append("language", $("language").value)' in page
