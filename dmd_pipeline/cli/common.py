"""Conventions every ``dmd`` command shares: ``-v/--verbose`` and ``-q/--quiet`` (standard ``logging``),
``--device auto|cpu|cuda|mps``, ``-j/--workers``, one usage-error style (``Error: ...``, exit 2), and
the check for system tools (a missing ffmpeg is a usage error naming the install command).

Nothing heavy is imported here: ``dmd --help`` imports this module.
"""

from __future__ import annotations

import logging
import shutil
import sys
from enum import Enum
from typing import Any

import typer

from dmd_pipeline.device import resolve_device as resolve
from dmd_pipeline.errors import ConfigError

#: How to install ffmpeg, per platform (shown when it is missing).
FFMPEG_INSTALL = (
    "sudo apt-get install ffmpeg  (macOS: brew install ffmpeg; conda: conda install -c conda-forge ffmpeg)"
)


class Device(str, Enum):
    """Where the models run; ``auto`` picks cuda, then mps, then cpu."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class AsrEngine(str, Enum):
    """``--asr``: speech recognition when no transcript is given (the values of
    :data:`dmd_pipeline.feature_config.ASR_ENGINES`)."""

    whisper = "whisper"
    pocketsphinx = "pocketsphinx"
    none = "none"


class AcousticSetting(str, Enum):
    """``--acoustic``: the acoustic feature set (the values of
    :data:`dmd_pipeline.extractors.whisper_encoder.ACOUSTIC_SETTINGS`)."""

    librosa = "librosa"
    whisper = "whisper"
    whisper_librosa = "whisper+librosa"
    whisper_base = "whisper-base"
    whisper_base_librosa = "whisper-base+librosa"
    whisper_base_layers = "whisper-base-layers"
    whisper_base_layers_librosa = "whisper-base-layers+librosa"
    whisper_base_layers_s2 = "whisper-base-layers-s2"
    whisper_base_layers_s2_librosa = "whisper-base-layers-s2+librosa"
    whisper_base_layers_s4 = "whisper-base-layers-s4"
    whisper_base_layers_s4_librosa = "whisper-base-layers-s4+librosa"
    whisper_base_layers_s5 = "whisper-base-layers-s5"
    whisper_base_layers_s5_librosa = "whisper-base-layers-s5+librosa"


class VisualSetting(str, Enum):
    """``--visual``: the visual feature set (the values of
    :data:`dmd_pipeline.face.features.VISUAL_SETTINGS`)."""

    landmarks = "landmarks"
    expression = "expression"
    expression_landmarks = "expression+landmarks"


def device_option(default: Device = Device.auto) -> Any:
    """The ``--device`` option (the same choices and default on every command)."""
    return typer.Option(default, "--device", help="auto (cuda, then mps, then cpu) | cpu | cuda | mps.")


def workers_option(help_text: str = "Worker processes (each loads its models once).") -> Any:
    """The ``-j/--workers`` option."""
    return typer.Option(1, "--workers", "-j", min=1, help=help_text)


def verbose_option() -> Any:
    """``-v/--verbose``: stage messages and debug details."""
    return typer.Option(False, "--verbose", "-v", help="More detail: every stage of every file, debug logs.")


def quiet_option(help_text: str = "Errors only: no progress or summary.") -> Any:
    """``-q/--quiet``."""
    return typer.Option(False, "--quiet", "-q", help=help_text)


def _major_messages(record: logging.LogRecord) -> bool:
    """False for the per-file stage messages of the pipeline (``clip.mp4: acoustic``)."""
    if record.levelno >= logging.WARNING or not record.name.startswith("dmd_pipeline.pipeline"):
        return True
    return str(record.msg).startswith("loading")


def setup_logging(verbose: bool = False, quiet: bool = False, handler: logging.Handler | None = None) -> int:
    """Set the ``dmd_pipeline`` logger level (DEBUG with -v, WARNING with -q, else INFO); returns it.

    ``handler`` receives the messages (a command shows them on its progress display); by default they go
    to stderr, one plain line each. A previous command's handler is replaced.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    log = logging.getLogger("dmd_pipeline")
    log.setLevel(level)
    for h in list(log.handlers):
        if getattr(h, "_dmd", False):
            log.removeHandler(h)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        if not verbose:  # per-file stage lines only with -v; "loading ..." and warnings always
            handler.addFilter(_major_messages)
    handler._dmd = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False
    return level


def _one_line_error(exc: Any) -> None:
    """How every usage error the command-line parser finds is shown: ``Error: <message>`` on stderr, one
    line, with the help command to run (instead of a usage block and a framed box)."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
    typer.echo(f"Error: {exc.format_message()}{hint}", err=True)


def _help_type(orig: Any) -> Any:
    """Wrap typer's type column: nothing for on/off flags (``<bool>``), ``<path>...`` for a repeatable
    option instead of ``<list[Path]>``, nothing for an argument whose name already says it (``PATH...``)."""
    import re

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_bool_flag", False):
            return None
        if getattr(self, "param_type_name", "") == "argument" and self.metavar:
            return None
        label = orig(self, ctx)
        if label and "list[" in label:
            label = re.sub(r"list\[([^\]]+)\]", lambda m: m.group(1).lower(), label) + "..."
        return label

    return display_type_rich


def _usage_name(self: Any) -> str:
    """An argument on the usage line: ``PATH...`` (required) or ``[PATH]...``, never ``{PATH}``."""
    name = self.display_name_raw
    name = name if self.required else f"[{name}]"
    return name if self.nargs == 1 or name.endswith("...") else name + "..."


def install_cli_style() -> None:
    """The house style of the ``dmd`` command line, on top of typer's rich help: one-line ``Error: ...``
    usage errors (exit 2, as :func:`usage_error`) and clean help placeholders. Idempotent."""
    from typer import core, rich_utils

    if getattr(rich_utils, "_dmd_style", False):
        return
    rich_utils.rich_format_error = _one_line_error
    for cls in (core.TyperOption, core.TyperArgument):
        cls.display_type_rich = _help_type(cls.display_type_rich)
    core.TyperArgument._usage_display_name = _usage_name
    rich_utils._dmd_style = True


#: ``--language`` help (``dmd analyze``, ``dmd extract``, ``dmd live``).
LANGUAGE_HELP = (
    "Spoken language: auto (identified by Whisper base, which transcribes it; English by --asr-model), en "
    "(no identification), or a Whisper language code (de, pl, it, tr, ur, ...)."
)
#: ``--asr-model`` help (``dmd analyze``, ``dmd extract``, ``dmd live``).
ASR_MODEL_HELP = (
    "The Whisper model that transcribes English: base (fewer errors) or tiny.en (faster, English only). "
    "Other languages are always transcribed by Whisper base."
)


def checked_asr_model(value: str) -> str:
    """``--asr-model`` as its short name (``base`` or ``tiny.en``; the option's callback: a bad value is a
    usage error naming the choices)."""
    from dmd_pipeline.extractors.language import check_asr_model

    try:
        return check_asr_model(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def checked_language(value: str) -> str:
    """``--language`` lower-cased when it is ``auto`` or a Whisper language code (the option's callback:
    checked before anything else, a bad value is a usage error like any bad choice)."""
    from dmd_pipeline.extractors.language import check_language

    try:
        return check_language(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def usage_error(msg: str) -> typer.Exit:
    """Print ``Error: msg`` on stderr and return the exit-2 exception to raise."""
    typer.echo(f"Error: {msg}", err=True)
    return typer.Exit(2)


def missing_tools(names: tuple[str, ...] = ("ffmpeg", "ffprobe")) -> list[str]:
    """The system tools of ``names`` not found on PATH (``$DMD_FFMPEG``/``$DMD_FFPROBE`` honoured)."""
    import os

    return [n for n in names if shutil.which(os.environ.get(f"DMD_{n.upper()}", n)) is None]


def require_ffmpeg() -> None:
    """Raise a usage error (exit 2) with the install command when ffmpeg/ffprobe are missing."""
    missing = missing_tools()
    if missing:
        raise usage_error(f"{' and '.join(missing)} not found on PATH; install it: {FFMPEG_INSTALL}")


def resolve_device(name: str | Device) -> str:
    """``auto`` -> cuda, mps or cpu (what is available; :func:`dmd_pipeline.device.resolve_device`); an
    unavailable explicit device is a usage error."""
    name = name.value if isinstance(name, Device) else str(name)
    try:
        return str(resolve(name))
    except ConfigError:
        raise usage_error(f"--device {name}: not available on this machine (use auto or cpu)") from None


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def safetensors_problem(path: Any) -> str | None:
    """Why a ``.safetensors`` file cannot be loaded (missing, truncated, bad header), read from its header
    only (no weights are loaded); None when it looks whole."""
    import json
    import os
    import struct

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "is truncated (no header)"
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or 8 + n > size:
                return "is truncated or not a safetensors file (bad header length)"
            header = json.loads(fh.read(n))
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (ValueError, UnicodeDecodeError):
        return "has an unreadable header (not a safetensors file)"
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        return f"is truncated ({size} bytes, the header needs {8 + n + end})"
    return None


class LineProgress:
    """Progress for a log: under a pipe or nohup (``console`` not a terminal) a plain line
    ``extract: 12/100 (35 s)`` at most every ``every_s`` seconds and at the end; nothing on a terminal
    (the rich bar is shown there)."""

    def __init__(self, console: Any, label: str, total: int, done: int = 0, every_s: float = 10.0) -> None:
        import time

        self.console, self.label, self.total, self.done, self.every_s = console, label, total, done, every_s
        self.enabled = not getattr(console, "is_terminal", False) and not getattr(console, "quiet", False)
        self.t0 = self.last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        import time

        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.every_s or self.done >= self.total):
            self.last = now
            self.console.print(
                f"{self.label}: {self.done}/{self.total} ({now - self.t0:.0f} s)", highlight=False
            )


def item_progress(label: str, console: Any, disable: bool = False) -> Any:
    """The progress bar of a run over items (``extracting``, ``evaluating``): label, bar, done/total, elapsed
    and remaining time, on ``console`` (stderr)."""
    from rich.progress import (  # here: rich's progress machinery is not needed for --help
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=disable,
    )
