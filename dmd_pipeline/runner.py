"""What the drivers use to run items on an executor: :func:`make_executor` picks the engine (``"local"``:
:class:`~dmd_pipeline.executor.LocalExecutor`; ``"ray"``: :class:`~dmd_pipeline.ray_executor.RayExecutor`,
the same interface on Ray actors) and :func:`bounded_completion` submits with a bounded number of items in
flight (back-pressure), handing results out as they complete.

Above both executors, so that neither imports the other: the executors only move work and results; the
drivers (``analysis/batch.py``, ``data/extract.py``, the serve job store) own the output.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from dmd_pipeline.executor import DEFAULT_FILE_TIMEOUT_S, LocalExecutor

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
        from dmd_pipeline.ray_executor import RayExecutor  # here: it is the module that imports ray

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
