"""The one supervised runner the drivers share: :func:`run_supervised` runs items on worker processes
(``"local"``: :class:`~dmd_pipeline.executor.LocalExecutor`) or Ray actors (``"ray"``:
:class:`~dmd_pipeline.ray_executor.RayExecutor`, the same interface), each worker set up once by an
initialiser (its models loaded), with at most two items per worker in flight (back-pressure), per-item
limits (:class:`Limits`), and every result handed back to the driver's ``commit`` (the driver writes).

Underneath: :func:`open_executor` (the engine, workers, torch threads and memory limit of a run),
:func:`make_executor` (one engine) and :func:`bounded_completion` (back-pressured submission).

Above both executors, so that neither imports the other: the executors only move work and results; the
drivers (``analysis/batch.py``, ``data/extract.py``, the serve job store) own the output.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from dmd_pipeline.executor import DEFAULT_FILE_TIMEOUT_S, LocalExecutor, default_max_rss_mb
from dmd_pipeline.ray_executor import RayExecutor, RayOptions
from dmd_pipeline.utils import choose_threads

ENGINES = ("local", "ray")


def make_executor(
    engine: str,
    fn: Callable[[Any], Any],
    workers: int | None,
    *,
    initializer: Callable | None = None,
    initargs: Sequence[Any] = (),
    file_timeout: float | None = DEFAULT_FILE_TIMEOUT_S,
    max_rss_mb: float | None = None,
    cluster: Any = None,
    at_most: int | None = None,
) -> Any:
    """The executor of ``engine``: :class:`LocalExecutor` (``"local"``, ``workers`` processes) or
    :class:`~dmd_pipeline.ray_executor.RayExecutor` (``"ray"``, ``workers`` actors, None: one per CPU of
    the cluster; ``cluster`` a :class:`~dmd_pipeline.ray_executor.RayOptions`), with at most ``at_most``
    workers (the number of items). Ray is imported only here, for ``"ray"``."""
    if engine == "local":
        n = workers or 1
        return LocalExecutor(
            fn,
            min(n, at_most) if at_most else n,
            initializer=initializer,
            initargs=initargs,
            file_timeout=file_timeout,
            max_rss_mb=max_rss_mb,
        )
    if engine == "ray":
        return RayExecutor(
            fn,
            workers,
            initializer=initializer,
            initargs=initargs,
            file_timeout=file_timeout,
            max_rss_mb=max_rss_mb,
            options=cluster,
            at_most=at_most,
        )
    raise ValueError(f"unknown engine {engine!r} (choose one of {', '.join(ENGINES)})")


def bounded_completion(
    executor: Any, items: Iterable[Any], to_task: Callable[[Any], Any], limit: int
) -> Iterator[tuple[Any, Future]]:
    """Submit ``to_task(item)`` for each item, keeping at most ``limit`` submitted and not yet yielded,
    and yield ``(item, future)`` as each future completes (back-pressure: the driver's memory stays flat
    however many items there are; a new item is submitted as each one is handed out)."""
    it = iter(items)
    done: queue.SimpleQueue[Future] = queue.SimpleQueue()  # filled by the futures' done callbacks: O(1)
    pending: dict[Future, Any] = {}
    limit = max(1, int(limit))

    def top_up() -> None:
        while len(pending) < limit:
            try:
                item = next(it)
            except StopIteration:
                return
            fut = executor.submit(to_task(item))
            pending[fut] = item
            fut.add_done_callback(done.put)

    top_up()
    while pending:
        try:
            fut = done.get(timeout=1.0)  # a timeout keeps Ctrl-C responsive on every platform
        except queue.Empty:
            continue
        item = pending.pop(fut)
        top_up()
        yield item, fut


@dataclass(frozen=True)
class Workers:
    """What every worker of a run does: ``initializer(*initargs(threads))`` once (load its models, with
    ``threads`` torch threads), then ``task(item_task)`` per item. Both are top-level functions (the
    ``spawn`` start method pickles them by name)."""

    task: Callable[[Any], Any]
    initializer: Callable[..., None]
    initargs: Callable[[int], tuple[Any, ...]]


@dataclass(frozen=True)
class Limits:
    """Where and how items run: the engine, the number of local workers, per-item limits (``file_timeout``
    seconds, None: the default; ``max_rss_mb`` MiB, None: 80 % of RAM shared by the local workers, no limit
    of ours on Ray) and the Ray options (``cluster``, a :class:`~dmd_pipeline.ray_executor.RayOptions`)."""

    engine: str = "local"
    workers: int = 1
    file_timeout: float | None = None
    max_rss_mb: float | None = None
    cluster: Any = None


def open_executor(workers: Workers, limits: Limits, n_items: int) -> Any:
    """The executor of a run of ``n_items`` items: at most that many local workers, each with the torch
    threads the other processes leave free (fewer when the cores are busy), or Ray actors with the CPUs each
    reserves on its node."""
    timeout = limits.file_timeout if limits.file_timeout is not None else DEFAULT_FILE_TIMEOUT_S
    if limits.engine == "ray":
        cluster = limits.cluster or RayOptions()
        n, threads, limit_mb = cluster.actors, max(1, int(cluster.cpus_per_actor)), limits.max_rss_mb
    else:
        cluster = None
        n = max(1, min(limits.workers, n_items))
        threads = choose_threads(share=n)
        limit_mb = limits.max_rss_mb if limits.max_rss_mb is not None else default_max_rss_mb(n)
    return make_executor(
        limits.engine,
        workers.task,
        n,
        initializer=workers.initializer,
        initargs=workers.initargs(threads),
        file_timeout=timeout,
        max_rss_mb=limit_mb,
        cluster=cluster,
        at_most=n_items,
    )


def run_supervised(
    workers: Workers,
    limits: Limits,
    items: Sequence[Any],
    to_task: Callable[[Any], Any],
    commit: Callable[[Any, Any], None],
    fail: Callable[[Any, BaseException], None],
) -> None:
    """Run ``items`` on supervised workers: ``commit(item, result)`` as each one finishes (in completion
    order; the driver writes its files there), ``fail(item, exc)`` when its worker was lost
    (:class:`~dmd_pipeline.executor.WorkerLost`: died, timed out, over its memory limit) or its task raised;
    ``fail`` may re-raise to stop the run (leaving the executor cancels the rest and stops the workers)."""
    with open_executor(workers, limits, len(items)) as ex:
        for item, fut in bounded_completion(ex, items, to_task, 2 * ex.n_workers):
            try:
                result = fut.result()
            except Exception as exc:  # WorkerLost too
                fail(item, exc)
                continue
            commit(item, result)
