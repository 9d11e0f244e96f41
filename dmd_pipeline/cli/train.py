"""``dmd train``: train DMD on an MMSA feature pickle or a label CSV and write a checkpoint folder.

The command parses its flags into a :class:`~dmd_pipeline.training.run.TrainRequest` and runs
:func:`~dmd_pipeline.training.run.run_training` (data loading, config, training, saving: described there).

Several processes (``--nproc N``, or started by ``torchrun``): every process runs :func:`_rank_main` as one
rank of a ``torch.distributed`` group (:mod:`dmd_pipeline.training.distributed`); rank 0 alone prints and
writes ``OUT``. Documented in docs/cluster.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from dmd_pipeline.cli.common import Device, device_option


def train(
    data: Path | None = typer.Option(
        None, "--data", help="MMSA feature pickle (aligned_50.pkl / unaligned_50.pkl layout)."
    ),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        help="Label CSV with transcripts (video_id, clip_id, text, label, mode): text-only training.",
    ),
    preset: str = typer.Option(
        "mosi_aligned", "--preset", help="Model preset (mosi_aligned, mosei_unaligned, ...)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder for the checkpoint (e.g. runs/NAME)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Maximum epochs (default: until early stopping)."
    ),
    seed: int = typer.Option(1111, "--seed", help="Random seed (official 1111)."),
    device: Device = device_option(),
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
        help="Local BERT-family folder to fine-tune on text_bert, 'bundled', or 'none' "
        "(with --labels: the encoder of the transcripts, default bundled).",
    ),
    text_input: str = typer.Option(
        "tokens",
        "--text-input",
        help="With --labels: 'tokens' (encoder inside DMD, fine-tuned) or 'features' (frozen encoder features).",
    ),
    finetune_layers: int | None = typer.Option(
        None,
        "--finetune-layers",
        help="With a text encoder: fine-tune only its top K layers (the rest frozen, not stored). Default: all.",
    ),
    weights_dtype: str = typer.Option(
        "float32", "--weights-dtype", help="Storage type of the saved weights: float32, float16, bfloat16."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="torch CPU threads (default: the cores other processes leave free, at least 1; $DMD_THREADS).",
    ),
    eval_test: bool = typer.Option(
        True, "--eval-test/--no-eval-test", help="Evaluate the final model on the test split (when present)."
    ),
    num_classes: str = typer.Option(
        "detect",
        "--num-classes",
        help="detect (default: classification when the labels are categories, else regression), "
        "1 = regression, N = classes, auto = from classification_labels.",
    ),
    modalities: str | None = typer.Option(
        None,
        "--modalities",
        help="Modalities the model learns from, e.g. 'audio' or 'text,audio' (default all): the others "
        "are fed as zeros in training and at inference, and the model records it.",
    ),
    window_s: float | None = typer.Option(
        None,
        "--window-s",
        min=0.5,
        help="Clip length the model is meant for (e.g. 4 for RAVDESS-like clips): `dmd analyze` scores "
        "longer segments in windows of about this length.",
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="Config override KEY=VALUE (JSON value), e.g. dst_feature_dim=16 or train.patience=2.",
    ),
    ensemble: int = typer.Option(
        1,
        "--ensemble",
        min=1,
        max=32,
        help="Train K members with seeds SEED..SEED+K-1 (each with its own best epoch) and save them as one "
        "seed-ensemble model (mean class probabilities); not part of the official method. Default 1.",
    ),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        max=1024,
        help="Train on N local processes with torch.distributed DDP (gloo on CPU, NCCL with CUDA: one GPU "
        "each). --batch-size stays the global batch (each process takes batch/N, which must divide), so the "
        "run computes what one process does. Under torchrun leave it out (docs/cluster.md).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run in OUT from its last completed epoch (same data and options; "
        "the optimizer, scheduler and RNG states are restored from OUT/resume/).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs."),
) -> None:
    """Train DMD on an MMSA pickle or a label CSV; the best epoch (validation loss) is saved to OUT."""
    from dmd_pipeline.cli.common import setup_logging
    from dmd_pipeline.errors import DMDError

    setup_logging(verbose, quiet)
    device = device.value if isinstance(device, Device) else str(device)

    try:
        from dmd_pipeline.errors import ConfigError

        if (data is None) == (labels is None):
            raise ConfigError("give exactly one of --data FILE.pkl or --labels FILE.csv")
        import torch

        from dmd_pipeline.training import distributed
        from dmd_pipeline.training.run import TrainRequest, check_distributed, parse_modalities, run_training
        from dmd_pipeline.utils import choose_threads

        mods = parse_modalities(modalities)
        request = TrainRequest(
            data=data, labels=labels, preset=preset, out=out, epochs=epochs, seed=seed, device=device,
            batch_size=batch_size, lr=lr, update_epochs=update_epochs, early_stop=early_stop,
            text_encoder=text_encoder, text_input=text_input, finetune_layers=finetune_layers,
            weights_dtype=weights_dtype, num_classes=num_classes,
            overrides=tuple(overrides) if overrides is not None else None, quiet=quiet, eval_test=eval_test,
            modalities=tuple(mods) if mods is not None else None, window_s=window_s, resume=resume,
            ensemble=ensemble,
        )  # fmt: skip
        env = distributed.env_info()
        if env is not None and env.distributed:  # started by torchrun (or srun torchrun): this is one rank
            if nproc not in (1, env.world_size):
                raise ConfigError(
                    f"started by torchrun as {env.world_size} processes: leave out --nproc (got {nproc})"
                )
            check_distributed(request, env.world_size, env.local_world_size)
            torch.set_num_threads(choose_threads(threads, share=env.local_world_size))
            _rank_main(request, verbose, quiet, in_process=True)
        elif nproc > 1:
            check_distributed(request, nproc, nproc)  # usage errors before any process starts
            code = distributed.launch_local(
                _rank_main, nproc, (request, verbose, quiet, False, choose_threads(threads, share=nproc))
            )
            if code:
                raise typer.Exit(code)
        else:
            # fewer threads when other processes hold the cores
            torch.set_num_threads(choose_threads(threads))
            _show(run_training(request), quiet)
    except DMDError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _rank_main(
    request: Any, verbose: bool, quiet: bool, in_process: bool = False, threads: int | None = None
) -> None:
    """One rank of a distributed run: join the process group, train (rank 0 prints and writes), leave.

    ``in_process`` (started by torchrun): errors propagate to :func:`train`. Otherwise (a process started
    by ``--nproc``) a usage error is printed (``Error: ...``, prefixed by the rank on ranks >= 1) and the
    process exits with code 2, which :func:`~dmd_pipeline.training.distributed.launch_local` reports.
    """
    from dmd_pipeline.cli.common import setup_logging
    from dmd_pipeline.errors import DMDError
    from dmd_pipeline.training import distributed
    from dmd_pipeline.training.run import run_training

    env = distributed.env_info()
    main = env is None or env.is_main
    setup_logging(verbose, quiet or not main)  # the other ranks log warnings and errors only
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        distributed.init_process_group(request.device)
        _show(run_training(dataclasses.replace(request, quiet=request.quiet or not main)), request.quiet)
    except DMDError as exc:
        if in_process:
            raise
        prefix = "" if main else f"[rank {env.rank}] "  # type: ignore[union-attr]
        typer.echo(f"{prefix}Error: {exc}", err=True)
        raise SystemExit(2) from exc
    finally:
        distributed.shutdown()


def _show(outcome: Any, quiet: bool) -> None:
    """The metrics table of a finished run and where it was saved (nothing on ranks other than 0)."""
    if outcome is None:
        return
    from rich.console import Console

    from dmd_pipeline.cli.tables import print_metrics

    console = Console(stderr=True, quiet=quiet)
    if not quiet:
        metrics = {f"{k} (best epoch {outcome.best_epoch})": v for k, v in outcome.metrics.items()}
        print_metrics(metrics, console)
    cal = outcome.calibration
    if cal is not None:
        console.print(
            f"calibration: temperature {cal['temperature']:.3g} fitted on the valid split "
            f"(n={cal['fitted_on']['n']}, NLL): {cal['n_bins']}-bin ECE {100 * cal['ece_before']:.1f} % -> "
            f"{100 * cal['ece_after']:.1f} %; stored in config.json and applied to the model's probabilities"
        )
    console.print(f"saved {outcome.out}")
