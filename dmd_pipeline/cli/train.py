"""``dmd train``: train DMD on an MMSA feature pickle and write a checkpoint folder.

Data loading goes through :func:`load_training_data`, which returns the splits; another data source (e.g. a
label CSV for text-only training) plugs in there without touching the rest of the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def parse_overrides(items: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``KEY=VALUE`` pairs -> (model-config overrides, train overrides for ``train.KEY``); VALUE is JSON or text."""
    from dmd_pipeline.errors import ConfigError

    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if key.startswith("train."):
            train[key[len("train.") :]] = value
        else:
            model[key] = value
    return model, train


def load_training_data(data: Path) -> Any:
    """Load the data file into a :class:`~dmd_pipeline.data.datasets.DataSource` (splits + provenance)."""
    from dmd_pipeline.data.datasets import load_data_source

    return load_data_source(data)


def encoder_hidden_size(path: Path) -> int:
    """``hidden_size`` from a local BERT-family folder's config.json (the text feature dim with use_bert)."""
    from dmd_pipeline.errors import InputError

    cfg = Path(path) / "config.json"
    try:
        return int(json.loads(cfg.read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(cfg, f"cannot read the text encoder's hidden_size: {exc}", stage="model") from exc


def build_config(
    preset: str,
    splits: dict[str, dict[str, Any]],
    text_encoder: str | None,
    num_classes: str,
    overrides: dict[str, Any],
    train_overrides: dict[str, Any],
) -> tuple[Any, list[str]]:
    """Preset + CLI choices + data shapes -> DMDConfig, and human-readable notes on what was adapted."""
    from dmd_pipeline.config import get_preset
    from dmd_pipeline.data.datasets import fit_config_to_data, infer_num_classes

    kw: dict[str, Any] = dict(overrides)
    if train_overrides:
        kw["train"] = dict(train_overrides)
    notes: list[str] = []
    if text_encoder is not None:
        if text_encoder.lower() == "none":
            kw.update(use_bert=False, text_encoder=None)
        else:
            if text_encoder.lower() == "bundled":
                from dmd_pipeline.model_files import text_encoder_dir

                enc = Path(text_encoder_dir())
            else:
                enc = Path(text_encoder).expanduser().resolve()
            base = get_preset(preset)
            hidden = encoder_hidden_size(enc)
            kw.update(use_bert=True, text_encoder=str(enc), feature_dims=(hidden, *base.feature_dims[1:]))
            notes.append(f"text encoder {enc} (hidden size {hidden}), fine-tuned from token ids (text_bert)")
    if num_classes.lower() == "auto":
        n = infer_num_classes(splits)
        kw["num_classes"] = n
        notes.append(f"num_classes = {n} (from classification_labels)")
    else:
        try:
            kw["num_classes"] = int(num_classes)
        except ValueError:
            from dmd_pipeline.errors import ConfigError

            raise ConfigError(f"--num-classes must be an integer or 'auto', got {num_classes!r}") from None
    config, data_notes = fit_config_to_data(get_preset(preset, **kw), splits)
    return config, notes + data_notes


def train(
    data: Path = typer.Option(
        ..., "--data", help="MMSA feature pickle (aligned_50.pkl / unaligned_50.pkl layout)."
    ),
    preset: str = typer.Option(
        "mosi_aligned", "--preset", help="Model preset (mosi_aligned, mosei_unaligned, ...)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder for the checkpoint (e.g. runs/NAME)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Maximum epochs (default: until early stopping)."
    ),
    seed: int = typer.Option(1111, "--seed", help="Random seed (official 1111)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, mps or auto."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Mini-batch size (preset: 16)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (preset: 1e-4)."),
    update_epochs: int | None = typer.Option(
        None, "--update-epochs", help="Mini-batches per optimiser step (preset: 10)."
    ),
    early_stop: int | None = typer.Option(
        None, "--early-stop", help="Epochs without improvement before stopping."
    ),
    text_encoder: str | None = typer.Option(
        None,
        "--text-encoder",
        help="Local BERT-family folder to fine-tune on text_bert, 'bundled', or 'none'.",
    ),
    num_classes: str = typer.Option(
        "1", "--num-classes", help="1 = regression, N = classes, 'auto' from the data."
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="Config override KEY=VALUE (JSON value), e.g. dst_feature_dim=16 or train.patience=2.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables."),
) -> None:
    """Train DMD on an MMSA pickle; the best epoch (validation loss) is saved to OUT as it improves."""
    from dmd_pipeline.errors import DMDError

    try:
        _run(data, preset, out, epochs, seed, device, batch_size, lr, update_epochs, early_stop, text_encoder,
             num_classes, overrides, quiet)  # fmt: skip
    except DMDError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _run(
    data: Path,
    preset: str,
    out: Path,
    epochs: int | None,
    seed: int,
    device: str,
    batch_size: int | None,
    lr: float | None,
    update_epochs: int | None,
    early_stop: int | None,
    text_encoder: str | None,
    num_classes: str,
    overrides: list[str] | None,
    quiet: bool,
) -> None:
    from rich.console import Console

    from dmd_pipeline.data.datasets import dataset_from_split
    from dmd_pipeline.data.mmsa import describe_splits
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint
    from dmd_pipeline.training.trainer import TrainConfig, Trainer, evaluate, resolve_device, set_seed

    console = Console(stderr=True, quiet=quiet)
    model_kw, train_kw = parse_overrides(overrides)
    source = load_training_data(data)
    config, notes = build_config(preset, source.splits, text_encoder, num_classes, model_kw, train_kw)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    datasets = {name: dataset_from_split(config, split, name) for name, split in source.splits.items()}
    tcfg = TrainConfig.from_model_config(
        config,
        max_epochs=epochs,
        seed=seed,
        device=str(resolve_device(device)),
        batch_size=batch_size,
        learning_rate=lr,
        update_epochs=update_epochs,
        early_stop=early_stop,
        quiet=quiet,
    )
    set_seed(seed)
    system = DMDSystem(config)
    console.print(
        f"training {config.name} on {source.path}: "
        + ", ".join(f"{k} {len(v)}" for k, v in datasets.items())
        + f" samples; {sum(p.numel() for p in system.parameters()):,} parameters; device {tcfg.device}"
    )
    meta = {
        "preset": preset,
        "feature_spec": (source.sidecar or {}).get("meta") or describe_splits(source.splits),
        "training_data": source.provenance(),
        "notes": notes,
    }
    trainer = Trainer(system, tcfg, console=console)
    result = trainer.fit(datasets["train"], datasets["valid"], checkpoint_dir=out, checkpoint_meta=meta)
    metrics = {"valid": result.best_metrics}
    if "test" in datasets and len(datasets["test"]):
        metrics["test"] = evaluate(system, datasets["test"], tcfg.batch_size, trainer.device)
    meta.update(metrics=metrics, train_config=tcfg.to_dict(), best_epoch=result.best_epoch)
    meta["stopped_early"], meta["epochs_run"] = result.stopped_early, result.epochs_run
    save_checkpoint(out, system, meta)
    from dmd_pipeline.cli.evaluate import print_metrics

    if not quiet:
        print_metrics({f"{k} (best epoch {result.best_epoch})": v for k, v in metrics.items()}, console)
    console.print(f"saved {out}")
