"""Issue 8, first run and everyday use: what "done" means, tables of every result, fail fast, one set of
conventions, outputs people use directly, cold start, live feedback. Each test fails on the code before."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from media_factory import MediaFactory, session_factory
from test_analyze_cli import make_tiny_model
from test_result_schema import sample_result
from typer.testing import CliRunner

from dmd_pipeline.analysis.result import validate_result
from dmd_pipeline.cli.app import app
from dmd_pipeline.utils import REPO_ROOT

TEXT_A = "This film was a total waste of time."
TEXT_B = "I loved every minute of it, what a wonderful surprise."


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny_first_run")


def _clip(media: MediaFactory, folder: Path, name: str, text: str = TEXT_A) -> Path:
    """A short espeak wav with a .txt sidecar transcript (no ASR needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{name}.wav"
    dst.write_bytes(media.speech_wav(text).read_bytes())
    dst.with_suffix(".txt").write_text(text)
    return dst


def _rows(path: Path, delimiter: str = ",") -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def _analyze(*args: str) -> object:
    return CliRunner().invoke(app, ["analyze", *args])


# ---- (1) what "done" means; tables rebuilt from every result ------------------------------------------
def test_rerun_with_another_transcript_reanalyses(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    clip = _clip(media, tmp_path / "in", "talk")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT_A)
    b.write_text(TEXT_B)
    out = tmp_path / "out"
    base = [str(clip), "-m", str(tiny_model), "-o", str(out), "--asr", "none"]
    res = _analyze(*base, "--transcript", str(a))
    assert res.exit_code == 0, res.output
    assert json.loads((out / "talk.json").read_text())["segments"][0]["text"].startswith("This film")
    res = _analyze(*base, "--transcript", str(b))
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "talk.json").read_text())
    assert doc["segments"][0]["text"].startswith("I loved"), "the old result was returned"
    assert "re-analysed: the transcript changed" in res.output
    assert doc["options"]["transcript"]["path"] == str(b) and validate_result(doc) == []
    # the same options again: kept, and the display says why
    mtime = (out / "talk.json").stat().st_mtime_ns
    res = _analyze(*base, "--transcript", str(b))
    assert res.exit_code == 0 and (out / "talk.json").stat().st_mtime_ns == mtime
    assert "already done" in res.output


def test_rerun_with_another_asr_or_model_reanalyses(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    clip = _clip(media, tmp_path / "in", "talk")  # the sidecar transcript is used whatever --asr says
    out = tmp_path / "out"
    res = _analyze(str(clip), "-m", str(tiny_model), "-o", str(out), "--asr", "none")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "talk.json").read_text())["options"]["asr"] == "none"
    res = _analyze(str(clip), "-m", str(tiny_model), "-o", str(out), "--asr", "pocketsphinx")
    assert res.exit_code == 0, res.output
    assert "--asr changed (none -> pocketsphinx)" in res.output
    assert json.loads((out / "talk.json").read_text())["options"]["asr"] == "pocketsphinx"
    other = make_tiny_model(tmp_path / "other_model", seed=1)
    res = _analyze(str(clip), "-m", str(other), "-o", str(out), "--asr", "pocketsphinx")
    assert res.exit_code == 0, res.output
    assert "the models changed" in res.output
    assert json.loads((out / "talk.json").read_text())["options"]["models"][0]["path"] == str(other)


def test_summary_and_index_list_every_result_in_the_folder(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    a = _clip(media, tmp_path / "in", "first")
    b = _clip(media, tmp_path / "in", "second", TEXT_B)
    out = tmp_path / "out"
    for clip in (a, b):  # one by one into the same folder
        res = _analyze(str(clip), "-m", str(tiny_model), "-o", str(out), "--asr", "none", "--report")
        assert res.exit_code == 0, res.output
    rows = _rows(out / "summary.csv")
    assert sorted(Path(r["file"]).name for r in rows) == ["first.wav", "second.wav"]
    assert all(r["status"] == "ok" for r in rows)
    index = (out / "index.html").read_text()
    assert 'href="first.html"' in index and 'href="second.html"' in index


# ---- (2) fail fast, doctor ------------------------------------------------------------------------
def test_bad_inputs_fail_before_any_model_loads(
    tmp_path: Path, media: MediaFactory, tiny_model: Path, monkeypatch
) -> None:
    import dmd_pipeline.analysis.registry as registry

    def boom(*a, **k):
        raise AssertionError("models loaded although no input is readable")

    monkeypatch.setattr(registry, "load_models", boom)
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(media.text_as_mp4().read_bytes())
    table = tmp_path / "labels.csv"
    table.write_text("file,label\na.mp4,1\n")
    res = _analyze(str(bad), str(table), "-m", str(tiny_model), "-o", str(tmp_path / "out"))
    assert res.exit_code == 1, res.output
    errors = {Path(r["file"]).name for r in _rows(tmp_path / "out" / "errors.csv")}
    assert errors == {"notes.mp4", "labels.csv"}


def test_missing_ffmpeg_is_a_usage_error_with_the_install_command(
    tmp_path: Path, tiny_model: Path, monkeypatch
) -> None:
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing_here"))
    monkeypatch.delenv("DMD_FFMPEG", raising=False)
    monkeypatch.delenv("DMD_FFPROBE", raising=False)
    res = _analyze(str(clip), "-m", str(tiny_model), "-o", str(tmp_path / "out"))
    assert res.exit_code == 2, res.output
    assert "ffmpeg" in res.output and "apt-get install ffmpeg" in res.output
    res = CliRunner().invoke(app, ["doctor"])
    assert res.exit_code == 1 and "FAIL" in res.output and "apt-get install ffmpeg" in res.output


def test_info_and_doctor_check_the_environment() -> None:
    res = CliRunner().invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    names = {c["name"] for c in json.loads(res.output)["checks"]}
    assert {"ffmpeg", "ffprobe", "cache folder", "device", "threads"} <= names
    assert any(n.startswith("text encoder model") for n in names)
    res = CliRunner().invoke(app, ["doctor", "--json"])
    doc = json.loads(res.output)
    assert res.exit_code == (0 if doc["ok"] else 1)
    assert any("sha256 ok" in c["detail"] for c in doc["checks"])


# ---- (3) conventions --------------------------------------------------------------------------------
def test_version_short_help_and_completion() -> None:
    from dmd_pipeline import __version__

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    for cmd in (["-h"], ["analyze", "-h"], ["extract", "-h"], ["train", "-h"], ["evaluate", "-h"]):
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code == 0, (cmd, res.output)
    assert "--install-completion" in CliRunner().invoke(app, ["-h"]).output


def test_same_flags_on_every_command(tmp_path: Path) -> None:
    cmd = typer_main()
    by_name = {name: {o: p for p in c.params for o in p.opts} for name, c in cmd.commands.items()}
    for name in ("analyze", "extract"):
        assert "-j" in by_name[name] and "--workers" in by_name[name], name
    for name in ("analyze", "train", "evaluate"):
        dev = by_name[name]["--device"]
        assert str(getattr(dev.default, "value", dev.default)) == "auto", name
        res = CliRunner().invoke(app, [name, "--device", "gpu"])
        assert res.exit_code == 2 and "auto" in res.output and "mps" in res.output, (name, res.output)
    for name in ("analyze", "extract", "train", "evaluate"):
        assert "-v" in by_name[name] and "-q" in by_name[name], name


def typer_main():
    import typer

    return typer.main.get_command(app)


def test_paths_under_a_symlink_are_kept_as_given(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    real = tmp_path / "real"
    _clip(media, real, "talk")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    out = tmp_path / "out"
    res = _analyze(str(link), "-m", str(tiny_model), "-o", str(out), "--asr", "none")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "talk.json").read_text())["file"] == str(link / "talk.wav")
    assert _rows(out / "summary.csv")[0]["file"] == str(link / "talk.wav")


def test_two_items_get_a_train_and_a_valid_split() -> None:
    from dmd_pipeline.data.labels import deterministic_splits

    assert sorted(deterministic_splits(["clip_a", "clip_b"]).values()) == ["train", "valid"]


# ---- (4) outputs ----------------------------------------------------------------------------------
def test_formats_stdout_and_warnings(tmp_path: Path, media: MediaFactory, tiny_model: Path) -> None:
    clip = _clip(media, tmp_path / "in", "talk")
    out = tmp_path / "out"
    args = [str(clip), "-m", str(tiny_model), "-o", str(out), "--asr", "none", "--format", "all"]
    res = _analyze(*args, "--stdout")
    assert res.exit_code == 0, res.output
    for ext in ("json", "csv", "tsv", "srt", "vtt"):
        assert (out / f"talk.{ext}").is_file(), ext
    doc = json.loads((out / "talk.json").read_text())
    assert json.loads(res.stdout.strip().splitlines()[0])["headline"] == doc["headline"]  # jq-ready stdout
    rows = _rows(out / "talk.csv")
    assert rows[0]["file"] == str(clip)
    assert all(len(r["score"].split(".")[-1]) <= 4 and len(r["start"].split(".")[-1]) <= 3 for r in rows)
    assert _rows(out / "talk.tsv", "\t")[0]["text"] == rows[0]["text"]
    srt = (out / "talk.srt").read_text()
    assert srt.startswith("1\n00:00:0") and " --> " in srt and "tiny_first_run:" in srt
    assert (out / "talk.vtt").read_text().startswith("WEBVTT\n\n")
    # the result's warnings reach the console (a text model fed zeros for audio/vision)
    assert all(w in res.stderr for w in doc["warnings"])
    bad = _analyze(*args[:-1], "srt,xml")
    assert bad.exit_code == 2 and "unknown format 'xml'" in bad.output


def test_to_pandas_plot_and_dir(tmp_path: Path) -> None:
    import dmd_pipeline

    public = set(dir(dmd_pipeline))
    assert {"analyze", "load_model", "AnalysisResult"} <= public and "os" not in public
    r = sample_result()
    seg = r.to_pandas()
    assert list(seg["start"]) == [s.start for s in r.segments] and "file" in seg.columns
    words = r.to_pandas("words")
    assert len(words) == sum(len(s.words) for s in r.segments)
    cues = r.to_pandas("cues")
    assert list(cues["time"]) == r.cues.times
    fig = r.plot(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0 and fig.axes
    assert r.to_srt().startswith("1\n") and r.to_vtt().startswith("WEBVTT")


# ---- (5) cold start, (6) live feedback ----------------------------------------------------------------
def _fresh(code: str, env: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter (an env value of None removes the variable); its stdout."""
    full = {**os.environ, **(env or {})}
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={k: v for k, v in full.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_import_and_help_stay_light_and_numba_caches_persist(tmp_path: Path) -> None:
    heavy = ["torch", "numpy", "librosa", "transformers", "mediapipe", "rich.progress", "pandas"]
    code = (
        "import sys, os, dmd_pipeline.cli.app as a\n"
        f"print([m for m in {heavy!r} if m in sys.modules]); print(os.environ['NUMBA_CACHE_DIR'])"
    )
    lines = _fresh(code, {"DMD_CACHE_DIR": str(tmp_path), "NUMBA_CACHE_DIR": None}).splitlines()
    assert lines[0] == "[]", f"dmd --help imports {lines[0]}"
    assert lines[1] == str(tmp_path / "numba")
    out = _fresh("import os, dmd_pipeline; print(os.environ['GOMP_SPINCOUNT'])", {"GOMP_SPINCOUNT": None})
    assert out.strip().isdigit() and int(out) <= 100_000  # OpenMP threads do not spin for long


def test_model_file_hashes_are_not_recomputed_in_a_fresh_process(tmp_path: Path) -> None:
    code = (
        "import dmd_pipeline.model_files as mf, dmd_pipeline.utils as u\n"
        "n = [0]\norig = mf.sha256_file\n"
        "def counted(p, *a, **k):\n    n[0] += 1\n    return orig(p, *a, **k)\n"
        "mf.sha256_file = counted\nmf.text_encoder_dir()\nprint(n[0])"
    )
    env = {"DMD_CACHE_DIR": str(tmp_path)}
    assert int(_fresh(code, env)) > 0  # the first process hashes
    assert int(_fresh(code, env)) == 0  # the next one trusts the stamp (same size and mtime)


def test_plain_log_lines_under_a_pipe(tmp_path: Path, media: MediaFactory, tiny_model: Path) -> None:
    clip = _clip(media, tmp_path / "in", "talk")
    res = _analyze(str(clip), "-m", str(tiny_model), "-o", str(tmp_path / "out"), "--asr", "none", "-v")
    assert res.exit_code == 0, res.output
    for line in (
        "checking 1 file(s)",
        "loading the models",
        "talk.wav: analysing",
        "loading the text encoder",
        "talk.wav: transcript",
        "[1/1]",
    ):
        assert line in res.stderr, line
    quiet = _analyze(
        str(clip), "-m", str(tiny_model), "-o", str(tmp_path / "out"), "--asr", "none", "-q", "--force"
    )
    assert quiet.exit_code == 0 and quiet.output == ""


# ---- (7) report -----------------------------------------------------------------------------------
def test_report_axes_edges_and_key_frames(tmp_path: Path) -> None:
    from dmd_pipeline.analysis import report

    # a 0.025 degree wobble is drawn on the head-pose range, not stretched into a cliff
    assert report.cue_range("head_yaw", [16.0, 16.025]) == (-45.0, 45.0)
    assert report.cue_range("f0", [120.0, 480.0]) == (50.0, 480.0)  # widened to the data, never clipped
    r = sample_result()
    r.modalities.used, r.modalities.zero_filled = ["text"], ["audio", "vision"]
    assert report.fed_edges(r) == [] and report.plot_edges(r, tmp_path / "e.png") is None
    r.modalities.used = ["text", "audio"]
    assert report.fed_edges(r) == ["A->L", "L->A"]
    assert report.plot_edges(r, tmp_path / "e.png") is not None
    assert ".frames{display:flex" in report._CSS and "nowrap" in report._CSS  # key frames in one row


def test_default_log_shows_loading_and_warnings_but_not_every_stage(capsys) -> None:
    import logging

    from dmd_pipeline.cli.common import setup_logging

    setup_logging()
    log = logging.getLogger("dmd_pipeline.pipeline")
    log.info("%s: %s", "a.wav", "acoustic")
    log.info("loading the text encoder")
    logging.getLogger("dmd_pipeline.batch").warning("something odd")
    err = capsys.readouterr().err
    assert "loading the text encoder" in err and "something odd" in err and "a.wav: acoustic" not in err
    setup_logging(verbose=True)
    log.info("%s: %s", "a.wav", "acoustic")
    assert "a.wav: acoustic" in capsys.readouterr().err
    setup_logging(quiet=True)
    log.info("loading the text encoder")
    assert capsys.readouterr().err == ""


def test_metric_tables_use_percentages_like_the_docs() -> None:
    from rich.console import Console

    from dmd_pipeline.cli.tables import print_metrics

    console = Console(record=True, width=120)
    print_metrics({"test": {"Non0_acc_2": 0.8532, "Mult_acc_7": 0.4, "MAE": 0.71234, "Corr": 0.8}}, console)
    text = console.export_text()
    assert "85.3 %" in text and "40.0 %" in text and "0.7123" in text and "0.8532" not in text


def test_text_encoder_without_transformers_matches_transformers(monkeypatch) -> None:
    """The bundled MiniLM runs in plain torch (no transformers import on the analyze path): same tokens,
    same word ids, same features to float rounding, same config hash (the feature cache stays valid)."""
    import numpy as np

    import dmd_pipeline.extractors.text as text

    utts = [
        ["Now", "at", "the", "title", "of", "the", "movie", "says", "it", "all."],
        ["naïve", "café", "x" * 40],
    ]
    monkeypatch.setattr(text, "_CACHE", {})
    lite = text.TextEncoder()
    assert type(lite.model).__name__ == "LiteBert"
    got = lite.encode_batch(utts, max_len=8)  # truncation included
    monkeypatch.setenv("DMD_TEXT_BACKEND", "transformers")
    monkeypatch.setattr(text, "_CACHE", {})
    ref_enc = text.TextEncoder()
    assert type(ref_enc.model).__name__ == "BertModel"
    ref = ref_enc.encode_batch(utts, max_len=8)
    assert lite.config_hash() == ref_enc.config_hash() and lite.dim == ref_enc.dim
    for a, b in zip(got, ref, strict=True):
        assert (a.input_ids == b.input_ids).all() and (a.word_index == b.word_index).all()
        assert a.truncated == b.truncated and a.n_words == b.n_words
        assert np.abs(a.features - b.features).max() < 1e-4


@pytest.mark.shared
def test_extract_two_clips_gives_train_and_valid_and_logs_progress(
    shared_clips: Path, tmp_path: Path
) -> None:
    from dmd_pipeline.data.mmsa import load_mmsa_pickle

    src = tmp_path / "two"
    src.mkdir()
    for name in ("1001_DFA_ANG_XX.flv", "1001_DFA_HAP_XX.flv"):
        (src / name).symlink_to(shared_clips / name)
    (src / "labels.csv").write_text("file,label\n1001_DFA_ANG_XX.flv,anger\n1001_DFA_HAP_XX.flv,happy\n")
    out = tmp_path / "feats"
    res = CliRunner().invoke(
        app,
        ["extract", str(src), "--labels", str(src / "labels.csv"), "--out", str(out), "--asr", "none",
         "--cache-dir", str(tmp_path / "cache")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = load_mmsa_pickle(out / "aligned_50.pkl")
    assert len(data["train"]["id"]) == 1 and len(data["valid"]["id"]) == 1  # dmd train can run on it
    assert "extract: 2/2" in res.stderr and "empty" not in res.stderr  # a plain progress line in a log


def test_info_doctor_selftest_take_quiet_and_verbose() -> None:
    from typer.testing import CliRunner

    from dmd_pipeline.cli.app import app

    runner = CliRunner()
    for cmd in (["info", "-q"], ["doctor", "-q"], ["info", "-v"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0, (cmd, res.output)
    assert runner.invoke(app, ["doctor", "-q"]).output.strip() == ""  # all checks pass: nothing to say
    assert "checks" in runner.invoke(app, ["info", "-v"]).output
    assert runner.invoke(app, ["selftest", "-h"]).output.count("--quiet") == 1
