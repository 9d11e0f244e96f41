"""Helpers of the fault-injection suite: cheap media, CLI subprocesses, process-tree checks, polling.

Imported by the tests as ``fault_helpers`` (not from ``conftest``: two conftest modules share that name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:  # media_factory, make_synthetic_mmsa live one level up
    sys.path.insert(0, str(TESTS))

from media_factory import MediaFactory  # noqa: E402

from dmd_pipeline.utils import REPO_ROOT  # noqa: E402

FAULT_DIR = Path(__file__).resolve().parent
CRASHY_CLI = FAULT_DIR / "crashy_cli.py"  # `dmd` whose workers crash/hang/hog on files named so


def silent_folder(media: MediaFactory, folder: Path, names: list[str]) -> list[Path]:
    """Copies of a 1 s silent wav under ``names`` (the cheapest file a worker can analyse: no speech, so
    no text encoder; the result is ok with a null score)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = media.silence(1.0).read_bytes()
    out = []
    for n in names:
        (folder / n).write_bytes(src)
        out.append(folder / n)
    return out


def cli_env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def start_cli(args: list[str], script: Path | None = None) -> subprocess.Popen:
    """``dmd ARGS`` (or ``python SCRIPT ARGS``) as a subprocess in its own session, output captured."""
    cmd = [sys.executable, str(script)] if script else [sys.executable, "-m", "dmd_pipeline.cli.app"]
    return subprocess.Popen(
        [*cmd, *args],
        cwd=REPO_ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        with contextlib.suppress(OSError):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def worker_pids(pid: int) -> list[int]:
    """The dmd worker processes (multiprocessing spawn children) of a CLI process."""
    return [c for c in children(pid) if "multiprocessing.spawn" in cmdline(c) and "spawn_main" in cmdline(c)]


def wait_for(cond: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Poll ``cond`` every 50 ms until truthy (returned) or ``timeout`` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the process ended (rc {proc.returncode}) while waiting for {what}:\n{out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a CLI process and everything in its session (workers included), then reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
        proc.communicate(timeout=30)


def no_temp_files(folder: Path) -> list[Path]:
    """Leftover atomic-write temp files under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
