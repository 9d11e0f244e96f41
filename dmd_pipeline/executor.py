"""The local executor: a supervised pool of spawned worker processes, ``submit(item) -> Future``.

It only moves work and results between the driver and the workers and never
writes a file; the driver (``analysis/batch.py``, ``data/extract.py``) owns the output folder, resume and
atomic writes. Unlike :class:`concurrent.futures.ProcessPoolExecutor`, one dying worker never breaks the
pool:

* a worker that dies (a signal, the kernel's OOM killer, a crash in native code) fails only the item it
  held; that item is retried once on a freshly started worker (``retries``) and then fails with
  :class:`WorkerLost` (``"worker killed by SIGKILL (out of memory?)"``). The pool starts a replacement and
  every other item carries on;
* per-item limits: ``file_timeout`` seconds and ``max_rss_mb`` MiB of resident memory (read from
  ``/proc`` every ``poll_s``). A breach kills that worker and fails the item with the reason; it is not
  retried (the same item would breach again);
* workers die with their parent: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, plus a watchdog thread
  that exits when the parent pid changes (portable fallback), so a ``kill -9`` of the driver leaves no
  orphans. Workers ignore SIGINT; the driver decides how to stop;
* an ``initializer`` that raises (e.g. the model does not load) fails every item with that exception:
  nothing could succeed. Workers that keep dying while starting fail everything with
  :class:`WorkerSetupError` instead of restarting forever.

``fn``, ``initializer`` and the items must be picklable (top-level functions; the ``spawn`` start method).

:func:`dmd_pipeline.runner.make_executor` picks the engine (``"local"``: this class; ``"ray"``:
:class:`dmd_pipeline.ray_executor.RayExecutor`, the same interface on Ray actors) and
:func:`dmd_pipeline.runner.bounded_completion` is how the drivers submit: a bounded number of items in
flight (back-pressure), results handed out as they complete.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from dmd_pipeline.errors import DMDError

DEFAULT_FILE_TIMEOUT_S = 3600.0  # one hour per file: generous (Whisper runs at ~0.3x real time here)
MAX_START_FAILURES = 3  # consecutive workers dying before they are ready -> give up
_PR_SET_PDEATHSIG = 1


class WorkerLost(DMDError):
    """The worker holding an item died, ran past ``file_timeout`` or went over ``max_rss_mb``."""

    def __init__(self, reason: str, kind: str = "died") -> None:
        self.reason = reason
        self.kind = kind  # "died" | "timeout" | "memory" | "startup"
        super().__init__(reason)


class WorkerSetupError(WorkerLost):
    """No worker could be started (each died before it was ready)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "startup")


def total_memory_mb() -> float | None:
    """Physical memory of this machine in MiB (None when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


def default_max_rss_mb(workers: int) -> float | None:
    """A generous per-worker memory limit: 80% of physical memory shared by the workers, at least 1 GiB."""
    total = total_memory_mb()
    if total is None:
        return None
    return max(1024.0, 0.8 * total / max(1, workers))


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB from ``/proc/<pid>/statm`` (None where unavailable)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def exit_reason(exitcode: int | None) -> str:
    """``worker killed by SIGKILL (out of memory?)`` / ``worker exited with code 3`` for an exit code."""
    if exitcode is None:
        return "worker vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {exitcode}"


# ---- the worker side -------------------------------------------------------------------------------------
def _watch_parent(parent_pid: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(1)


def die_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Make this process exit when ``parent_pid`` goes: PR_SET_PDEATHSIG on Linux + a watchdog thread."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), daemon=True).start()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` when it survives a pickle round trip, else a RuntimeError carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _send(conn: Any, msg: tuple) -> bool:
    try:
        conn.send(msg)
    except (BrokenPipeError, EOFError, ConnectionError):
        return False
    except Exception as exc:  # the result itself does not pickle
        kind, tid, _ = msg
        err = RuntimeError(f"the worker's result could not be sent: {type(exc).__name__}: {exc}")
        try:
            conn.send(("err" if kind == "ok" else kind, tid, err))
        except Exception:
            return False
    return True


def _thread_lock_for_tqdm() -> None:
    """Give tqdm (used inside the ASR library) a thread lock before it makes its default one, a
    multiprocessing semaphore: in a spawned worker that semaphore is registered with the resource tracker,
    and a worker stopped on Ctrl-C leaves it behind, so the run ended with a "leaked semaphore" warning."""
    with contextlib.suppress(ImportError):
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())


def _worker_main(
    conn: Any, fn: Callable[[Any], Any], initializer: Callable | None, initargs: tuple, parent_pid: int
) -> None:
    """Body of a worker process: set up, then run one item at a time until told to stop (``None``)."""
    die_with_parent(parent_pid)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _thread_lock_for_tqdm()
    try:
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:
        _send(conn, ("init_error", None, _portable(exc)))
        return
    if not _send(conn, ("ready", None, os.getpid())):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        tid, item = msg
        try:
            out: tuple = ("ok", tid, fn(item))
        except BaseException as exc:
            out = ("err", tid, _portable(exc))
        if not _send(conn, out):
            return


# ---- the supervisor ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Task:
    id: int
    item: Any
    future: Future
    attempts: int = 0
    fresh_only: bool = False  # a retry: runs only on a worker (actor) that has not run anything yet
    timeout: float | None = None  # this item's own time limit (seconds), instead of ``file_timeout``


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Any
    ready: bool = False
    task: _Task | None = None
    task_started: float = 0.0
    n_done: int = 0
    kill_reason: str | None = None
    kill_kind: str = "died"
    retiring: bool = False

    @property
    def fresh(self) -> bool:
        return self.n_done == 0 and self.task is None


_E = TypeVar("_E", bound="SupervisedExecutor")


class SupervisedExecutor:
    """What :class:`LocalExecutor` and :class:`~dmd_pipeline.ray_executor.RayExecutor` share: the queue of
    items, ``submit``/``shutdown``, the context manager and the supervisor thread's loop.

    A subclass calls ``super().__init__`` (state only), sets up its own, then :meth:`_start_supervisor`.
    Its workers (``self._workers``: processes, actors) carry ``ready``, ``task``, ``task_started``,
    ``n_done``, ``retiring`` and ``fresh``; it implements the hooks :meth:`_spawn`, :meth:`_send_task`,
    :meth:`_wait_and_handle`, :meth:`_check_limits` and :meth:`_stop_workers` (and :meth:`_retire`).
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        workers: int,
        initializer: Callable | None,
        initargs: Sequence[Any],
        file_timeout: float | None,
        max_rss_mb: float | None,
        retries: int,
        poll_s: float,
    ) -> None:
        self.fn = fn
        self.n_workers = max(1, int(workers))
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.file_timeout = file_timeout if file_timeout and file_timeout > 0 else None
        self.max_rss_mb = max_rss_mb if max_rss_mb and max_rss_mb > 0 else None
        self.retries = max(0, int(retries))
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by submit/shutdown: a supervisor waiting idle may wake on it
        self._queue: collections.deque[_Task] = collections.deque()
        self._workers: list[Any] = []
        self._ids = itertools.count()
        self._closing = False
        self._cancel = False
        self._broken: BaseException | None = None
        self._start_failures = 0

    def _start_supervisor(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ---- public -------------------------------------------------------------------------------------
    def submit(self, item: Any, timeout: float | None = None) -> Future:
        """Queue ``item``; the future resolves to ``fn(item)``, its exception, or :class:`WorkerLost`.

        ``timeout``: this item's time limit in seconds, in place of ``file_timeout`` (e.g. one proportional
        to the item's media duration)."""
        fut: Future = Future()
        with self._lock:
            if self._broken is not None:
                fut.set_exception(self._broken)
                return fut
            if self._closing:
                raise RuntimeError("cannot submit to an executor that is shutting down")
            limit = timeout if timeout and timeout > 0 else None
            self._queue.append(_Task(next(self._ids), item, fut, timeout=limit))
        self._wake.set()
        return fut

    def shutdown(self, wait: bool = True, cancel: bool = False) -> None:
        """Stop accepting work; with ``cancel`` drop queued items and kill busy workers at once."""
        with self._lock:
            self._closing = True
            if cancel:
                self._cancel = True
                while self._queue:
                    self._queue.popleft().future.cancel()
        self._wake.set()
        if wait:
            self._thread.join()

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.shutdown(wait=True, cancel=exc_type is not None)

    # ---- supervisor thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    busy = any(w.task is not None for w in self._workers)
                    if self._cancel or (self._closing and not self._queue and not busy):
                        break
                self._fill()
                self._dispatch()
                self._wait_and_handle()
                self._check_limits()
        except BaseException as exc:  # a bug here must never leave the driver waiting forever
            self._fail_everything(WorkerSetupError(f"executor failure: {type(exc).__name__}: {exc}"))
        finally:
            self._stop_workers()
            self._fail_everything(RuntimeError("the executor stopped before this item ran"), cancel=True)

    def _fill(self) -> None:
        """Start workers while there is work for them (and a fresh one for a waiting retry)."""
        retired: list[Any] = []
        with self._lock:
            if self._broken is not None or (self._closing and not self._queue):
                return
            alive = [w for w in self._workers if not w.retiring]
            outstanding = len(self._queue) + sum(w.task is not None for w in alive)
            want = min(self.n_workers, outstanding)
            need_fresh = sum(t.fresh_only for t in self._queue) - sum(w.fresh for w in alive)
            if need_fresh > 0 and len(alive) >= self.n_workers:
                retired = [w for w in alive if w.ready and w.task is None and not w.fresh][:need_fresh]
                self._retire(retired)  # make room for a fresh worker
                alive = [w for w in self._workers if not w.retiring]
            n_new = max(want - len(alive), need_fresh if len(alive) < self.n_workers else 0)
            n_new = min(n_new, self.n_workers - len(alive))
        self._retired(retired)
        for _ in range(max(0, n_new)):
            self._spawn()

    def _retire(self, workers: list[Any]) -> None:
        """Under the lock: take these idle workers out of service (to make room for fresh ones)."""
        raise NotImplementedError

    def _retired(self, workers: list[Any]) -> None:
        """Outside the lock, after :meth:`_retire`: what is left to do to stop them (nothing by default)."""

    def _dispatch(self) -> None:
        with self._lock:
            for w in self._workers:
                if not w.ready or w.task is not None or w.retiring or not self._queue:
                    continue
                task = next((t for t in self._queue if t.fresh_only), None) if w.fresh else None
                if task is None:
                    task = next((t for t in self._queue if not t.fresh_only), None)
                if task is None:
                    continue
                self._queue.remove(task)
                if not task.future.running() and not task.future.set_running_or_notify_cancel():
                    continue  # cancelled by the driver meanwhile
                self._send_task(w, task)

    def _start_failed(self, reason: str) -> None:
        """A worker died before it was ready: after :data:`MAX_START_FAILURES` in a row, give up."""
        with self._lock:
            self._start_failures += 1
            give_up = self._start_failures >= MAX_START_FAILURES and self._broken is None
        if give_up:
            self._fail_everything(WorkerSetupError(reason), broken=True)

    def _lost(self, task: _Task, reason: str, kind: str = "died", retry: bool = True) -> None:
        """The worker holding ``task`` is gone: retry the task on a fresh worker (``retry``: it died on
        its own), or fail it with :class:`WorkerLost`."""
        if task.future.done():
            return
        task.attempts += 1
        if retry and task.attempts <= self.retries:
            task.fresh_only = True
            with self._lock:
                self._queue.appendleft(task)
            return
        retried = " (also on the retry)" if task.attempts > 1 and retry else ""
        task.future.set_exception(WorkerLost(reason + retried, kind))

    def _fail_everything(self, exc: BaseException, broken: bool = False, cancel: bool = False) -> None:
        """Resolve every queued and running item with ``exc`` (or cancel the queued ones)."""
        with self._lock:
            if broken and self._broken is None:
                self._broken = exc
            tasks = list(self._queue) + [w.task for w in self._workers if w.task is not None]
            self._queue.clear()
            for w in self._workers:
                self._drop_task(w)
        for t in tasks:
            if t.future.done() or (cancel and t.future.cancel()):
                continue
            with contextlib.suppress(Exception):  # InvalidStateError: resolved meanwhile
                t.future.set_exception(exc)

    def _drop_task(self, w: Any) -> None:
        """Under the lock: ``w`` no longer holds its task (it was resolved elsewhere)."""
        w.task = None

    # ---- the hooks ----------------------------------------------------------------------------------
    def _spawn(self) -> None:
        """Start one more worker (it appends itself to ``self._workers``)."""
        raise NotImplementedError

    def _send_task(self, w: Any, task: _Task) -> None:
        """Under the lock: hand the (running) ``task`` to the idle, ready worker ``w``."""
        raise NotImplementedError

    def _wait_and_handle(self) -> None:
        """Wait up to ``poll_s`` for the workers and handle what they report."""
        raise NotImplementedError

    def _time_limit(self, task: _Task) -> tuple[float | None, str]:
        """The seconds ``task`` may run and the limit's name for the message."""
        if task.timeout is not None:
            return task.timeout, "the item's time limit"
        return self.file_timeout, "--file-timeout"

    def _check_limits(self) -> None:
        """Enforce the time limit (:meth:`_time_limit`) and ``max_rss_mb``."""
        raise NotImplementedError

    def _stop_workers(self) -> None:
        """Stop every worker (the supervisor is ending)."""
        raise NotImplementedError


class LocalExecutor(SupervisedExecutor):
    """A supervised pool of ``workers`` spawned processes running ``fn(item)``; see the module docstring.

    ``submit(item)`` returns a :class:`concurrent.futures.Future`; use ``concurrent.futures.as_completed``
    or ``wait`` on them. Use as a context manager: leaving the block stops the workers (killing them when
    the block raised).
    """

    _workers: list[_Worker]

    def __init__(
        self,
        fn: Callable[[Any], Any],
        workers: int = 1,
        *,
        initializer: Callable | None = None,
        initargs: Sequence[Any] = (),
        file_timeout: float | None = DEFAULT_FILE_TIMEOUT_S,
        max_rss_mb: float | None = None,
        retries: int = 1,
        poll_s: float = 0.1,
        mp_context: str = "spawn",
    ) -> None:
        super().__init__(fn, workers, initializer, initargs, file_timeout, max_rss_mb, retries, poll_s)
        self._ctx = multiprocessing.get_context(mp_context)
        self.worker_pids: set[int] = set()  # every worker ever started (for diagnostics and tests)
        self._start_supervisor("dmd-executor")

    # ---- public -------------------------------------------------------------------------------------
    def live_pids(self) -> list[int]:
        """Pids of the workers alive now."""
        with self._lock:
            return [w.proc.pid for w in self._workers if w.proc.pid is not None]

    # ---- supervisor thread --------------------------------------------------------------------------
    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.fn, self.initializer, self.initargs, os.getpid()),
            daemon=True,
            name="dmd-worker",
        )
        proc.start()
        child.close()
        if proc.pid is not None:
            self.worker_pids.add(proc.pid)
        self._workers.append(_Worker(proc, parent))

    def _retire(self, workers: list[_Worker]) -> None:
        for w in workers:
            w.retiring = True
            _send(w.conn, None)  # type: ignore[arg-type]

    def _send_task(self, w: _Worker, task: _Task) -> None:
        w.task, w.task_started = task, time.monotonic()
        try:
            w.conn.send((task.id, task.item))
        except (BrokenPipeError, EOFError, ConnectionError, OSError):
            pass  # the worker is dying: its sentinel reports it and the item is retried
        except Exception as exc:  # the item does not pickle: only this item fails
            w.task = None
            task.future.set_exception(
                RuntimeError(f"the item could not be sent to a worker: {type(exc).__name__}: {exc}")
            )

    def _wait_and_handle(self) -> None:
        workers = list(self._workers)
        if not workers:
            time.sleep(self.poll_s)
            return
        by_conn = {id(w.conn): w for w in workers}
        waitables = [w.conn for w in workers] + [w.proc.sentinel for w in workers]
        ready = multiprocessing.connection.wait(waitables, timeout=self.poll_s)
        ready_ids = {id(r) for r in ready}
        for w in workers:  # messages first: a result sent just before exiting must not be lost
            if id(w.conn) in ready_ids and id(w.conn) in by_conn:
                self._drain(w)
        for w in workers:
            if w.proc.sentinel in ready or not w.proc.is_alive():
                self._handle_exit(w)

    def _drain(self, w: _Worker) -> None:
        while True:
            try:
                if not w.conn.poll():
                    return
                kind, tid, payload = w.conn.recv()
            except (EOFError, OSError):
                return  # the worker is gone; its sentinel says how
            except Exception as exc:  # a result that cannot be unpickled here
                kind, tid, payload = (
                    "err",
                    w.task.id if w.task else None,
                    RuntimeError(f"the worker's result could not be read: {type(exc).__name__}: {exc}"),
                )
            if kind == "ready":
                w.ready = True
                with self._lock:
                    self._start_failures = 0
            elif kind == "init_error":
                self._fail_everything(payload, broken=True)
            elif kind in ("ok", "err"):
                task, w.task = w.task, None
                w.n_done += 1
                if task is not None and task.id == tid and not task.future.done():
                    if kind == "ok":
                        task.future.set_result(payload)
                    else:
                        task.future.set_exception(payload)

    def _handle_exit(self, w: _Worker) -> None:
        w.proc.join(timeout=5)
        if w.proc.exitcode is None:  # still alive (is_alive raced): look again next round
            return
        with contextlib.suppress(OSError):
            w.conn.close()
        with self._lock:
            if w in self._workers:
                self._workers.remove(w)
        if w.retiring:
            return
        reason = w.kill_reason or exit_reason(w.proc.exitcode)
        if not w.ready:
            self._start_failed(f"worker processes die while starting ({reason})")
            return
        if w.task is not None:
            self._lost(w.task, reason, w.kill_kind, retry=w.kill_reason is None)

    def _check_limits(self) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if w.task is None or w.kill_reason is not None or w.proc.pid is None:
                continue
            limit, what = self._time_limit(w.task)
            if limit is not None and now - w.task_started > limit:
                self._kill(w, f"timed out after {limit:g} s ({what})", "timeout")
                continue
            if self.max_rss_mb is not None:
                rss = rss_mb(w.proc.pid)
                if rss is not None and rss > self.max_rss_mb:
                    self._kill(
                        w,
                        f"worker used {rss:.0f} MiB of memory, over the --max-rss limit of "
                        f"{self.max_rss_mb:.0f} MiB",
                        "memory",
                    )

    @staticmethod
    def _kill(w: _Worker, reason: str, kind: str) -> None:
        w.kill_reason, w.kill_kind = reason, kind
        with contextlib.suppress(ProcessLookupError, OSError):
            os.kill(w.proc.pid, signal.SIGKILL)

    def _stop_workers(self) -> None:
        """Ask idle workers to exit, kill busy ones (or all after a grace period), reap them."""
        workers = list(self._workers)
        for w in workers:
            if w.task is not None or self._cancel or self._broken is not None:
                self._kill(w, "stopped", "died")
            else:
                _send(w.conn, None)  # type: ignore[arg-type]
        deadline = time.monotonic() + 5.0
        for w in workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.exitcode is None:
                self._kill(w, "stopped", "died")
                w.proc.join(timeout=5)
            with contextlib.suppress(OSError):
                w.conn.close()
        with self._lock:
            self._workers.clear()
