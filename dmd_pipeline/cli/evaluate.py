"""``dmd evaluate``: metrics of a trained checkpoint on one split of a data file (rich table or JSON)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer


def print_metrics(tables: dict[str, dict[str, float]], console: Any = None) -> None:
    """One rich table: a row per metric, a column per named result (e.g. valid / test)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="DMD metrics", title_justify="left")
    table.add_column("metric")
    for name in tables:
        table.add_column(name, justify="right")
    keys: list[str] = []
    for values in tables.values():
        keys += [k for k in values if k not in keys]
    for key in keys:
        cells = []
        for values in tables.values():
            v = values.get(key)
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}")
        table.add_row(key, *cells)
    console.print(table)


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def evaluate(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder written by `dmd train`."),
    data: Path = typer.Option(..., "--data", help="MMSA feature pickle."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps or auto."),
    batch_size: int = typer.Option(64, "--batch-size", help="Evaluation batch size."),
) -> None:
    """Print every metric (MMSA definitions) of a checkpoint on one split."""
    from dmd_pipeline.errors import DMDError

    try:
        metrics, info = run_evaluation(model, data, split, device, batch_size)
    except DMDError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        payload = {**info, "metrics": {k: _json_value(v) for k, v in metrics.items()}}
        typer.echo(json.dumps(payload, indent=2))
    else:
        print_metrics({f"{split} (n={info['n']})": metrics})


def run_evaluation(
    model: Path, data: Path, split: str, device: str = "cpu", batch_size: int = 64
) -> tuple[dict[str, float], dict[str, Any]]:
    """Load the checkpoint and data, return (metrics, info about what was evaluated)."""
    from dmd_pipeline.cli.train import load_training_data
    from dmd_pipeline.data.datasets import dataset_from_split
    from dmd_pipeline.errors import DataError
    from dmd_pipeline.models.checkpoint import load_checkpoint
    from dmd_pipeline.training.trainer import evaluate as evaluate_dataset
    from dmd_pipeline.training.trainer import resolve_device

    dev = resolve_device(device)
    system, meta = load_checkpoint(model, device=dev)
    source = load_training_data(data)
    if split not in source.splits:
        raise DataError(data, f"no split {split!r}; available: {sorted(source.splits)}")
    dataset = dataset_from_split(system.config, source.splits[split], split)
    metrics = evaluate_dataset(system, dataset, batch_size, dev)
    info = {
        "model": str(model),
        "data": source.path,
        "split": split,
        "n": len(dataset),
        "preset": meta.get("preset"),
        "num_classes": system.config.num_classes,
    }
    return metrics, info
