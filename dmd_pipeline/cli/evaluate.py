"""``dmd evaluate``: metrics of a trained checkpoint on one split of a data file (rich table or JSON).

The model is a checkpoint folder or a bundled model name (``dmd_pipeline/assets/models/<name>``); the data
an MMSA feature pickle (``--data``) or a label CSV with transcripts (``--labels``, text only: the transcripts
are encoded the way the model was trained, audio and vision are zeros).
"""

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
    model: str = typer.Option(
        ..., "--model", help="Checkpoint folder written by `dmd train`, or a bundled model name."
    ),
    data: Path | None = typer.Option(None, "--data", help="MMSA feature pickle."),
    labels: Path | None = typer.Option(
        None, "--labels", help="Label CSV with transcripts (video_id, clip_id, text, label, mode)."
    ),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps or auto."),
    batch_size: int = typer.Option(64, "--batch-size", help="Evaluation batch size."),
) -> None:
    """Print every metric (MMSA definitions) of a checkpoint on one split."""
    from dmd_pipeline.errors import DMDError

    try:
        metrics, info = run_evaluation(model, data, split, device, batch_size, labels=labels)
    except DMDError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        payload = {**info, "metrics": {k: _json_value(v) for k, v in metrics.items()}}
        typer.echo(json.dumps(payload, indent=2))
    else:
        print_metrics({f"{split} (n={info['n']})": metrics})


def resolve_model(model: str | Path) -> Path:
    """A checkpoint folder/file as given, else a bundled model name (``dmd_pipeline/assets/models/<name>``)."""
    p = Path(model).expanduser()
    if p.exists():
        return p
    try:
        from dmd_pipeline.analysis.registry import resolve_model_dir
    except ImportError:  # the registry is optional here
        bundled = Path(__file__).resolve().parent.parent / "assets" / "models" / str(model)
        return bundled if bundled.is_dir() else p
    from dmd_pipeline.errors import ModelFileError

    try:
        return resolve_model_dir(str(model))[1]
    except ModelFileError as exc:
        if "/" in str(model) or "\\" in str(model):
            return p  # a missing folder: load_checkpoint says "not found"
        raise exc


def label_source_for_model(labels: Path, system: Any, meta: dict, split: str) -> Any:
    """Encode one split of a label CSV the way ``system`` was trained (token ids or frozen features)."""
    from dmd_pipeline.data.text_only import load_label_source
    from dmd_pipeline.models.checkpoint import BUNDLED_TEXT_ENCODER, resolve_text_encoder

    cfg = system.config
    if cfg.use_bert:
        enc = resolve_text_encoder(cfg.text_encoder)
    else:
        enc = resolve_text_encoder(meta.get("text_features_encoder") or BUNDLED_TEXT_ENCODER)
    side = (int(cfg.feature_dims[1]), int(cfg.feature_dims[2]))
    return load_label_source(
        labels, enc, tuple(cfg.seq_lens), side, text_features=not cfg.use_bert, only_splits=[split]
    )


def run_evaluation(
    model: str | Path,
    data: Path | None,
    split: str,
    device: str = "cpu",
    batch_size: int = 64,
    labels: Path | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Load the checkpoint and data, return (metrics, info about what was evaluated)."""
    from dmd_pipeline.cli.train import load_training_data
    from dmd_pipeline.data.datasets import dataset_from_split
    from dmd_pipeline.errors import ConfigError, DataError
    from dmd_pipeline.models.checkpoint import load_checkpoint
    from dmd_pipeline.training.trainer import evaluate as evaluate_dataset
    from dmd_pipeline.training.trainer import resolve_device

    if (data is None) == (labels is None):
        raise ConfigError("give exactly one of --data FILE.pkl or --labels FILE.csv")
    dev = resolve_device(device)
    from dmd_pipeline.cli.train import quiet_transformers

    quiet_transformers()
    system, meta = load_checkpoint(resolve_model(model), device=dev)
    if labels is not None:
        source = label_source_for_model(labels, system, meta, split)
    else:
        source = load_training_data(data)  # type: ignore[arg-type]
    if split not in source.splits:
        raise DataError(data or labels, f"no split {split!r}; available: {sorted(source.splits)}")
    dataset = dataset_from_split(system.config, source.splits[split], split)
    metrics = evaluate_dataset(system, dataset, batch_size, dev)
    info = {
        "model": str(model),
        "model_name": meta.get("name"),
        "data": source.path,
        "data_sha256": source.sha256,
        "split": split,
        "n": len(dataset),
        "preset": meta.get("preset"),
        "num_classes": system.config.num_classes,
    }
    return metrics, info
