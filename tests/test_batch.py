"""Batch analysis: discovery, naming, bad inputs, resume after a kill, summary.csv / errors.csv."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media_factory import MediaFactory, session_factory
from test_analyze_cli import make_tiny_model
from typer.testing import CliRunner

from dmd_pipeline.analysis.batch import collect_media, existing_result, output_names
from dmd_pipeline.analysis.result import validate_result
from dmd_pipeline.cli.app import app
from dmd_pipeline.errors import InputError
from dmd_pipeline.utils import REPO_ROOT

TEXTS = [
    "This film was a total waste of time.",
    "I loved every minute of it.",
    "The plot was fine but the acting was weak.",
    "What a wonderful surprise this movie was.",
]


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny_batch")


def _speech_folder(media: MediaFactory, folder: Path, n: int) -> list[Path]:
    """``n`` short espeak wavs, each with a .txt sidecar transcript (so no ASR is needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        dst = folder / f"clip{i}.wav"
        dst.write_bytes(media.speech_wav(TEXTS[i % len(TEXTS)]).read_bytes())
        dst.with_suffix(".txt").write_text(TEXTS[i % len(TEXTS)])
        out.append(dst)
    return out


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_collect_media_filters_and_dedups(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".hidden").mkdir(parents=True)
    for name in (
        "a.mp4",
        "b.WAV",
        "c.flv",
        "notes.txt",
        "img.png",
        ".d.mp4",
        "sub/e.mkv",
        "sub/.hidden/f.mp4",
    ):
        (tmp_path / name).write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.mp4").write_bytes(b"x")  # something inside our output folder is never picked up
    found = collect_media([tmp_path, tmp_path / "a.mp4"], out_dir=out)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.mp4", "b.WAV", "c.flv", "sub/e.mkv"]
    # an explicitly named file is taken whatever its extension
    assert collect_media([tmp_path / "notes.txt"]) == [(tmp_path / "notes.txt").resolve()]
    with pytest.raises(InputError, match="no such file"):
        collect_media([tmp_path / "missing.mp4"])


def test_output_names_unique_and_deterministic(tmp_path: Path) -> None:
    files = [
        tmp_path / "x" / "clip.mp4",
        tmp_path / "y" / "clip.mp4",
        tmp_path / "clip.wav",
        tmp_path / "o.mp4",
    ]
    names = output_names(files)
    assert len(set(names.values())) == 4
    assert names[tmp_path / "o.mp4"] == "o" and names[tmp_path / "clip.wav"] == "clip.wav"
    assert output_names(list(reversed(files))) == names
    assert output_names([tmp_path / "summary.mp4"])[tmp_path / "summary.mp4"] == "summary_clip"


@pytest.mark.slow
def test_bad_inputs_are_reported_and_others_finish(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    src = tmp_path / "in"
    good = _speech_folder(media, src, 1)[0]
    (src / "empty.mp4").write_bytes(media.zero_byte().read_bytes())
    (src / "text.mp4").write_bytes(media.text_as_mp4().read_bytes())
    out = tmp_path / "out"
    args = ["analyze", str(src), "--model", str(tiny_model), "--out", str(out), "--asr", "none", "--report"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    errors = {Path(r["file"]).name: r for r in _rows(out / "errors.csv")}
    assert set(errors) == {"empty.mp4", "text.mp4"}
    assert all(r["stage"] and r["reason"] for r in errors.values())
    summary = {Path(r["file"]).name: r for r in _rows(out / "summary.csv")}
    assert summary["empty.mp4"]["status"] == "failed" and summary["text.mp4"]["status"] == "failed"
    assert summary[good.name]["status"] == "ok" and summary[good.name]["label2"] in ("negative", "positive")
    doc = json.loads((out / f"{good.stem}.json").read_text())
    assert validate_result(doc) == []
    assert not (out / "empty.json").exists() and not (out / "text.json").exists()
    index = (out / "index.html").read_text()
    assert f'href="{good.stem}.html"' in index and (out / f"{good.stem}.html").is_file()

    # a corrupted result is redone; a valid one is kept; the failures are retried (and fail again)
    jp = out / f"{good.stem}.json"
    jp.write_text(jp.read_text()[:100])
    assert existing_result(jp, good) is None
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    assert validate_result(json.loads(jp.read_text())) == []
    assert len(_rows(out / "errors.csv")) == 2


def _run_cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dmd_pipeline.cli.app", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_killed_batch_resumes_with_one_result_per_file(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    files = _speech_folder(media, tmp_path / "in", 4)
    out = tmp_path / "out"
    args = ["analyze", str(tmp_path / "in"), "--model", str(tiny_model), "--out", str(out), "--asr", "none"]
    proc = _run_cli(args)
    deadline = time.monotonic() + 240
    try:
        while not list(out.glob("*.json")):
            assert proc.poll() is None, f"the run ended before writing a result: {proc.communicate()[0]}"
            assert time.monotonic() < deadline, "no result after 240 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    first = sorted(p.name for p in out.glob("*.json"))
    assert 1 <= len(first) <= len(files)
    before = {n: (out / n).stat().st_mtime_ns for n in first}

    proc = _run_cli([*args, "--workers", "2"])  # the re-run also exercises the worker pool
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    jsons = sorted(out.glob("*.json"))
    assert [p.stem for p in jsons] == sorted(f.stem for f in files)
    for p in jsons:
        doc = json.loads(p.read_text())
        assert validate_result(doc) == []
        assert Path(doc["file"]).name == f"{p.stem}.wav"
    for n, mtime in before.items():  # what the killed run finished was kept, not redone
        assert (out / n).stat().st_mtime_ns == mtime
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    rows = _rows(out / "summary.csv")
    assert sorted(Path(r["file"]).name for r in rows) == sorted(f.name for f in files)
    assert all(r["status"] == "ok" and r["n_segments"] for r in rows)
    assert _rows(out / "errors.csv") == []


def test_resumed_run_with_format_csv_writes_the_missing_timeline_csv(tmp_path: Path) -> None:
    """A file finished by a JSON-only run is skipped on a ``--format csv`` re-run, but still gets its CSV."""
    from test_result_schema import sample_result

    from dmd_pipeline.analysis.batch import BatchOptions, run_batch

    media_file = tmp_path / "talk.wav"
    media_file.write_bytes(b"not analysed again")
    out = tmp_path / "out"
    out.mkdir()
    result = sample_result()
    result.file = str(media_file.resolve())
    (out / "talk.json").write_text(result.to_json(), encoding="utf-8")
    outcome = run_batch([media_file.resolve()], BatchOptions(out_dir=out, fmt="csv"))
    assert [o.status for o in outcome.outcomes] == ["skipped"]
    rows = _rows(out / "talk.csv")
    # rounded to 4 decimals (issue 8: no 17-digit floats in CSV)
    assert [float(r["score"]) for r in rows] == pytest.approx([s.prediction.score for s in result.segments], abs=1e-4)


def test_corrupt_model_with_workers_is_a_one_line_usage_error(tmp_path: Path, tiny_model: Path) -> None:
    """With --workers the model loads in the workers: a corrupt file must still give exit 2 and one
    clear line (as with one worker), not a worker traceback per process and every file 'failed'."""
    import shutil

    bad = tmp_path / "bad_model"
    shutil.copytree(tiny_model, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    proc = _run_cli(
        ["analyze", str(tmp_path / "a.wav"), "--model", str(bad), "--workers", "2", "-o", str(tmp_path / "o")]
    )
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output
    assert "Traceback" not in output and "model.safetensors" in output
