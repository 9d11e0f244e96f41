"""An output folder that is read-only, full, not a folder, or locked: one line, exit 2, earlier results
untouched, no temp files left (``OSError`` injected: as root, permissions do not stop writes)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fault_helpers import no_temp_files, silent_folder
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.utils import LOCK_NAME, output_lock


def _analyze(src: Path, out: Path, model: Path, *extra: str):
    args = ["analyze", str(src), "--model", str(model), "--out", str(out), "--asr", "none", "-q", *extra]
    return CliRunner().invoke(app, args)


def _results(out: Path) -> dict[str, bytes]:
    """Every file of a run (the lock file aside: it records its holder)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and p.name != LOCK_NAME}


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert "Traceback" not in output and len(lines) == 1, output
    return lines[0]


@pytest.fixture
def done_run(tmp_path: Path, media, tiny_model) -> tuple[Path, Path, dict[str, bytes]]:
    src = tmp_path / "in"
    silent_folder(media, src, ["a.wav", "b.wav", "c.wav"])
    out = tmp_path / "out"
    res = _analyze(src, out, tiny_model)
    assert res.exit_code == 0, res.output
    return src, out, _results(out)


def test_read_only_output_folder(done_run, tiny_model, monkeypatch) -> None:
    src, out, before = done_run
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):  # what a read-only mount answers
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and str(Path(path).resolve()).startswith(str(out.resolve())):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    res = _analyze(src, out, tiny_model, "--force")
    assert res.exit_code == 2
    line = _one_error_line(res.output)
    assert line == f"Error: {out}: cannot write in the output folder: Read-only file system (EROFS)"
    monkeypatch.undo()
    assert _results(out) == before


def test_full_output_folder(tmp_path: Path, media, tiny_model, monkeypatch) -> None:
    """ENOSPC on the second result: the run stops with the path and the cause; the first result stays."""
    src = tmp_path / "in"
    silent_folder(media, src, ["a.wav", "b.wav", "c.wav"])
    out = tmp_path / "out"
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).name.startswith(".b.json."):
            calls.append(name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    res = _analyze(src, out, tiny_model)
    assert res.exit_code == 2 and calls
    line = _one_error_line(res.output)
    assert line == (
        f"Error: {out / 'b.json'}: cannot write the result: No space left on device (ENOSPC); "
        "results written before are kept"
    )
    assert (out / "a.json").is_file() and not (out / "b.json").exists() and not (out / "c.json").exists()
    assert not no_temp_files(out)
    monkeypatch.undo()
    res = _analyze(src, out, tiny_model)  # space again: the run resumes after a.wav
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "b.json", "c.json"]


def test_output_path_that_cannot_be_a_folder(tmp_path: Path, media, tiny_model) -> None:
    src = tmp_path / "in"
    silent_folder(media, src, ["a.wav"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _analyze(src, blocker / "out", tiny_model)
    assert res.exit_code == 2
    assert _one_error_line(res.output) == (
        f"Error: {blocker / 'out'}: cannot create the output folder: Not a directory (ENOTDIR)"
    )


def test_a_locked_output_folder_is_refused(done_run, tiny_model) -> None:
    src, out, before = done_run
    with output_lock(out):  # another run holds it
        res = _analyze(src, out, tiny_model, "--force")
    assert res.exit_code == 2
    assert _one_error_line(res.output) == (
        f"Error: {out}: in use by another dmd run (pid {os.getpid()}); wait for it to finish or choose "
        "another --out"
    )
    assert _results(out) == before
