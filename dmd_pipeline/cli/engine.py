"""``--engine local|ray`` and the Ray options shared by ``dmd analyze`` and ``dmd extract``.

``--engine local`` (the default) runs files in this machine's worker processes (``-j N``); Ray is never
imported. ``--engine ray`` runs them on Ray actors (``--actors N``, ``--address``, ``--gpus-per-actor``,
``--cpus-per-actor``; docs/cluster.md). Mixing the two engines' options is a usage error (exit 2): ``-j``
with ``--engine ray``, or a Ray option with ``--engine local``, would otherwise be silently ignored.

Nothing heavy is imported here: ``dmd --help`` imports this module.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from enum import Enum
from typing import Any

import typer

from dmd_pipeline.cli.common import usage_error


class Engine(str, Enum):
    """Where files run: this machine's worker processes, or the actors of a Ray cluster."""

    local = "local"
    ray = "ray"


def engine_option() -> Any:
    """``--engine local|ray``."""
    return typer.Option(
        Engine.local,
        "--engine",
        help="local: worker processes on this machine (-j N); ray: actors of a Ray cluster (--actors N, "
        "--address; needs pip install 'dmd-pipeline\\[cluster]'; inputs on storage every node reads).",
    )


def address_option() -> Any:
    """``--address``: which Ray cluster."""
    return typer.Option(
        None,
        "--address",
        help="With --engine ray: auto (the cluster started on this machine by `ray start`), "
        "ray://host:port (Ray Client) or host:port; default $RAY_ADDRESS, else a private Ray instance on "
        "this machine.",
    )


def actors_option() -> Any:
    """``--actors N``."""
    return typer.Option(
        None,
        "--actors",
        min=1,
        help="With --engine ray: Ray actors, each loads the models once (default: one per CPU of the "
        "cluster, divided by --cpus-per-actor).",
    )


def gpus_per_actor_option() -> Any:
    """``--gpus-per-actor F``."""
    return typer.Option(
        0.0,
        "--gpus-per-actor",
        min=0.0,
        help="With --engine ray: GPUs each actor reserves (fractions share a GPU); >0 runs the models on "
        "cuda. A cluster without GPUs is an error, not a wait.",
    )


def cpus_per_actor_option() -> Any:
    """``--cpus-per-actor F``."""
    return typer.Option(
        1.0,
        "--cpus-per-actor",
        min=0.01,
        help="With --engine ray: CPUs each actor reserves (also its torch threads).",
    )


def cluster_options(
    engine: Engine,
    *,
    workers: int,
    address: str | None,
    actors: int | None,
    gpus_per_actor: float,
    cpus_per_actor: float,
    verbose: bool = False,
) -> Any:
    """Check the engine options; returns a :class:`~dmd_pipeline.ray_executor.RayOptions` for
    ``--engine ray`` (None for local). Raises the exit-2 usage error for options of the other engine and
    for ``--engine ray`` without Ray installed (naming ``pip install 'dmd-pipeline[cluster]'``)."""
    ray_given = [
        name
        for name, given in (
            ("--address", address is not None),
            ("--actors", actors is not None),
            ("--gpus-per-actor", gpus_per_actor != 0.0),
            ("--cpus-per-actor", cpus_per_actor != 1.0),
        )
        if given
    ]
    if engine == Engine.local:
        if ray_given:
            raise usage_error(
                f"{', '.join(ray_given)} apply to --engine ray; the local engine takes -j N worker processes"
            )
        return None
    if workers > 1:
        raise usage_error("-j/--workers sets the local engine's processes; with --engine ray give --actors N")
    from dmd_pipeline.ray_executor import RAY_INSTALL, RayOptions, ray_available

    if not ray_available():
        raise usage_error(f"--engine ray needs Ray, which is not installed: {RAY_INSTALL}")
    return RayOptions(
        address=address,
        actors=actors,
        gpus_per_actor=float(gpus_per_actor),
        cpus_per_actor=float(cpus_per_actor),
        log_to_driver=verbose,
    )


def ray_device(device: str, gpus_per_actor: float) -> str:
    """The device the actors use: ``auto`` is cuda when each actor reserves a GPU, else cpu (it is decided
    here, not on the driver, which may have no GPU); ``cuda`` without ``--gpus-per-actor`` is an error
    (Ray gives an actor only the GPUs it reserves)."""
    if device == "auto":
        return "cuda" if gpus_per_actor > 0 else "cpu"
    if device == "cuda" and gpus_per_actor <= 0:
        raise usage_error("--device cuda with --engine ray needs --gpus-per-actor > 0 (e.g. 1)")
    return device


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM acts as Ctrl-C (KeyboardInterrupt): the run stops the way Ctrl-C stops
    it, so the actors are stopped, the output lock is released and no half-written file stays
    (results are written atomically; a re-run resumes). Only in the main thread; restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except (ValueError, OSError):  # not allowed here: run as is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
