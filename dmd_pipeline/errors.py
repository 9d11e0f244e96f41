"""Exception types. Every user-facing error names the file (when there is one) and the reason."""

from __future__ import annotations

from pathlib import Path


class DMDError(Exception):
    """Base class of all errors raised on purpose by dmd-pipeline."""


class InputError(DMDError):
    """A bad input file: names the file, the pipeline stage and the reason in one line."""

    def __init__(self, path: str | Path | None, reason: str, stage: str = "input") -> None:
        self.path = str(path) if path is not None else None
        self.reason = reason
        self.stage = stage
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{reason}")


class MediaError(InputError):
    """Media that ffmpeg cannot probe or decode, or that lacks what a stage needs."""

    def __init__(self, path: str | Path | None, reason: str, stage: str = "media") -> None:
        super().__init__(path, reason, stage)


class DataError(InputError):
    """A dataset file (MMSA pickle, label CSV, feature archive) that is malformed or unsafe."""

    def __init__(self, path: str | Path | None, reason: str, stage: str = "data") -> None:
        super().__init__(path, reason, stage)


class ConfigError(DMDError):
    """An inconsistent configuration, e.g. a checkpoint whose config does not match the model."""


class ModelFileError(DMDError):
    """A bundled or user-given model file that is missing or fails its sha256 check."""


class ModelConfigError(ModelFileError, ConfigError):
    """A model folder whose ``config.json`` fails validation (wrong type, out of range, too deep, ...).

    Both a :class:`ModelFileError` (the model folder is broken: exit 2) and a :class:`ConfigError`
    (callers that caught config problems keep working).
    """


class OutputError(DMDError):
    """The output folder cannot be used: missing, read-only, full, not writable, or locked by another run."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = str(path) if path is not None else None
        self.reason = reason
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{reason}")


def os_error_reason(exc: OSError) -> str:
    """A short cause for an OSError: its message (``No space left on device``) and errno name (``ENOSPC``)."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or -1)
    msg = exc.strerror or str(exc) or type(exc).__name__
    return f"{msg} ({name})" if name else msg
