"""Small shared helpers: atomic file writes, hashing, locating ../shared."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePath
from typing import IO, Any

from dmd_pipeline.errors import OutputError, os_error_reason

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _umask() -> int:
    """The process umask: from /proc on Linux (reading it there changes nothing, so no other thread can
    create a file under a wrong mask meanwhile), else by setting and restoring it."""
    with suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and rename it into place only on success.

    A crash or kill mid-write never leaves a truncated ``path`` behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # keep the mode of the file being replaced; mkstemp's 0600 would lock other users out
        perms = path.stat().st_mode & 0o7777
    except OSError:
        perms = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, perms)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically (temp file + rename)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (temp file + rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, pretty-printed, with a trailing newline."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def config_hash(obj: Any, length: int = 16) -> str:
    """Stable short hash of a JSON-serialisable config (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:length]


def shared_dir() -> Path | None:
    """The ``shared`` folder beside the repository (or ``$DMD_SHARED_DIR``), if present."""
    env = os.environ.get("DMD_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if c.is_dir():
            return c
    return None


# ---- bounded, type-checked reads ----------------------------------------------------------------------
class TooLargeError(ValueError):
    """A file larger than the limit its reader allows (see :func:`read_bytes_bounded`)."""

    def __init__(self, path: str | Path, size: int, limit: int) -> None:
        self.path, self.size, self.limit = str(path), size, limit
        super().__init__(f"{path}: {format_bytes(size)}, over the limit of {format_bytes(limit)}")


#: The ``generator`` every result document of ``dmd analyze`` carries: what marks a file as the tool's own
#: output, never to be read back as an input (a sidecar transcript).
OUTPUT_MARKER = "dmd-pipeline"


def format_bytes(n: int | float) -> str:
    """``1536`` -> ``1.5 KiB``; binary units, one decimal."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def read_bytes_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Never blocks on a FIFO (opened non-blocking, then refused), never reads a device, and never reads
    more than ``limit + 1`` bytes (a file that grows while being read is still refused). Raises
    :class:`TooLargeError` (a ValueError) for a file over the limit, ``OSError`` otherwise.
    """
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(22, f"not a regular file ({_file_kind(st.st_mode)})", str(path))
        if st.st_size > limit:
            raise TooLargeError(path, st.st_size, limit)
        chunks, total = [], 0
        while True:
            block = os.read(fd, min(1 << 20, limit + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if total > limit:
                raise TooLargeError(path, total, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    import stat

    for test, name in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def path_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a media/data file, in words; None when it is a readable regular file.

    Never opens the file (a FIFO would block) and never raises: symlink loops, dangling links, devices,
    FIFOs, sockets, folders and permission problems each get a one-line reason.
    """
    import errno
    import stat

    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        if os.path.islink(p):
            try:
                target = os.readlink(p)
            except OSError:
                target = "?"
            return f"broken symbolic link (its target {target} does not exist)"
        if exc.errno == errno.ENOENT:
            return "file not found"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return exc.strerror or str(exc)
    except (RuntimeError, ValueError) as exc:  # e.g. a NUL byte in the name
        return str(exc)
    if stat.S_ISDIR(st.st_mode):
        if not os.access(p, os.R_OK | os.X_OK):
            return "a folder that cannot be read (permission denied)"
        return "a folder, not a media file"
    if not stat.S_ISREG(st.st_mode):
        return f"{_file_kind(st.st_mode)}, not a regular file"
    if not os.access(p, os.R_OK):
        return "permission denied (not readable)"
    return None


# ---- advisory lock on an output folder -------------------------------------------------------------
LOCK_NAME = ".dmd.lock"


@contextmanager
def output_lock(folder: str | Path, what: str = "dmd") -> Iterator[Path]:
    """Hold an exclusive advisory lock (``fcntl.flock``) on ``folder/.dmd.lock`` for the block.

    A second run on the same folder gets :class:`~dmd_pipeline.errors.OutputError` at once (naming the
    command and pid holding it, ``what`` of the holder) instead of redoing the same work. The kernel drops the lock when the holder dies, even by
    SIGKILL. Folders that cannot be written also raise OutputError, naming the cause. Without ``fcntl``
    (Windows) the block runs unlocked.
    """
    folder = Path(folder)
    lock_path = folder / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield lock_path
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise OutputError(folder, f"cannot write in the output folder: {os_error_reason(exc)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, holder = "", "dmd"
            with suppress(OSError, ValueError, IndexError):
                pid, _, rest = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().partition(" ")
                holder = rest.strip() or holder
            raise OutputError(
                folder,
                f"in use by another {holder} run"
                + (f" (pid {pid})" if pid.isdigit() else "")
                + "; wait for it to finish or choose another --out",
            ) from None
        with suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield lock_path
    finally:
        os.close(fd)  # closing drops the flock


def choose_threads(requested: int | None = None, share: int = 1) -> int:
    """CPU threads for torch, chosen once at start-up: ``requested`` (``--threads``), else ``$DMD_THREADS``,
    else the cores that other processes leave free (``cpu_count - round(1-min load average)``), at least 1
    and at most ``cpu_count // share`` (``share`` = worker processes splitting the machine).

    Why: on a machine whose cores are busy, OpenMP threads of torch wait for each other behind the other
    processes; one thread then runs a DMD training step in 1.96x the idle 2-thread time, two threads in
    2.8-3.1x (``benchmarks/bench_contention.py``, BENCHMARKS.md). On an idle machine every core is used.
    """
    if requested is not None and requested > 0:
        return int(requested)
    env = os.environ.get("DMD_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = os.cpu_count() or 1
    cap = max(1, cores // max(1, share))
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return cap
    return max(1, min(cap, int(cores - load + 0.5)))


def json_depth(obj: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping once past ``limit`` (iterative, so never a RecursionError);
    bounds the model-config and sidecar-transcript readers."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values, recursively: the one sanitiser for everything the package writes as JSON.

    Mappings get string keys, tuples become lists, paths strings, dataclasses dicts, numpy/torch scalars and
    arrays Python numbers and lists, and non-finite floats None (JSON has no NaN or infinity).
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(dataclasses.asdict(obj))
    if getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):  # numpy or torch scalar
        return json_safe(obj.item())
    if hasattr(obj, "tolist"):  # numpy array or torch tensor
        return json_safe(obj.tolist())
    return obj


def quiet_transformers() -> None:
    """Silence transformers' weight-loading progress bars (noise on stderr, unreadable in logs)."""
    from transformers.utils import logging as hf_logging  # here: transformers is slow to import

    hf_logging.disable_progress_bar()


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: mediapipe's C++ start-up notes (glog/absl, TFLite XNNPACK)
    ignore Python's logging and GLOG_minloglevel. Python exceptions still propagate with their messages."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a test runner): nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def close_with(owner: object, resource: Any) -> weakref.finalize:
    """Call ``resource.close()`` when ``owner`` is collected (or at exit), unless called before: calling the
    returned finalizer closes it now, once.

    Why not leave it to the resource's own ``__del__``: mediapipe's FaceLandmarker closes itself there through
    a one-thread executor, and when the landmarker is collected in the same garbage cycle as that executor
    (an extractor caught in a reference cycle, e.g. by a traceback), the executor's worker has already been
    told to exit and ``close()`` waits for it forever. The finalizer holds the resource strongly, so it is
    closed while its executor still runs."""
    return weakref.finalize(owner, _close_quietly, resource)


def _close_quietly(resource: Any) -> None:
    with suppress(Exception):
        resource.close()
