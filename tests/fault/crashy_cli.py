"""``dmd`` with fault injection in its workers: run as ``python crashy_cli.py analyze ...``.

Spawned workers import this file as their main module (``__mp_main__``), so the patch below is active in
every worker. It acts on the analysed file's name only:

* ``poison*``: the worker SIGKILLs itself (every attempt), like a crash in native code or the OOM killer;
* ``flaky*``: the worker SIGKILLs itself on the first attempt only (a marker file beside the media
  remembers it), so the retry on a fresh worker succeeds;
* ``hang*``: the worker sleeps forever (for ``--file-timeout``);
* ``hog*``: the worker allocates memory, 200 MiB every 50 ms, up to 6 GiB (for ``--max-rss``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import dmd_pipeline.analysis.analyze as _analyze

_real_analyze_clip = _analyze.analyze_clip


def _faulty_analyze_clip(path, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = Path(path).name
    if name.startswith("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("flaky"):
        marker = Path(path).with_name(f".{name}.crashed")
        if not marker.exists():
            marker.write_text("1")
            os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("hang"):
        while True:
            time.sleep(1)
    if name.startswith("hog"):
        hoard = []
        for _ in range(30):
            hoard.append(bytearray(200 * 2**20))  # zero-filled: resident at once
            time.sleep(0.05)
    return _real_analyze_clip(path, *args, **kwargs)


_analyze.analyze_clip = _faulty_analyze_clip

if __name__ == "__main__":
    from dmd_pipeline.cli.app import main

    sys.argv[0] = "dmd"
    main()
