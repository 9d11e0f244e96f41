"""faster-whisper, imported once per process under one lock, before any of its submodules is used.

Why: the pipeline's stages run in threads, and three of them reach faster-whisper first through different
submodules: speech recognition (``faster_whisper.WhisperModel``), language identification and voice activity
(``faster_whisper.tokenizer``, ``faster_whisper.vad``) and the Whisper-base layer features
(``faster_whisper.feature_extractor``). Importing a submodule imports the package's ``__init__``, which imports
the other submodules; two threads starting from two ends at once take Python's per-module import locks in
opposite orders, and Python breaks the cycle by raising ``_DeadlockError`` ("deadlock detected by
_ModuleLock('faster_whisper.feature_extractor')") in one of them, which failed an analysis in a test run.
Every use goes through :func:`faster_whisper_module` first; once the package is imported, later ``from
faster_whisper.x import y`` statements only read ``sys.modules``.
"""

from __future__ import annotations

import threading
from types import ModuleType

_LOCK = threading.Lock()


def faster_whisper_module() -> ModuleType:
    """The ``faster_whisper`` package with the submodules the pipeline uses, imported (once) under a lock."""
    with _LOCK:
        import faster_whisper
        import faster_whisper.feature_extractor
        import faster_whisper.tokenizer
        import faster_whisper.vad  # noqa: F401

    return faster_whisper
