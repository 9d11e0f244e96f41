"""The library runner of ``dmd train``: a :class:`TrainRequest` (the command's flags, parsed) -> a trained model
folder (safetensors + ``config.json``).

Data loading goes through :func:`~dmd_pipeline.data.datasets.load_data_source` (``data``: an MMSA pickle)
or :func:`load_label_data` (``labels``: transcripts only, see :mod:`dmd_pipeline.data.text_only`; the text
goes through the encoder either as token ids fine-tuned inside DMD, ``text_input="tokens"``, or as frozen
features, ``text_input="features"``; audio and vision are zeros and the model records
``"modalities": ["text"]``). :func:`build_config` adapts the preset to the data; :func:`run_training` trains
one model or a seed ensemble and writes it. On several processes (``torch.distributed``) every rank runs
:func:`run_training`; rank 0 alone prints and writes (:mod:`dmd_pipeline.training.distributed`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from dmd_pipeline.calibration import fit_calibration
from dmd_pipeline.config import DMDConfig, get_preset
from dmd_pipeline.data.datasets import (
    AudioAugment,
    DataSource,
    dataset_from_split,
    fit_config_to_data,
    infer_num_classes,
    load_data_source,
)
from dmd_pipeline.data.mmsa import describe_splits
from dmd_pipeline.data.text_only import TEXT_ONLY_META, describe_text_only, load_label_source
from dmd_pipeline.device import resolve_device
from dmd_pipeline.errors import ConfigError, DataError, InputError
from dmd_pipeline.model_files import text_encoder_dir
from dmd_pipeline.models import DMDSystem
from dmd_pipeline.models.checkpoint import (
    BUNDLED_TEXT_ENCODER,
    freeze_text_encoder,
    load_checkpoint,
    save_checkpoint,
    text_encoder_ref,
    text_encoder_sha256,
)
from dmd_pipeline.models.ensemble import DMDEnsemble
from dmd_pipeline.training import distributed
from dmd_pipeline.training.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    evaluate,
    predict_dataset,
    set_seed,
)
from dmd_pipeline.utils import quiet_transformers


@dataclass(frozen=True)
class TrainOutcome:
    """Where the model was saved, its metrics per split (``valid`` at the best epoch, ``test``) and that epoch."""

    out: Path
    metrics: dict[str, dict[str, float]]
    best_epoch: int
    #: A classifier's ``calibration`` block as recorded in its config.json (None: regression, or no valid data).
    calibration: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainRequest:
    """Everything ``dmd train`` was asked to do (its flags, parsed)."""

    out: Path
    data: Path | None = None
    labels: Path | None = None
    preset: str = "mosi_aligned"
    epochs: int | None = None
    seed: int = 1111
    device: str = "auto"
    batch_size: int | None = None
    lr: float | None = None
    update_epochs: int | None = None
    early_stop: int | None = None
    text_encoder: str | None = None
    text_input: str = "tokens"
    finetune_layers: int | None = None
    weights_dtype: str = "float32"
    num_classes: str = "detect"
    overrides: tuple[str, ...] | None = None
    quiet: bool = False
    eval_test: bool = True
    modalities: tuple[str, ...] | None = None
    window_s: float | None = None
    resume: bool = False
    ensemble: int = 1


def parse_overrides(items: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``KEY=VALUE`` pairs -> (model-config overrides, train overrides for ``train.KEY``); VALUE is JSON or text."""

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

    alias = {"t": "text", "words": "text", "a": "audio", "voice": "audio", "v": "vision", "face": "vision"}
    got = {alias.get(m.strip().lower(), m.strip().lower()) for m in value.split(",") if m.strip()}
    bad = sorted(got - {"text", "audio", "vision"})
    if bad or not got:
        raise ConfigError(f"--modalities: unknown modality {', '.join(bad) or value!r} (text, audio, vision)")
    return [m for m in ("text", "audio", "vision") if m in got]


def _train_ensemble(
    first: DMDSystem,
    config: DMDConfig,
    tcfg: TrainConfig,
    datasets: dict[str, Any],
    out: Path,
    meta: dict[str, Any],
    size: int,
    resume: bool,
    console: Console,
) -> tuple[DMDEnsemble, TrainResult, list[dict[str, Any]]]:
    """Train ``size`` members one after the other (seed, seed+1, ...), each in ``OUT/members/<k>`` with its
    own best epoch (so a killed run keeps the finished members and ``--resume`` continues), and return
    (the :class:`~dmd_pipeline.models.ensemble.DMDEnsemble`, the last member's TrainResult, per-member info)."""
    import dataclasses

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

    kw: dict[str, Any] = dict(overrides)
    if train_overrides:
        kw["train"] = dict(train_overrides)
    notes: list[str] = []
    if text_encoder is not None:
        if text_encoder.lower() == "none":
            kw.update(use_bert=False, text_encoder=None)
        else:
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
            raise ConfigError(f"--num-classes must be an integer or 'auto', got {num_classes!r}") from None
    config, data_notes = fit_config_to_data(get_preset(preset, **kw), splits)
    return config, notes + data_notes


def check_distributed(request: TrainRequest, world_size: int, local_world_size: int) -> None:
    """Usage errors of a run on ``world_size`` processes, raised before training starts: the input file
    must exist, the global batch size must divide by the number of processes, the device must be cpu or
    cuda with a GPU per local process (ConfigError / DataError)."""

    for path, what in ((request.data, "data file not found"), (request.labels, "label CSV not found")):
        if path is not None and not Path(path).is_file():
            raise DataError(Path(path), what)  # as the loaders say it, before N processes start
    distributed.rank_device(request.device, distributed.DistInfo(0, world_size, 0, local_world_size))
    batch = request.batch_size
    if batch is None:
        _, train_kw = parse_overrides(request.overrides)
        batch = train_kw.get("batch_size", get_preset(request.preset).train.get("batch_size", 16))
    if int(batch) % world_size:
        raise ConfigError(distributed.batch_error(int(batch), world_size))


def run_training(request: TrainRequest) -> TrainOutcome | None:
    """Train (or, with ``ensemble`` > 1, train a seed ensemble) as ``request`` says and save the best epoch
    to ``request.out``. On several processes every rank runs this; rank 0 alone prints, writes and returns
    the outcome (the other ranks return None)."""

    quiet_transformers()
    rank = distributed.current()  # rank 0 of 1 unless a process group is initialised
    console = Console(stderr=True, quiet=request.quiet)
    source, config, notes, datasets, extra_meta = _training_data(request, console)
    system, tcfg, meta = _new_model(request, config, source, notes, extra_meta)
    n_train = sum(p.numel() for p in system.parameters() if p.requires_grad)
    console.print(
        f"training {config.name} on {source.path}: "
        + ", ".join(f"{k} {len(v)}" for k, v in datasets.items())
        + f" samples; {sum(p.numel() for p in system.parameters()):,} parameters ({n_train:,} trainable);"
        + f" device {tcfg.device}"
    )
    trainer = Trainer(system, tcfg, console=console)
    t0 = time.perf_counter()
    if request.ensemble > 1:
        system, result, member_info = _train_ensemble(
            system, config, tcfg, datasets, request.out, meta, request.ensemble, request.resume, console
        )
        if not rank.is_main:  # the members were trained together; rank 0 evaluates and saves
            return None
        meta.update(ensemble_size=request.ensemble, ensemble_members=member_info)
        result.best_metrics = evaluate(system, datasets["valid"], tcfg.batch_size, trainer.device)
    else:
        result = trainer.fit(
            datasets["train"],
            datasets["valid"],
            checkpoint_dir=request.out,
            checkpoint_meta=meta,
            resume=request.resume,
        )
        if not rank.is_main:
            return None
    seconds = round(time.perf_counter() - t0, 1)
    if request.ensemble > 1:  # the members' own epoch times (members kept from an interrupted run count too)
        seconds = round(sum(float(m.get("seconds") or 0.0) for m in meta["ensemble_members"]), 1)
    meta["training_time"] = {
        "seconds": seconds,
        "epochs_run": result.epochs_run,
        "torch_threads": torch.get_num_threads(),
        "device": tcfg.device,
        "processes": rank.world_size,
    }
    metrics = {"valid": result.best_metrics}
    if request.eval_test and "test" in datasets and len(datasets["test"]):
        metrics["test"] = evaluate(system, datasets["test"], tcfg.batch_size, trainer.device)
    meta.update(metrics=metrics, train_config=tcfg.to_dict(), best_epoch=result.best_epoch)
    meta["stopped_early"], meta["epochs_run"] = result.stopped_early, result.epochs_run
    calibration = calibrate(system, datasets.get("valid"), tcfg.batch_size, trainer.device, source)
    if calibration is not None:
        meta["calibration"] = calibration
    save_checkpoint(request.out, system, meta)
    return TrainOutcome(request.out, metrics, result.best_epoch, calibration)


def calibrate(system: Any, valid: Any, batch_size: int, device: Any, source: Any) -> dict[str, Any] | None:
    """A classifier's temperature fitted on the valid split (the split that chose its epoch, never test),
    as the ``calibration`` block its config.json records (:mod:`dmd_pipeline.calibration`); None for a
    regression model or without valid data."""
    if int(system.config.num_classes) < 2 or valid is None or not len(valid):
        return None
    logits, labels, _ = predict_dataset(system, valid, batch_size, device)
    prov = source.provenance()
    fitted_on = {"split": "valid", "data": Path(str(prov.get("path") or "")).name}
    if prov.get("sha256"):
        fitted_on["data_sha256"] = prov["sha256"]
    return fit_calibration(logits, labels.astype("int64"), fitted_on).to_meta()


def _training_data(
    request: TrainRequest, console: Console
) -> tuple[Any, Any, list[str], dict[str, Any], dict[str, Any]]:
    """(data source, the DMDConfig adapted to it, notes, datasets by split, meta to record): the data
    loaded, the preset fitted to it, unused modalities zeroed and augmentation attached."""

    model_kw, train_kw = parse_overrides(request.overrides)
    extra_meta: dict[str, Any] = {}
    text_encoder = request.text_encoder
    if request.labels is not None:
        source, text_encoder, extra_meta = load_label_data(
            request.labels, request.preset, model_kw, text_encoder, request.text_input
        )
    else:
        source = load_data_source(request.data)  # type: ignore[arg-type]
    config, notes = build_config(
        request.preset, source.splits, text_encoder, request.num_classes, model_kw, train_kw
    )
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    datasets = {name: dataset_from_split(config, split, name) for name, split in source.splits.items()}
    modalities = list(request.modalities) if request.modalities is not None else None
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
    if request.window_s is not None:
        extra_meta["analysis_window_s"] = float(request.window_s)
    mask, noise = (
        float(config.train.get("augment_time_mask", 0.0)),
        float(config.train.get("augment_noise", 0.0)),
    )
    if mask > 0 or noise > 0:
        datasets["train"].augment = AudioAugment(time_mask=mask, noise=noise)
        notes.append(f"training-time audio augmentation: time mask {mask}, noise {noise}")
    return source, config, notes, datasets, extra_meta


def _new_model(
    request: TrainRequest, config: DMDConfig, source: DataSource, notes: list[str], extra_meta: dict[str, Any]
) -> tuple[DMDSystem, TrainConfig, dict[str, Any]]:
    """(a fresh seeded DMDSystem, its TrainConfig, the meta its checkpoint records)."""

    tcfg = TrainConfig.from_model_config(
        config,
        max_epochs=request.epochs,
        seed=request.seed,
        device=str(resolve_device(request.device)),
        batch_size=request.batch_size,
        learning_rate=request.lr,
        update_epochs=request.update_epochs,
        early_stop=request.early_stop,
        quiet=request.quiet,
    )
    for key in list(config.train):  # record the effective values (CLI flags) in the model config too
        if hasattr(tcfg, key):
            config.train[key] = getattr(tcfg, key)
    set_seed(request.seed)
    system = DMDSystem(config)
    meta: dict[str, Any] = {
        "preset": request.preset,
        "feature_spec": extra_meta.get("feature_spec")
        or (source.sidecar or {}).get("meta")
        or describe_splits(source.splits),
        "training_data": source.provenance(),
        "notes": notes,
        **extra_meta,
        "weights_dtype": request.weights_dtype,
    }
    layers = request.finetune_layers
    if layers is not None:
        if not config.use_bert:
            raise ConfigError("--finetune-layers needs a text encoder inside the model (use_bert)")
        trainable = freeze_text_encoder(system, layers)
        meta["text_encoder_base"] = {
            "ref": text_encoder_ref(config.text_encoder),
            "sha256": text_encoder_sha256(config.text_encoder),
            "finetune_layers": layers,
            "stored": "only the fine-tuned top layers; the rest is loaded from the base encoder",
        }
        notes.append(f"text encoder: top {layers} layer(s) fine-tuned ({trainable:,} parameters)")
    return system, tcfg, meta
