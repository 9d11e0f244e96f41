"""Shared helpers: atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dmd_pipeline.utils import atomic_write_text


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_write_gives_umask_permissions_not_0600(tmp_path: Path) -> None:
    """Results are written through a temp file; they must end up as readable as a plain open() would make them."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    out = tmp_path / "result.json"
    atomic_write_text(out, "{}")
    assert out.read_text() == "{}"
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    out.chmod(0o640)  # replacing a file keeps its mode
    atomic_write_text(out, "[]")
    assert out.read_text() == "[]" and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_choose_threads_leaves_busy_cores_alone(monkeypatch) -> None:
    import os

    from dmd_pipeline import utils

    monkeypatch.delenv("DMD_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.0, 0.0))
    assert utils.choose_threads() == 4  # idle: every core
    assert utils.choose_threads(share=2) == 2  # two workers split the machine
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 0.0, 0.0))
    assert utils.choose_threads() == 2  # two cores busy elsewhere
    monkeypatch.setattr(os, "getloadavg", lambda: (11.0, 0.0, 0.0))
    assert utils.choose_threads() == 1  # never 0
    assert utils.choose_threads(3) == 3  # --threads wins
    monkeypatch.setenv("DMD_THREADS", "2")
    assert utils.choose_threads() == 2
