"""``dmd selftest``: check the DMD core against the official golden references; prints one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def selftest(
    reference: list[Path] | None = typer.Option(  # noqa: B008
        None,
        "--reference",
        help="Reference archive (.npz); repeatable. Default: <shared>/fixtures/dmd_reference/*.npz.",
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No JSON report: the exit code only."),
) -> None:
    """Rebuild each reference configuration, load the official weights and compare every output, edge, loss
    term and gradient with the README's tolerances. Exit code 0 only when everything is within tolerance."""
    import torch

    from dmd_pipeline.cli.common import setup_logging
    from dmd_pipeline.errors import DMDError
    from dmd_pipeline.models.selftest import run_selftest

    setup_logging(verbose=verbose, quiet=quiet)
    torch.set_num_threads(threads)
    try:
        report = run_selftest(list(reference) if reference else None)
    except DMDError as exc:
        typer.echo(json.dumps({"ok": False, "error": str(exc)}))
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not quiet:
        typer.echo(json.dumps(report))
    raise typer.Exit(0 if report["ok"] else 1)
