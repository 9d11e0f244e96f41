"""Results stay byte-identical: fresh `dmd analyze` JSON (and `dmd evaluate --json`) against committed goldens.

The goldens were written by the code before a behaviour-preserving refactor (``tests/golden/regenerate.py``;
a change that means to alter the output regenerates them in a commit of its own). Timings, ``created_at``,
``mtime_ns``, model ``digest`` and absolute path prefixes are normalised away (see the script's docstring); everything else must match to
the byte. The demo clip is always covered; the real clips and RAVDESS videos need ../shared.
``dmd evaluate`` of both bundled models (about 2 minutes of extraction on 2 cores) runs only with
``DMD_GOLDEN_EVALUATE=1``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parent / "golden" / "regenerate.py"
_spec = importlib.util.spec_from_file_location("golden_regenerate", _SCRIPT)
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)  # type: ignore[union-attr]


def _need_tools() -> None:
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (needed to make the demo clip)")


def test_analyze_outputs_match_goldens() -> None:
    _need_tools()
    shared = golden.shared_root()
    files = golden.inputs(shared)
    problems = golden.compare(golden.ANALYZE_DIR, golden.analyze_outputs(files, shared))
    assert not problems, "\n\n".join(problems)


def test_evaluate_outputs_match_goldens() -> None:
    if os.environ.get("DMD_GOLDEN_EVALUATE") != "1":
        pytest.skip(
            "set DMD_GOLDEN_EVALUATE=1 to compare `dmd evaluate --json` of both bundled models (~2 min)"
        )
    shared = golden.shared_root()
    if shared is None:
        pytest.skip("../shared is absent (the evaluation label files live there)")
    problems = golden.compare(golden.EVALUATE_DIR, golden.evaluate_outputs(shared))
    assert not problems, "\n\n".join(problems)
