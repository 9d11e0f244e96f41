"""Toy task functions for the executor tests (imported by spawned workers: keep them top-level and cheap)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def init(tag: str) -> None:
    """A cheap initializer."""
    os.environ["FAULT_TASK_TAG"] = tag


def bad_init(tag: str) -> None:
    """An initializer that fails, like a model that does not load."""
    raise RuntimeError(f"cannot load the model ({tag})")


def work(item: tuple[str, object]) -> tuple[str, int]:
    """``(kind, arg)`` -> ``(result, worker pid)``; kinds: ok, die, flaky, hang, hog, raise."""
    kind, arg = item
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "flaky":  # dies on the first attempt only
        marker = Path(str(arg))
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        while True:
            time.sleep(1)
    if kind == "hog":
        hoard = [bytearray(100 * 2**20) for _ in range(int(arg))]  # noqa: F841 (resident: zero-filled)
        time.sleep(30)
    if kind == "raise":
        raise ValueError(f"bad item {arg}")
    return f"{kind}:{arg}", os.getpid()


def driver_main(out: str) -> None:
    """Run an executor whose two workers hang, write their pids to ``out``, then wait to be killed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dmd_pipeline.executor import LocalExecutor

    ex = LocalExecutor(work, 2, file_timeout=None)
    for _ in range(2):
        ex.submit(("hang", 0))
    deadline = time.monotonic() + 60
    while len(ex.live_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(out + ".part").write_text(" ".join(map(str, ex.live_pids())))
    os.replace(out + ".part", out)
    time.sleep(600)


if __name__ == "__main__":
    driver_main(sys.argv[1])
