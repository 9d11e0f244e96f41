"""What a result was made with (its ``options`` record) and whether a stored result still answers a run.

A result is "done" for a re-run only when it was made from the same media content, with the same ASR
setting, the same transcript (the ``--transcript`` file or the sidecar beside the media: path and content)
and the same models (folder, config and weights file identity). The record is cheap to compute: the small
config and transcript files are hashed, the weights are identified by size and modification time, and the
media by its size and the sha256 of a bounded sample (:func:`media_identity`), so nothing large is read
twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dmd_pipeline.analysis.analysis_options import DEFAULT_FACE_FPS
from dmd_pipeline.extractors.language import check_asr_model
from dmd_pipeline.extractors.transcribe import find_sidecar

#: Files of a model folder whose content identifies it (hashed: they are small).
_HASHED = ("config.json", "meta.json")
#: Large files identified by size and mtime.
_STATTED = ("model.safetensors",)
#: Media up to this size are hashed whole; larger ones by :data:`_SAMPLE_BYTES` at the start, the middle
#: and the end (plus the size). Reading 3 MiB costs milliseconds where a whole hour of video would cost
#: seconds on every re-run; a change of length, or of the container's header/index (which every remux or
#: re-encode rewrites) is always seen.
_WHOLE_HASH_MAX = 8 << 20
_SAMPLE_BYTES = 1 << 20


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


def media_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size", "mtime_ns", "sha256", "hashed"}`` of a media file.

    ``hashed`` is ``"whole"`` (files up to 8 MiB) or ``"sample"`` (1 MiB at the start, middle and end, and
    the size): cheap on hour-long files. The modification time is recorded but not compared
    (:func:`options_difference`): a copied folder (``cp -r``, new mtimes) keeps its results; any change
    of size or of the sampled bytes redoes the file. An unreadable file gets ``{"error": reason}``.
    """
    p = Path(path)
    try:
        st = p.stat()
        h = hashlib.sha256()
        with p.open("rb") as fh:
            if st.st_size <= _WHOLE_HASH_MAX:
                hashed = "whole"
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            else:
                hashed = "sample"
                h.update(str(st.st_size).encode() + b"\0")
                for at in (0, (st.st_size - _SAMPLE_BYTES) // 2, st.st_size - _SAMPLE_BYTES):
                    fh.seek(at)
                    h.update(fh.read(_SAMPLE_BYTES))
    except OSError as exc:
        return {"error": exc.strerror or type(exc).__name__}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()[:16], "hashed": hashed}


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
    asr: str,
    transcript: str | os.PathLike[str] | None,
    model_dirs: Sequence[str | os.PathLike[str]],
    language: str = "auto",
    face_fps: float = DEFAULT_FACE_FPS,
    asr_model: str = "base",
) -> dict[str, Any]:
    """The ``options`` record of a result: ASR engine, ``--language``, ``--asr-model`` (the Whisper model that
    transcribes English), ``--face-fps`` (face frames the face model reads per second, 0: every frame),
    transcript identity, model identities (in order)."""
    return {
        "asr": str(asr),
        "language": str(language),
        "asr_model": check_asr_model(asr_model),
        "face_fps": float(face_fps),
        "transcript": transcript_identity(transcript),
        "models": [model_identity(d) for d in model_dirs],
    }


def file_options(record: dict[str, Any], media: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``options`` record of one file's result: the run's ``record`` (:func:`result_options`) plus the
    media's identity, and the transcript actually read: without ``--transcript``, the sidecar beside the
    media (the analysis reads a given transcript first, then the sidecar, then runs ASR) is recorded with
    ``"sidecar": true``."""
    out = dict(record)
    out["media"] = media_identity(media)
    side = find_sidecar(media) if record.get("transcript") is None else None
    if side is not None:
        out["transcript"] = {**(transcript_identity(side) or {}), "sidecar": True}
    return out


def _file_name(t: dict[str, Any] | None) -> str:
    return Path(t["path"]).name if t and t.get("path") else ""


def _transcript_difference(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """Why the transcript of a stored result is not the current one (None: the same)."""
    if old == new:
        return None
    if old and old.get("sidecar") and not (new and new.get("sidecar")):
        return f"the sidecar transcript {_file_name(old)} is gone"
    if new and new.get("sidecar") and not (old and old.get("sidecar")):
        return f"a sidecar transcript appeared ({_file_name(new)})"
    if old and new and old.get("path") and old.get("path") == new.get("path"):
        return f"the transcript {_file_name(new)} changed"
    return "the transcript changed"


def _media_difference(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """Why the media of a stored result is not the current file (None: the same size and content)."""
    if not new or "error" in new:
        return None  # unreadable now: the analysis reports it
    if not old:
        return "the result does not record its media's identity (made by an older version)"
    if old.get("size") != new.get("size"):
        return f"the media changed ({old.get('size')} -> {new.get('size')} bytes)"
    if old.get("sha256") != new.get("sha256"):
        return "the media changed (same size, other content)"
    return None


def options_difference(stored: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """Why a stored result does not answer the current run (None: it does).

    A result without a record (written before records existed) is taken as done. When ``current`` has
    a ``media`` identity (:func:`file_options`), a stored record without one, or with another size or
    content hash, is not.
    """
    if not stored:
        return None
    if "media" in current:
        why = _media_difference(stored.get("media"), current["media"])
        if why is not None:
            return why
    if stored.get("asr") != current.get("asr"):
        return f"--asr changed ({stored.get('asr')} -> {current.get('asr')})"
    if stored.get("language", "en") != current.get("language", "auto"):  # before 1.3: English only
        return f"--language changed ({stored.get('language', 'en')} -> {current.get('language', 'auto')})"
    # before 1.5 English was tiny.en's; it matters only where Whisper may transcribe English (not with a
    # transcript, another engine or a given language other than English)
    old_model, new_model = stored.get("asr_model", "tiny.en"), current.get("asr_model", "base")
    transcribes_english = current.get("asr") == "whisper" and current.get("language", "auto") in ("auto", "en")
    if transcribes_english and not current.get("transcript") and old_model != new_model:
        return f"--asr-model changed ({old_model} -> {new_model})"
    if float(stored.get("face_fps", 0.0)) != float(current.get("face_fps", 0.0)):  # before: every frame
        return f"--face-fps changed ({stored.get('face_fps', 0.0)} -> {current.get('face_fps', 0.0)})"
    why = _transcript_difference(stored.get("transcript"), current.get("transcript"))
    if why is not None:
        return why
    old = [m.get("path") for m in stored.get("models") or []]
    new = [m.get("path") for m in current.get("models") or []]
    if old != new:
        return f"the models changed ({', '.join(map(str, old)) or 'none'} -> {', '.join(map(str, new))})"
    if stored.get("models") != current.get("models"):
        return "a model's files changed"
    return None
