"""Toy task functions for the Ray executor test (sent to the actors by value: see test_ray_engine)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def init(log: str) -> None:
    """The initializer: remember where each call is logged (one ``kind:arg`` line per call); in the
    environment, as the functions travel by value, each with its own copy of this module's globals."""
    os.environ["DMD_RAY_TASKS_LOG"] = log


def work(item: tuple[str, object]) -> tuple[str, int]:
    """``(kind, arg)`` -> ``(result, actor pid)``; kinds: ok, raise, die (always), flaky (first call)."""
    kind, arg = item
    with open(os.environ["DMD_RAY_TASKS_LOG"], "a", encoding="utf-8") as fh:
        fh.write(f"{kind}:{arg if kind != 'flaky' else 'x'}\n")
    if kind == "raise":
        raise ValueError(f"bad item {arg}")
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "flaky":
        marker = Path(str(arg))
        if not marker.exists():
            marker.write_text("1")
            os.kill(os.getpid(), signal.SIGKILL)
    return f"{kind}:{arg}", os.getpid()
