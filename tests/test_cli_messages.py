"""Issue 17: messages that mean something.

One usage-error style everywhere, clean help placeholders, ``-q`` that still names failures, a heartbeat
under a pipe, few warnings per file on the console, Ctrl-C that says what is done and left, one line for a
closed or full stdout, and an image given as a clip. One test per defect; each failed before the fix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media_factory import MediaFactory, session_factory
from test_analyze_cli import make_tiny_model
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app

COMMANDS = ("analyze", "extract", "train", "evaluate", "selftest", "info", "doctor", "serve")
TEXT = "I loved every minute of it."


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny_messages")


@pytest.mark.parametrize("command", COMMANDS)
def test_parser_usage_errors_are_one_error_line(command: str) -> None:
    """Before: a usage block, a 'Try ...' line and a framed box (three styles besides ``Error: ...``)."""
    res = CliRunner().invoke(app, [command, "--no-such-option"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: No such option: --no-such-option"), res.output


def test_bad_choice_is_one_error_line() -> None:
    res = CliRunner().invoke(app, ["analyze", "x.mp4", "--asr", "nope"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: Invalid value for '--asr': Value error, 'nope' is not one of 'whisper', 'pocketsphinx', "
        "'none'. (see 'dmd analyze -h')"
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_clean_placeholders(command: str) -> None:
    """Before: ``<bool>`` beside every flag, ``{paths}...`` and ``<list[Path]>``."""
    res = CliRunner().invoke(app, [command, "-h"], env={"COLUMNS": "200"}, terminal_width=200)
    assert res.exit_code == 0
    for junk in ("<bool>", "list[", "{"):
        assert junk not in res.output, f"{command} -h shows {junk!r}:\n{res.output}"


def test_quiet_still_prints_the_failures(tmp_path: Path, media: MediaFactory, tiny_model: Path) -> None:
    """Before: ``dmd analyze -q`` printed nothing when files failed (exit 1)."""
    bad = media.text_as_mp4()
    res = CliRunner().invoke(
        app, ["analyze", str(bad), "--model", str(tiny_model), "--out", str(tmp_path / "o"), "-q"]
    )
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"✗ {bad.name}: "), res.output


def test_an_image_without_the_face_channel_is_a_clear_error(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """Before: ``photo.png`` was "ok" with duration 0 and no score. A photo is read by the face channel only
    (test_face_result); without it, it is a failed row that says why."""
    photo = tmp_path / "photo.png"
    shutil.copy(media.astronaut_png(), photo)
    out = tmp_path / "o"
    args = ["analyze", str(photo), "--model", str(tiny_model), "--out", str(out), "--no-face"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    assert "photo.png: media: a still image (png), not a video or audio file" in res.output
    assert "--no-face" in res.output
    assert not (out / "photo.json").exists()


def test_warnings_on_the_console_are_capped() -> None:
    """Before: every warning of every file was printed (22 for one 20-minute file)."""
    from dmd_pipeline.analysis.batch import FileOutcome
    from dmd_pipeline.cli.analyze import MAX_PRINTED_WARNINGS, _warning_lines

    oc = FileOutcome("/x/talk.mp4", "talk", "ok", warnings=[f"w{i}" for i in range(7)])
    lines = _warning_lines(oc)
    assert len(lines) == MAX_PRINTED_WARNINGS + 1
    assert lines[-1].endswith(f"{7 - MAX_PRINTED_WARNINGS} more warning(s) in talk.json")


def test_heartbeat_under_a_pipe() -> None:
    """Before: a long file under a pipe printed nothing for minutes (the period is 30 s; 0.1 s here)."""
    import io

    from rich.console import Console

    from dmd_pipeline.cli.analyze import _Heartbeat

    buf = io.StringIO()
    counts = {"done": 2, "total": 5}
    with _Heartbeat(Console(file=buf, width=200), counts, every_s=0.1) as beat:
        beat.note("talk.mp4: transcript")
        time.sleep(0.5)
        lines = buf.getvalue().splitlines()
        beat.touch()  # something was printed: the heartbeat waits a whole period again
        n = len(buf.getvalue().splitlines())
        time.sleep(0.05)
        assert len(buf.getvalue().splitlines()) == n
    assert len(lines) >= 2
    assert lines[0].startswith("analyze: still working on talk.mp4 (transcript), 2/5 done, ")


def test_heartbeat_through_the_cli(tmp_path: Path, media: MediaFactory, tiny_model: Path) -> None:
    clip = tmp_path / "talk.wav"
    shutil.copy(media.speech_wav(TEXT), clip)
    res = CliRunner().invoke(
        app,
        ["analyze", str(clip), "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--asr", "none"],
        env={"DMD_HEARTBEAT_S": "0.01"},
    )
    assert res.exit_code == 0, res.output
    assert "analyze: still working on talk.wav" in res.output and "0/1 done" in res.output


def _dmd(*args: str, **kw) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("dmd")
    return subprocess.Popen([str(exe), *args], text=True, start_new_session=True, **kw)


@pytest.mark.slow
def test_ctrl_c_says_what_is_done_and_left_and_nothing_else(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """Before: no "interrupted" line, and a resource_tracker "leaked semaphore" warning (-j 2)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(media.speech_wav(TEXT), src / f"c{i}.wav")
    log = tmp_path / "stderr.txt"
    with log.open("w") as fh:
        proc = _dmd("analyze", str(src), "--model", str(tiny_model), "--out", str(tmp_path / "o"), "-j", "2",
                    stdout=subprocess.DEVNULL, stderr=fh)  # fmt: skip
        deadline = time.monotonic() + 240
        while "[1/4]" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on a terminal does: the whole process group
        assert proc.wait(timeout=120) == 130
    text = log.read_text()
    last = text.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and " done, " in last and last.endswith("left (a re-run resumes)")
    done = int(last.split()[1])
    assert 1 <= done < 4 and f"{4 - done} left" in last
    assert "Warning" not in text and "leaked" not in text and "Traceback" not in text, text


def test_full_stdout_is_one_line(tmp_path: Path, media: MediaFactory, tiny_model: Path) -> None:
    """Before: ``--stdout`` to a full device printed a traceback."""
    clip = tmp_path / "talk.wav"
    shutil.copy(media.speech_wav(TEXT), clip)
    out = tmp_path / "o"
    args = ("analyze", str(clip), "--model", str(tiny_model), "--out", str(out), "--asr", "none", "--stdout")
    with open("/dev/full", "w") as full:
        proc = _dmd(*args, stdout=full, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("Error: cannot write to stdout: No space left on device"), err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert (out / "talk.json").is_file()  # the results are written


def test_loaded_model_prints_in_one_line(tiny_model: Path) -> None:
    """Before: printing a loaded model dumped the whole torch module."""
    from dmd_pipeline.analysis.registry import load_model

    text = repr(load_model(str(tiny_model)))
    assert "\n" not in text and text.startswith("LoadedModel(name=") and "task='regression'" in text


@pytest.mark.slow
def test_ctrl_c_in_extract_says_what_is_done_and_left(tmp_path: Path, media: MediaFactory) -> None:
    """Before: ``dmd extract`` stopped on Ctrl-C with no line at all."""
    src, out = tmp_path / "src", tmp_path / "o"
    src.mkdir()
    for i in range(6):
        shutil.copy(media.speech_wav(TEXT), src / f"c{i}.wav")
    (src / "labels.csv").write_text("file,label\n" + "".join(f"c{i}.wav,{i % 2}\n" for i in range(6)))
    log = tmp_path / "stderr.txt"
    with log.open("w") as fh:
        proc = _dmd("extract", str(src), "--labels", str(src / "labels.csv"), "--out", str(out), "-j", "2",
                    "--asr", "none", "--cache-dir", str(tmp_path / "cache"),
                    stdout=subprocess.DEVNULL, stderr=fh)  # fmt: skip
        deadline = time.monotonic() + 240
        while not any(out.glob("items/*.npz")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    text = log.read_text()
    last = text.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and last.endswith("left (a re-run resumes)"), text
    done = int(last.split()[1])
    assert 1 <= done < 6 and f"{6 - done} left" in last
    assert "Warning" not in text and "leaked" not in text and "Traceback" not in text, text
