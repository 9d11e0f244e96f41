"""What a result was made with (its ``options`` record) and whether a stored result still answers a run.

A result is "done" for a re-run only when it was made with the same ASR setting, the same transcript
(path and content) and the same models (folder, config and weights file identity). The record is cheap to
compute: the small config files are hashed, the weights are identified by size and modification time, so
nothing large is read twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Files of a model folder whose content identifies it (hashed: they are small).
_HASHED = ("config.json", "meta.json")
#: Large files identified by size and mtime.
_STATTED = ("model.safetensors",)


def model_identity(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"path", "digest"}`` of a model folder (digest over its config and its weights' size/mtime)."""
    d = Path(model_dir)
    h = hashlib.sha256()
    for name in _HASHED:
        p = d / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes())
    for name in _STATTED:
        p = d / name
        if p.is_file():
            st = p.stat()
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return {"path": os.path.abspath(d), "digest": h.hexdigest()[:16]}


def transcript_identity(transcript: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """``{"path", "sha256"}`` of a transcript file, ``{"text_sha256"}`` of literal text, or None."""
    if transcript is None:
        return None
    p = Path(transcript)
    try:
        if p.is_file():
            return {"path": os.path.abspath(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()[:16]}
    except (OSError, ValueError):  # a long literal text is no valid path
        pass
    return {"text_sha256": hashlib.sha256(str(transcript).encode("utf-8")).hexdigest()[:16]}


def result_options(
    asr: str, transcript: str | os.PathLike[str] | None, model_dirs: Sequence[str | os.PathLike[str]]
) -> dict[str, Any]:
    """The ``options`` record of a result: ASR engine, transcript identity, model identities (in order)."""
    return {
        "asr": str(asr),
        "transcript": transcript_identity(transcript),
        "models": [model_identity(d) for d in model_dirs],
    }


def options_difference(stored: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """Why a stored result does not answer the current run (None: it does).

    A result without a record (written before records existed) is taken as done.
    """
    if not stored:
        return None
    if stored.get("asr") != current.get("asr"):
        return f"--asr changed ({stored.get('asr')} -> {current.get('asr')})"
    if stored.get("transcript") != current.get("transcript"):
        return "the transcript changed"
    old = [m.get("path") for m in stored.get("models") or []]
    new = [m.get("path") for m in current.get("models") or []]
    if old != new:
        return f"the models changed ({', '.join(map(str, old)) or 'none'} -> {', '.join(map(str, new))})"
    if stored.get("models") != current.get("models"):
        return "a model's files changed"
    return None
