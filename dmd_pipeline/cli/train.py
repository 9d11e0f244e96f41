"""``dmd train``: train DMD on an MMSA feature pickle or a label CSV and write a checkpoint folder.

Data loading goes through :func:`~dmd_pipeline.data.datasets.load_data_source` (``--data FILE.pkl``) or :func:`load_label_data`
(``--labels FILE.csv``: transcripts only, see :mod:`dmd_pipeline.data.text_only`; the text goes through the
encoder either as token ids fine-tuned inside DMD, ``--text-input tokens``, or as frozen features,
``--text-input features``; audio and vision are zeros and the model records ``"modalities": ["text"]``).

Several processes (``--nproc N``, or started by ``torchrun``): every process runs :func:`_run` as one rank of
a ``torch.distributed`` group (:mod:`dmd_pipeline.training.distributed`); rank 0 alone prints and writes
``OUT``. Documented in docs/cluster.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dmd_pipeline.cli.common import Device, device_option, quiet_transformers
from dmd_pipeline.cli.tables import print_metrics


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


def encoder_folder(text_encoder: str | None) -> Path:
    """The local folder of ``--text-encoder`` (``bundled`` or None = the bundled MiniLM, sha256-checked)."""
    from dmd_pipeline.model_files import text_encoder_dir

    if text_encoder is None or text_encoder.lower() == "bundled":
        return Path(text_encoder_dir())
    return Path(text_encoder_dir(text_encoder))


def load_label_data(
    labels: Path,
    preset: str,
    model_overrides: dict[str, Any],
    text_encoder: str | None,
    text_input: str,
    only_splits: list[str] | None = None,
) -> tuple[Any, str | None, dict[str, Any]]:
    """Label CSV -> (DataSource, the --text-encoder value for :func:`build_config`, meta to record).

    Sequence lengths come from the preset (and ``--set seq_lens=...``), audio/vision dims from
    ``--set feature_dims=[t,a,v]`` when given, else from the project's extractors.
    """
    from dmd_pipeline.config import get_preset
    from dmd_pipeline.data.text_only import TEXT_ONLY_META, describe_text_only, load_label_source
    from dmd_pipeline.errors import ConfigError
    from dmd_pipeline.models.checkpoint import BUNDLED_TEXT_ENCODER, text_encoder_ref

    if text_input not in ("tokens", "features"):
        raise ConfigError(f"--text-input must be 'tokens' or 'features', got {text_input!r}")
    if text_encoder is not None and text_encoder.lower() == "none":
        raise ConfigError("--labels needs a text encoder (--text-encoder bundled or a local folder)")
    enc = encoder_folder(text_encoder)
    base = get_preset(preset, **model_overrides)
    side = (
        tuple(int(x) for x in model_overrides["feature_dims"][1:])
        if "feature_dims" in model_overrides
        else None
    )
    features = text_input == "features"
    source = load_label_source(labels, enc, tuple(base.seq_lens), side, features, only_splits)  # type: ignore[arg-type]
    ref = text_encoder_ref(enc)
    meta: dict[str, Any] = {
        **TEXT_ONLY_META,
        "feature_spec": describe_text_only(source.splits, str(ref), features),
    }
    if features:
        meta["text_features_encoder"] = ref
        if ref != BUNDLED_TEXT_ENCODER:
            meta["feature_spec"]["config"] = {"text_model": str(enc)}
    return source, None if features else str(enc), meta


def encoder_hidden_size(path: Path) -> int:
    """``hidden_size`` from a local BERT-family folder's config.json (the text feature dim with use_bert)."""
    from dmd_pipeline.errors import InputError

    cfg = Path(path) / "config.json"
    try:
        return int(json.loads(cfg.read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(cfg, f"cannot read the text encoder's hidden_size: {exc}", stage="model") from exc


def _categorical_data(splits: dict[str, dict[str, Any]]) -> bool:
    """True when the data's labels are categories: classification labels present and regression labels
    missing or NaN (what ``dmd extract`` writes for a categorical label file)."""
    import numpy as np

    has_cls = any("classification_labels" in s for s in splits.values())
    reg = [
        np.asarray(s["regression_labels"], dtype=np.float64)
        for s in splits.values()
        if "regression_labels" in s
    ]
    numeric = any(r.size and np.isfinite(r).all() for r in reg)
    return has_cls and not numeric


def zero_unused_modalities(datasets: dict[str, Any], modalities: list[str]) -> None:
    """Feed zeros for every modality the model is not trained with (in place, every split)."""
    attrs = {"text": "text", "audio": "audio", "vision": "vision"}
    for ds in datasets.values():
        for mod, attr in attrs.items():
            if mod not in modalities:
                getattr(ds, attr).zero_()


def parse_modalities(value: str | None) -> list[str] | None:
    """``--modalities audio`` / ``text,audio`` -> canonical list in (text, audio, vision) order."""
    if value is None or value.strip().lower() in ("", "all"):
        return None
    from dmd_pipeline.errors import ConfigError

    alias = {"t": "text", "words": "text", "a": "audio", "voice": "audio", "v": "vision", "face": "vision"}
    got = {alias.get(m.strip().lower(), m.strip().lower()) for m in value.split(",") if m.strip()}
    bad = sorted(got - {"text", "audio", "vision"})
    if bad or not got:
        raise ConfigError(f"--modalities: unknown modality {', '.join(bad) or value!r} (text, audio, vision)")
    return [m for m in ("text", "audio", "vision") if m in got]


def _train_ensemble(
    first: Any,
    config: Any,
    tcfg: Any,
    datasets: dict[str, Any],
    out: Path,
    meta: dict[str, Any],
    size: int,
    resume: bool,
    console: Any,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Train ``size`` members one after the other (seed, seed+1, ...), each in ``OUT/members/<k>`` with its
    own best epoch (so a killed run keeps the finished members and ``--resume`` continues), and return
    (the :class:`~dmd_pipeline.models.ensemble.DMDEnsemble`, the last member's TrainResult, per-member info)."""
    import dataclasses

    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.ensemble import DMDEnsemble
    from dmd_pipeline.training.trainer import Trainer, TrainResult, set_seed

    members, info, result = [], [], None
    for k in range(size):
        seed_k = int(tcfg.seed) + k
        mdir = out / "members" / str(k)
        done = _finished_member(mdir, k, seed_k) if resume else None
        if done is not None:  # finished before the interruption: kept, not trained again
            system, minfo = done
            console.print(f"ensemble member {k + 1}/{size} (seed {seed_k}): finished earlier, loaded")
            result = TrainResult(
                best_epoch=minfo["best_epoch"],
                best_score=float(minfo["valid"].get(tcfg.key_eval, float("nan"))),
                best_metrics=dict(minfo["valid"]),
                epochs_run=minfo["epochs_run"],
                stopped_early=False,
                history=[],
            )
            members.append(system)
            info.append(minfo)
            continue
        set_seed(seed_k)
        system = first if k == 0 else DMDSystem(config)
        cfg_k = dataclasses.replace(tcfg, seed=seed_k)
        console.print(f"ensemble member {k + 1}/{size} (seed {seed_k})")
        result = Trainer(system, cfg_k, console=console).fit(
            datasets["train"],
            datasets["valid"],
            checkpoint_dir=mdir,
            checkpoint_meta={**meta, "ensemble_member": k, "ensemble_seed": seed_k},
            resume=resume and (mdir / "resume").is_dir(),
        )
        members.append(system)
        info.append(
            {
                "seed": seed_k,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "seconds": round(sum(float(h.seconds) for h in result.history), 1),
                "valid": {k2: float(v) for k2, v in result.best_metrics.items()},
            }
        )
    return DMDEnsemble(config, size, members), result, info


def _finished_member(mdir: Path, k: int, seed: int) -> tuple[Any, dict[str, Any]] | None:
    """A member checkpoint left by an earlier run of the same ensemble that finished training (its
    checkpoint is there and no resume state is left), as (system, info); None otherwise."""
    import json as _json

    from dmd_pipeline.models.checkpoint import load_checkpoint

    if (mdir / "resume").exists() or not (mdir / "config.json").is_file():
        return None
    try:
        meta = _json.loads((mdir / "config.json").read_text(encoding="utf-8"))
        history = _json.loads((mdir / "history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("ensemble_member") != k or meta.get("ensemble_seed", seed) != seed:
        return None
    system, _ = load_checkpoint(mdir)
    valid = (meta.get("metrics") or {}).get("valid") or {}
    info = {
        "seed": seed,
        "best_epoch": int(meta.get("best_epoch") or 0),
        "epochs_run": len(history) if isinstance(history, list) else 0,
        "seconds": round(sum(float(h.get("seconds") or 0.0) for h in history if isinstance(h, dict)), 1)
        if isinstance(history, list)
        else None,
        "valid": {str(a): float(b) for a, b in valid.items() if isinstance(b, (int, float))},
    }
    return system, info


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
            from dmd_pipeline.models.checkpoint import text_encoder_ref

            enc = encoder_folder(text_encoder)
            base = get_preset(preset)
            hidden = encoder_hidden_size(enc)
            kw.update(use_bert=True, text_encoder=str(enc), feature_dims=(hidden, *base.feature_dims[1:]))
            notes.append(
                f"text encoder {text_encoder_ref(enc)} (hidden size {hidden}), fed token ids (text_bert)"
            )
    if num_classes.lower() == "detect":
        num_classes = "auto" if _categorical_data(splits) else "1"
        if num_classes == "1":
            notes.append("regression (num_classes = 1): the data has numeric labels")
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
        from dmd_pipeline.utils import choose_threads

        run_kw: dict[str, Any] = dict(
            data=data, labels=labels, preset=preset, out=out, epochs=epochs, seed=seed, device=device,
            batch_size=batch_size, lr=lr, update_epochs=update_epochs, early_stop=early_stop,
            text_encoder=text_encoder, text_input=text_input, finetune_layers=finetune_layers,
            weights_dtype=weights_dtype, num_classes=num_classes, overrides=overrides, quiet=quiet,
            eval_test=eval_test, modalities=parse_modalities(modalities), window_s=window_s, resume=resume,
            ensemble=ensemble,
        )  # fmt: skip
        env = distributed.env_info()
        if env is not None and env.distributed:  # started by torchrun (or srun torchrun): this is one rank
            if nproc not in (1, env.world_size):
                raise ConfigError(
                    f"started by torchrun as {env.world_size} processes: leave out --nproc (got {nproc})"
                )
            check_distributed(run_kw, env.world_size, env.local_world_size)
            torch.set_num_threads(choose_threads(threads, share=env.local_world_size))
            _rank_main(run_kw, verbose, quiet, in_process=True)
        elif nproc > 1:
            check_distributed(run_kw, nproc, nproc)  # usage errors before any process starts
            code = distributed.launch_local(
                _rank_main, nproc, (run_kw, verbose, quiet, False, choose_threads(threads, share=nproc))
            )
            if code:
                raise typer.Exit(code)
        else:
            # fewer threads when other processes hold the cores
            torch.set_num_threads(choose_threads(threads))
            _run(**run_kw)
    except DMDError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc


def check_distributed(run_kw: dict[str, Any], world_size: int, local_world_size: int) -> None:
    """Usage errors of a run on ``world_size`` processes, raised before training starts: the input file
    must exist, the global batch size must divide by the number of processes, the device must be cpu or
    cuda with a GPU per local process (ConfigError / DataError)."""
    from dmd_pipeline.config import get_preset
    from dmd_pipeline.errors import DataError
    from dmd_pipeline.training import distributed

    for key, what in (("data", "data file not found"), ("labels", "label CSV not found")):
        if run_kw.get(key) is not None and not Path(run_kw[key]).is_file():
            raise DataError(Path(run_kw[key]), what)  # as the loaders say it, before N processes start
    distributed.rank_device(str(run_kw["device"]), distributed.DistInfo(0, world_size, 0, local_world_size))
    batch = run_kw.get("batch_size")
    if batch is None:
        _, train_kw = parse_overrides(run_kw.get("overrides"))
        batch = train_kw.get("batch_size", get_preset(str(run_kw["preset"])).train.get("batch_size", 16))
    if int(batch) % world_size:
        from dmd_pipeline.errors import ConfigError

        raise ConfigError(distributed.batch_error(int(batch), world_size))


def _rank_main(
    run_kw: dict[str, Any], verbose: bool, quiet: bool, in_process: bool = False, threads: int | None = None
) -> None:
    """One rank of a distributed run: join the process group, train (rank 0 prints and writes), leave.

    ``in_process`` (started by torchrun): errors propagate to :func:`train`. Otherwise (a process started
    by ``--nproc``) a usage error is printed (``Error: ...``, prefixed by the rank on ranks >= 1) and the
    process exits with code 2, which :func:`~dmd_pipeline.training.distributed.launch_local` reports.
    """
    from dmd_pipeline.cli.common import setup_logging
    from dmd_pipeline.errors import DMDError
    from dmd_pipeline.training import distributed

    env = distributed.env_info()
    main = env is None or env.is_main
    setup_logging(verbose, quiet or not main)  # the other ranks log warnings and errors only
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        distributed.init_process_group(str(run_kw["device"]))
        _run(**{**run_kw, "quiet": run_kw["quiet"] or not main})
    except DMDError as exc:
        if in_process:
            raise
        prefix = "" if main else f"[rank {env.rank}] "  # type: ignore[union-attr]
        typer.echo(f"{prefix}Error: {exc}", err=True)
        raise SystemExit(2) from exc
    finally:
        distributed.shutdown()


def _run(
    data: Path | None,
    labels: Path | None,
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
    text_input: str,
    finetune_layers: int | None,
    weights_dtype: str,
    num_classes: str,
    overrides: list[str] | None,
    quiet: bool,
    eval_test: bool = True,
    modalities: list[str] | None = None,
    window_s: float | None = None,
    resume: bool = False,
    ensemble: int = 1,
) -> None:
    import time

    quiet_transformers()
    from dmd_pipeline.training import distributed

    rank = distributed.current()  # rank 0 of 1 unless a process group is initialised

    from rich.console import Console

    from dmd_pipeline.data.datasets import dataset_from_split, load_data_source
    from dmd_pipeline.data.mmsa import describe_splits
    from dmd_pipeline.device import resolve_device
    from dmd_pipeline.errors import ConfigError
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import (
        freeze_text_encoder,
        save_checkpoint,
        text_encoder_ref,
        text_encoder_sha256,
    )
    from dmd_pipeline.training.trainer import TrainConfig, Trainer, evaluate, set_seed

    console = Console(stderr=True, quiet=quiet)
    model_kw, train_kw = parse_overrides(overrides)
    extra_meta: dict[str, Any] = {}
    if labels is not None:
        source, text_encoder, extra_meta = load_label_data(labels, preset, model_kw, text_encoder, text_input)
    else:
        source = load_data_source(data)  # type: ignore[arg-type]
    config, notes = build_config(preset, source.splits, text_encoder, num_classes, model_kw, train_kw)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    datasets = {name: dataset_from_split(config, split, name) for name, split in source.splits.items()}
    if modalities is not None:
        if extra_meta.get("modalities") and set(modalities) - set(extra_meta["modalities"]):
            raise ConfigError(
                f"--modalities {','.join(modalities)}: this data only has {extra_meta['modalities']}"
            )
        zero_unused_modalities(datasets, modalities)
        extra_meta["modalities"] = modalities
        for mod in ("text", "audio", "vision"):
            if mod not in modalities:
                extra_meta[f"{mod}_input"] = "zeros (not used by this model)"
    if window_s is not None:
        extra_meta["analysis_window_s"] = float(window_s)
    mask, noise = (
        float(config.train.get("augment_time_mask", 0.0)),
        float(config.train.get("augment_noise", 0.0)),
    )
    if mask > 0 or noise > 0:
        from dmd_pipeline.data.datasets import AudioAugment

        datasets["train"].augment = AudioAugment(time_mask=mask, noise=noise)
        notes.append(f"training-time audio augmentation: time mask {mask}, noise {noise}")
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
    for key in list(config.train):  # record the effective values (CLI flags) in the model config too
        if hasattr(tcfg, key):
            config.train[key] = getattr(tcfg, key)
    set_seed(seed)
    system = DMDSystem(config)
    meta: dict[str, Any] = {
        "preset": preset,
        "feature_spec": extra_meta.get("feature_spec")
        or (source.sidecar or {}).get("meta")
        or describe_splits(source.splits),
        "training_data": source.provenance(),
        "notes": notes,
        **extra_meta,
        "weights_dtype": weights_dtype,
    }
    if finetune_layers is not None:
        if not config.use_bert:
            raise ConfigError("--finetune-layers needs a text encoder inside the model (use_bert)")
        trainable = freeze_text_encoder(system, finetune_layers)
        meta["text_encoder_base"] = {
            "ref": text_encoder_ref(config.text_encoder),
            "sha256": text_encoder_sha256(config.text_encoder),
            "finetune_layers": finetune_layers,
            "stored": "only the fine-tuned top layers; the rest is loaded from the base encoder",
        }
        notes.append(f"text encoder: top {finetune_layers} layer(s) fine-tuned ({trainable:,} parameters)")
    n_train = sum(p.numel() for p in system.parameters() if p.requires_grad)
    console.print(
        f"training {config.name} on {source.path}: "
        + ", ".join(f"{k} {len(v)}" for k, v in datasets.items())
        + f" samples; {sum(p.numel() for p in system.parameters()):,} parameters ({n_train:,} trainable);"
        + f" device {tcfg.device}"
    )
    trainer = Trainer(system, tcfg, console=console)
    t0 = time.perf_counter()
    if ensemble > 1:
        system, result, member_info = _train_ensemble(
            system, config, tcfg, datasets, out, meta, ensemble, resume, console
        )
        if not rank.is_main:  # the members were trained together; rank 0 evaluates and saves
            return
        meta.update(ensemble_size=ensemble, ensemble_members=member_info)
        result.best_metrics = evaluate(system, datasets["valid"], tcfg.batch_size, trainer.device)
    else:
        result = trainer.fit(
            datasets["train"], datasets["valid"], checkpoint_dir=out, checkpoint_meta=meta, resume=resume
        )
        if not rank.is_main:
            return
    import torch

    seconds = round(time.perf_counter() - t0, 1)
    if ensemble > 1:  # the members' own epoch times (members kept from an interrupted run count too)
        seconds = round(sum(float(m.get("seconds") or 0.0) for m in meta["ensemble_members"]), 1)
    meta["training_time"] = {
        "seconds": seconds,
        "epochs_run": result.epochs_run,
        "torch_threads": torch.get_num_threads(),
        "device": tcfg.device,
        "processes": rank.world_size,
    }
    metrics = {"valid": result.best_metrics}
    if eval_test and "test" in datasets and len(datasets["test"]):
        metrics["test"] = evaluate(system, datasets["test"], tcfg.batch_size, trainer.device)
    meta.update(metrics=metrics, train_config=tcfg.to_dict(), best_epoch=result.best_epoch)
    meta["stopped_early"], meta["epochs_run"] = result.stopped_early, result.epochs_run
    save_checkpoint(out, system, meta)
    if not quiet:
        print_metrics({f"{k} (best epoch {result.best_epoch})": v for k, v in metrics.items()}, console)
    console.print(f"saved {out}")
