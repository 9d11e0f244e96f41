"""The Ray executor: a pool of Ray actors with the local executor's interface, ``submit(item) -> Future``.

The same contract as :class:`dmd_pipeline.executor.LocalExecutor`, so
the drivers (``analysis/batch.py``, ``data/extract.py``) keep one code path for resume, atomic writes and
the tables. It only moves work and results; it never writes a file.

* ``workers`` actors (``--actors``), each reserving ``cpus_per_actor`` CPUs and ``gpus_per_actor`` GPUs,
  run ``initializer(*initargs)`` once (the models load once per actor) and then one item at a time;
* an actor that dies (``kill -9`` of its process, its node going away, Ray's memory monitor) fails only
  the item it held: that item is retried once (``retries``) on a freshly started actor, then fails with
  :class:`~dmd_pipeline.executor.WorkerLost`; a replacement actor is started and the rest carry on;
* ``file_timeout`` (seconds) and ``max_rss_mb`` (resident MiB of the actor's process, asked from the actor
  itself every ``rss_poll_s``) kill the actor and fail the item with the reason, without a retry;
* an exception raised by ``fn`` comes back as the future's exception (its own type), once: it is not
  retried; an ``initializer`` that raises fails every item with that exception;
* when no actor can start (each dies while starting, or none is placed within ``start_timeout`` seconds:
  the cluster lacks the resources) every item fails with :class:`~dmd_pipeline.executor.WorkerSetupError`.

Ray is imported only when a :class:`RayExecutor` is made (``--engine ray``); importing this module does not
import it. Without ``address`` (and without ``$RAY_ADDRESS``) a private Ray instance is started on this
machine and stopped at the end (``"local"``); ``"auto"`` joins the cluster started here with ``ray start``;
``ray://host:port`` connects through Ray Client. A driver that already called ``ray.init`` is reused as
it is. ``fn``, the initializer and the items travel by pickle: functions of an installed package, which
every node must have (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dmd_pipeline.errors import ConfigError
from dmd_pipeline.executor import (
    DEFAULT_FILE_TIMEOUT_S,
    SupervisedExecutor,
    WorkerLost,
    WorkerSetupError,
    _portable,
    _Task,
    rss_mb,
)

logger = logging.getLogger("dmd_pipeline.ray")

#: What to install when Ray is missing.
RAY_INSTALL = "pip install 'dmd-pipeline[cluster]'"
#: Namespace of the actors (``ray list actors`` shows them as ``dmd-<pid>-<tag>-<n>``).
NAMESPACE = "dmd_pipeline"
DEFAULT_START_TIMEOUT_S = 600.0  # no actor placed and ready for this long while there is work: give up


class ClusterError(ConfigError):
    """Ray is missing, the cluster cannot be reached, or it cannot host the actors asked for."""


@dataclass
class RayOptions:
    """How to run on Ray (``--engine ray``): where, how many actors, what each reserves."""

    address: str | None = None  # None: $RAY_ADDRESS or a private instance on this machine
    actors: int | None = None  # None: one per ``cpus_per_actor`` CPUs of the cluster
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    log_to_driver: bool = False  # the actors' own stdout/stderr (-v): results carry their warnings anyway
    init_kwargs: dict[str, Any] = field(default_factory=dict)  # extra ray.init arguments (tests)


def ray_available() -> bool:
    """Whether ``import ray`` would work (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def import_ray() -> Any:
    """``import ray``; a missing Ray is a :class:`ClusterError` naming the install command."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--engine ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def connect(opts: RayOptions | None = None) -> bool:
    """Connect this process to Ray as ``opts.address`` says; returns True when this call connected (the
    caller then disconnects with ``ray.shutdown()``), False when the process already was connected."""
    ray = import_ray()
    opts = opts or RayOptions()
    if ray.is_initialized():
        return False
    # no address: $RAY_ADDRESS, else a private instance ("local"; Ray's own default would join the cluster
    # of the last `ray start` on this machine, even a stale one; that is --address auto here)
    address = opts.address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict[str, Any] = {
        "log_to_driver": opts.log_to_driver,
        "logging_level": logging.WARNING,
        **opts.init_kwargs,
    }
    if address == "local":  # a private instance on this machine: keep it light
        kwargs.setdefault("include_dashboard", False)
    problem = _unreachable(address) if address not in ("auto", "local") else None
    if problem is not None:  # ray.init would retry for minutes; say it at once
        raise ClusterError(f"--address {address}: cannot reach the Ray cluster ({problem})")
    import signal

    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, **kwargs)
        if callable(sigterm):  # Ray's core replaces it with a crash handler (stack dump, then death)
            signal.signal(signal.SIGTERM, sigterm)  # keep the program's: the CLI stops as on Ctrl-C
    except ConnectionError as exc:
        where = "this machine (start one with `ray start --head`)" if address == "auto" else address
        raise ClusterError(f"--address {address}: no Ray cluster reachable at {where}: {exc}") from None
    except (RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot start or join Ray (--address {address}): {exc}") from None
    return True


def _unreachable(address: str, timeout: float = 10.0) -> str | None:
    """Why a TCP connection to ``host:port`` (or ``ray://host:port``) fails, None when it connects (or
    the address is not of that form)."""
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def check_resources(cpus_per_actor: float, gpus_per_actor: float) -> dict[str, float]:
    """Raise :class:`ClusterError` when no live node of the connected cluster can host one actor (e.g.
    ``--gpus-per-actor 1`` on a cluster without GPUs: it would wait forever); returns the cluster's totals."""
    ray = import_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    totals: dict[str, float] = {}
    for n in nodes:
        for k in ("CPU", "GPU"):
            totals[k] = totals.get(k, 0.0) + float(n.get("Resources", {}).get(k, 0.0))
    fits = any(
        float(n.get("Resources", {}).get("CPU", 0.0)) >= cpus_per_actor
        and float(n.get("Resources", {}).get("GPU", 0.0)) >= gpus_per_actor
        for n in nodes
    )
    if not fits:
        have = f"{len(nodes)} node(s), {totals.get('CPU', 0):g} CPU, {totals.get('GPU', 0):g} GPU in all"
        if gpus_per_actor > 0 and totals.get("GPU", 0.0) == 0:
            raise ClusterError(
                f"--gpus-per-actor {gpus_per_actor:g}: the Ray cluster has no GPU ({have}); "
                "use --gpus-per-actor 0 or add GPU nodes"
            )
        raise ClusterError(
            f"no node of the Ray cluster can host an actor needing {cpus_per_actor:g} CPU and "
            f"{gpus_per_actor:g} GPU ({have})"
        )
    return totals


# ---- the actor ---------------------------------------------------------------------------------------------
class _ActorBody:
    """What runs inside each Ray actor (wrapped by ``ray.remote`` when the executor is made)."""

    def __init__(self, fn: Callable[[Any], Any], initializer: Callable | None, initargs: tuple) -> None:
        self.fn = fn
        self.init_error: BaseException | None = None
        try:
            if initializer is not None:
                initializer(*initargs)
        except BaseException as exc:  # reported by ready(): the executor fails every item with it
            self.init_error = _portable(exc)

    def ready(self) -> tuple[str, Any]:
        """``("ready", {pid, host, node_ip})`` once set up, or ``("init_error", exception)``."""
        if self.init_error is not None:
            return "init_error", self.init_error
        import ray

        return "ready", {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node_ip": ray.util.get_node_ip_address(),
        }

    def run(self, item: Any) -> tuple[str, Any]:
        """``("ok", fn(item))`` or ``("err", the exception fn raised)``: errors travel in-band, in their
        own type, so only an actor that dies surfaces as a Ray error."""
        try:
            return "ok", self.fn(item)
        except BaseException as exc:
            return "err", _portable(exc)

    def pid(self) -> int:
        """The pid of this actor's process (for diagnostics and the tests that kill it)."""
        return os.getpid()

    def rss_mb(self) -> float | None:
        """Resident memory of this actor's process in MiB (runs beside ``run``: the actor has 2 threads)."""
        return rss_mb(os.getpid())


# ---- the supervisor ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Actor:
    handle: Any
    name: str
    ready_ref: Any
    started: float
    ready: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    task: _Task | None = None
    task_ref: Any = None
    task_started: float = 0.0
    rss_ref: Any = None
    rss_asked: float = 0.0
    n_done: int = 0
    retiring: bool = False

    @property
    def fresh(self) -> bool:
        return self.n_done == 0 and self.task is None


class RayExecutor(SupervisedExecutor):
    """A supervised pool of ``workers`` Ray actors running ``fn(item)``; see the module docstring.

    Same interface as :class:`~dmd_pipeline.executor.LocalExecutor`: ``submit(item)`` returns a
    :class:`concurrent.futures.Future`, ``shutdown()`` stops the actors, and leaving a ``with`` block
    stops them (at once when the block raised). ``workers=None`` starts one actor per ``cpus_per_actor``
    CPUs of the cluster (``options.actors`` when set), at most ``at_most`` (the number of items). Raises :class:`ClusterError` when Ray is missing or the cluster cannot be
    reached or cannot host an actor.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        workers: int | None = None,
        *,
        initializer: Callable | None = None,
        initargs: Sequence[Any] = (),
        file_timeout: float | None = DEFAULT_FILE_TIMEOUT_S,
        max_rss_mb: float | None = None,
        retries: int = 1,
        poll_s: float = 0.2,
        options: RayOptions | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        rss_poll_s: float = 1.0,
        at_most: int | None = None,
    ) -> None:
        self.options = options or RayOptions()
        self._ray = import_ray()
        self._owns_connection = connect(self.options)
        try:
            cpus, gpus = float(self.options.cpus_per_actor), float(self.options.gpus_per_actor)
            totals = check_resources(cpus, gpus)
        except BaseException:
            self._disconnect()
            raise
        if workers is None:
            workers = self.options.actors
        if workers is None:
            workers = max(1, int(totals.get("CPU", 1.0) // max(cpus, 1e-9)))
        if at_most:
            workers = min(int(workers), int(at_most))
        super().__init__(fn, workers, initializer, initargs, file_timeout, max_rss_mb, retries, poll_s)
        if self.n_workers * cpus > totals.get("CPU", 0.0) or self.n_workers * gpus > totals.get("GPU", 0.0):
            logger.warning(
                "%d actor(s) of %g CPU/%g GPU do not all fit the Ray cluster now (%g CPU, %g GPU): "
                "the others wait for resources",
                self.n_workers,
                cpus,
                gpus,
                totals.get("CPU", 0.0),
                totals.get("GPU", 0.0),
            )
        logger.info(
            "Ray: %d actor(s) of %g CPU, %g GPU on a cluster of %g CPU, %g GPU",
            self.n_workers,
            cpus,
            gpus,
            totals.get("CPU", 0.0),
            totals.get("GPU", 0.0),
        )
        self.start_timeout = start_timeout
        self.rss_poll_s = rss_poll_s
        #: actors are named ``dmd-<driver pid>-<tag>-<n>`` in :data:`NAMESPACE`
        self.tag = f"dmd-{os.getpid()}-{secrets.token_hex(3)}"
        self._cls = self._ray.remote(_ActorBody)
        self._seq = itertools.count()
        self._no_actor_since: float | None = None
        self.actor_names: list[str] = []  # every actor ever started (diagnostics, tests)
        self._start_supervisor("dmd-ray-executor")

    @property
    def _actors(self) -> list[_Actor]:
        """The actors now (the base class's ``_workers``)."""
        return self._workers

    # ---- public -------------------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, cancel: bool = False) -> None:
        """Stop accepting work; with ``cancel`` drop queued items and kill busy actors at once. With
        ``wait`` (the default) also disconnect from Ray when this executor connected."""
        super().shutdown(wait=wait, cancel=cancel)
        if wait:
            self._disconnect()

    def live_actors(self) -> list[dict[str, Any]]:
        """Name, pid and host of each ready actor now."""
        with self._lock:
            return [{"name": a.name, **a.info} for a in self._actors if a.ready]

    def live_pids(self) -> list[int]:
        """Pids of the ready actors (on their own nodes)."""
        return [a["pid"] for a in self.live_actors()]

    # ---- supervisor thread --------------------------------------------------------------------------
    def _disconnect(self) -> None:
        if self._owns_connection:
            self._owns_connection = False
            with contextlib.suppress(Exception):
                self._ray.shutdown()

    def _spawn(self) -> None:
        name = f"{self.tag}-{next(self._seq)}"
        handle = self._cls.options(
            name=name,
            namespace=NAMESPACE,
            num_cpus=self.options.cpus_per_actor,
            num_gpus=self.options.gpus_per_actor,
            max_restarts=0,  # a dead actor is replaced by this supervisor, which decides about its item
            max_concurrency=2,  # run() and the rss_mb() probe side by side; one item at a time
        ).remote(self.fn, self.initializer, self.initargs)
        self.actor_names.append(name)
        self._actors.append(_Actor(handle, name, handle.ready.remote(), time.monotonic()))

    def _retire(self, actors: list[_Actor]) -> None:
        for a in actors:
            self._actors.remove(a)

    def _retired(self, actors: list[_Actor]) -> None:
        for a in actors:
            self._kill(a)

    def _send_task(self, a: _Actor, task: _Task) -> None:
        try:
            a.task_ref = a.handle.run.remote(task.item)
        except Exception as exc:  # the item does not serialize: only this item fails
            task.future.set_exception(
                RuntimeError(f"the item could not be sent to an actor: {type(exc).__name__}: {exc}")
            )
            return
        a.task, a.task_started = task, time.monotonic()

    def _wait_and_handle(self) -> None:
        refs: dict[Any, tuple[_Actor, str]] = {}
        for a in list(self._actors):
            if not a.ready:
                refs[a.ready_ref] = (a, "ready")
            if a.task_ref is not None:
                refs[a.task_ref] = (a, "task")
            if a.rss_ref is not None:
                refs[a.rss_ref] = (a, "rss")
        if not refs:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            return
        ready, _ = self._ray.wait(list(refs), num_returns=1, timeout=self.poll_s)
        if ready:  # everything else that is done as well, at no wait
            ready, _ = self._ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            a, kind = refs[ref]
            if a not in self._actors:
                continue  # killed meanwhile (timeout, memory, retired)
            if kind == "ready":
                self._on_ready(a)
            elif kind == "task":
                self._on_result(a)
            else:
                self._on_rss(a)

    def _on_ready(self, a: _Actor) -> None:
        ray_exc = self._ray.exceptions
        try:
            kind, payload = self._ray.get(a.ready_ref)
        except ray_exc.RayError as exc:  # died while starting (its initializer crashed the process, ...)
            self._remove(a)
            logger.warning("Ray actor %s died while starting: %s", a.name, _short(exc))
            self._start_failed(f"Ray actors die while starting ({_short(exc)})")
            return
        if kind == "init_error":
            self._fail_everything(payload, broken=True)
            return
        with self._lock:
            a.ready, a.info = True, dict(payload)
            self._start_failures = 0
        logger.debug("Ray actor %s ready (pid %s on %s)", a.name, payload["pid"], payload["host"])

    def _on_result(self, a: _Actor) -> None:
        ray_exc = self._ray.exceptions
        task, ref = a.task, a.task_ref
        a.task, a.task_ref, a.rss_ref = None, None, None
        a.n_done += 1
        if task is None:
            return
        try:
            kind, payload = self._ray.get(ref)
        except ray_exc.RayTaskError as exc:  # e.g. the result could not be serialized: this item only
            if not task.future.done():
                task.future.set_exception(
                    RuntimeError(f"the actor could not return the result: {_short(exc)}")
                )
            return
        except ray_exc.RayError as exc:  # the actor (or its node) is gone: retry the item on a fresh one
            self._remove(a)
            self._lost(task, _death_reason(exc, a))
            return
        if task.future.done():
            return
        if kind == "ok":
            task.future.set_result(payload)
        else:
            task.future.set_exception(payload)

    def _on_rss(self, a: _Actor) -> None:
        ref, a.rss_ref = a.rss_ref, None
        try:
            rss = self._ray.get(ref)
        except self._ray.exceptions.RayError:
            return  # the actor is dying: its task's ref reports it
        if rss is not None and self.max_rss_mb is not None and rss > self.max_rss_mb and a.task is not None:
            self._fail_and_kill(
                a,
                f"worker used {rss:.0f} MiB of memory, over the --max-rss limit of {self.max_rss_mb:.0f} MiB",
                "memory",
            )

    def _check_limits(self) -> None:
        now = time.monotonic()
        with self._lock:
            actors = list(self._actors)
            work = bool(self._queue) or any(a.task is not None for a in actors)
            any_ready = any(a.ready for a in actors)
        if work and not any_ready:  # nothing can run: the cluster cannot place or start an actor
            self._no_actor_since = self._no_actor_since or now
            if now - self._no_actor_since > self.start_timeout:
                self._fail_everything(
                    WorkerSetupError(
                        f"no Ray actor started within {self.start_timeout:g} s (each needs "
                        f"{self.options.cpus_per_actor:g} CPU and {self.options.gpus_per_actor:g} GPU; "
                        "`ray status` shows what the cluster has)"
                    ),
                    broken=True,
                )
        else:
            self._no_actor_since = None
        for a in actors:
            if a.task is None:
                continue
            limit, what = self._time_limit(a.task)
            if limit is not None and now - a.task_started > limit:
                self._fail_and_kill(a, f"timed out after {limit:g} s ({what})", "timeout")
                continue
            if self.max_rss_mb is not None and a.rss_ref is None and now - a.rss_asked >= self.rss_poll_s:
                a.rss_asked = now
                with contextlib.suppress(Exception):
                    a.rss_ref = a.handle.rss_mb.remote()

    def _fail_and_kill(self, a: _Actor, reason: str, kind: str) -> None:
        """A limit was breached: kill the actor and fail its item with ``reason`` (no retry)."""
        task = a.task
        self._remove(a)
        if task is not None and not task.future.done():
            task.future.set_exception(WorkerLost(reason, kind))

    def _remove(self, a: _Actor) -> None:
        with self._lock:
            if a in self._actors:
                self._actors.remove(a)
        self._kill(a)

    def _kill(self, a: _Actor) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(a.handle, no_restart=True)

    def _drop_task(self, a: _Actor) -> None:
        a.task, a.task_ref = None, None

    def _stop_workers(self) -> None:
        with self._lock:
            actors = list(self._actors)
            self._actors.clear()
        for a in actors:
            self._kill(a)


def _death_reason(exc: BaseException, a: _Actor) -> str:
    """``Ray actor died (pid 123 on node-7): its process was killed or crashed (out of memory?)``."""
    where = f" (pid {a.info['pid']} on {a.info['host']})" if a.info else ""
    text = str(exc)
    if "worker process has died" in text or "unexpectedly exits" in text:
        return f"Ray actor died{where}: its process was killed or crashed (out of memory?)"
    if getattr(exc, "preempted", False):
        return f"Ray actor died{where}: its node was preempted"
    return f"Ray actor died{where}: {_short(exc)}"


def _short(exc: BaseException, limit: int = 300) -> str:
    """The first line of a (long, multi-line) Ray error, cut to ``limit`` characters."""
    text = str(exc).strip().splitlines()
    line = next((ln.strip() for ln in text if ln.strip()), type(exc).__name__)
    return line if len(line) <= limit else line[: limit - 1] + "…"
