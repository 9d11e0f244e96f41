"""Training loop for DMDSystem, following the official DMD recipe by default.

Official recipe (``mdswyz/DMD`` trainer, checked against its source):

* one Adam over the DMD model and both GD kernels, ``lr = learning_rate`` and **no** weight decay (the config's
  ``weight_decay`` is never passed to the optimiser; ``apply_weight_decay=True`` applies it);
* loss = ``DMDSystem.losses(...)["total"]`` (L1 task loss on all 8 heads, GD, recon, cyc, margin, ort);
* gradient accumulation: ``zero_grad`` at the start of a group, ``backward`` on every mini-batch (losses are
  summed, not averaged), ``clip_grad_value_(grad_clip)`` after every backward (skipped when
  ``grad_clip <= 0``; the official code uses -1 for "off"), ``step`` after every ``update_epochs`` batches;
* ``ReduceLROnPlateau(mode='min', factor=0.5, patience)`` stepped on the validation loss, the batch-averaged
  L1 of ``output_logit`` (``KeyEval = 'Loss'``), which also selects the best epoch (an improvement needs
  ``loss <= best - 1e-6``); stop when ``epoch - best_epoch >= early_stop``.

Deliberate differences (each an option): the official loop never steps the optimiser for the last, partial
accumulation group of an epoch (a dead ``if`` after the loop); ``step_partial_group=True`` (default) steps
it, so tiny data sets still train, False reproduces the official behaviour. With ``use_bert`` the text
encoder's parameters get their own group (``learning_rate_bert`` / ``weight_decay_bert``); the official code
kept BERT in the main group. The best epoch's weights are reloaded at the end and, with a checkpoint folder,
saved atomically whenever the validation loss improves, so a crash keeps the best-so-far model.

Resume: with a checkpoint folder, the state after every completed epoch goes to ``<dir>/resume/``: one
safetensors file (current and best weights, Adam's moments, the torch and data-loader RNG states) and
``state.json`` (epoch, best score, history, optimizer groups, ReduceLROnPlateau state, the sha256 of the
tensor file), written tensors first, JSON last, each atomically; never pickle. ``fit(..., resume=True)``
continues from the last completed epoch exactly as if it had not stopped (same shuffles, same dropout
masks). The folder is removed when a run finishes.

Several processes: when a ``torch.distributed`` process group of more than one rank is initialised (``dmd
train --nproc N`` or ``torchrun``), the Trainer trains with DDP on the same global batches and the loss of
the whole global batch; rank 0 alone validates, writes and prints (:mod:`dmd_pipeline.training.distributed`).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dmd_pipeline.device import resolve_device
from dmd_pipeline.errors import ConfigError
from dmd_pipeline.training import distributed
from dmd_pipeline.training.display import EpochRecord, TrainingDisplay
from dmd_pipeline.training.metrics import compute_metrics
from dmd_pipeline.training.resume import RESUME_DIR, load_train_state, save_train_state
from dmd_pipeline.utils import atomic_write_json, json_safe

MINIMISE_KEYS = {"Loss", "MAE"}


@dataclass
class TrainConfig:
    """Training hyper-parameters; :meth:`from_model_config` takes the defaults from a preset's ``train``."""

    learning_rate: float = 1e-4
    weight_decay: float = 0.005
    apply_weight_decay: bool = False  # official: Adam(lr) only, the config's weight_decay is unused
    learning_rate_bert: float = 5e-5
    weight_decay_bert: float = 1e-3
    batch_size: int = 16
    update_epochs: int = 10
    grad_clip: float = 0.6
    early_stop: int = 10
    patience: int = 5
    lr_factor: float = 0.5
    key_eval: str = "Loss"
    min_delta: float = 1e-6
    max_epochs: int | None = None  # None: until early stopping (official)
    step_partial_group: bool = True
    seed: int = 1111
    device: str = "cpu"
    quiet: bool = False

    @classmethod
    def from_model_config(cls, config: Any, **overrides: Any) -> TrainConfig:
        """TrainConfig with the preset's ``config.train`` values, then ``overrides`` (None values ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in dict(getattr(config, "train", {}) or {}).items() if k in names}
        for key, value in overrides.items():
            if key not in names:
                raise ConfigError(f"unknown training option {key!r}; known: {sorted(names)}")
            if value is not None:
                values[key] = value
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`."""

    best_epoch: int
    best_score: float
    best_metrics: dict[str, float]
    epochs_run: int
    stopped_early: bool
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for reproducible runs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Single-process DataLoader; shuffling uses its own seeded generator (deterministic)."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=0)


def _to(batch: Iterable[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [t.to(device) for t in batch]


def _task_loss(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if num_classes > 1:
        return torch.nn.functional.cross_entropy(pred, labels.view(-1).long())
    return torch.nn.functional.l1_loss(pred, labels.view(-1, 1).to(pred.dtype))


@torch.no_grad()
def predict_dataset(
    system: torch.nn.Module, dataset: Dataset | DataLoader, batch_size: int = 64, device: Any = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Predictions, labels and the batch-averaged task loss (official validation 'Loss') over a dataset."""
    loader = dataset if isinstance(dataset, DataLoader) else make_loader(dataset, batch_size, shuffle=False)
    device = torch.device(device) if device is not None else next(system.parameters()).device
    num_classes = int(system.config.num_classes)
    was_training = system.training
    system.eval()
    preds, labels, losses = [], [], []
    try:
        for batch in loader:
            text, audio, vision, y = _to(batch, device)
            out = system.predict(text, audio, vision)
            losses.append(float(_task_loss(out, y, num_classes)))
            preds.append(out.float().cpu().numpy())
            labels.append(y.cpu().numpy())
    finally:
        system.train(was_training)
    if not preds:
        raise ConfigError("cannot evaluate an empty dataset")
    return np.concatenate(preds), np.concatenate(labels), float(np.mean(losses))


def evaluate(
    system: torch.nn.Module, dataset: Dataset | DataLoader, batch_size: int = 64, device: Any = None
) -> dict[str, float]:
    """All metrics of :mod:`dmd_pipeline.training.metrics` plus ``Loss`` (batch-averaged task loss)."""
    pred, true, loss = predict_dataset(system, dataset, batch_size, device)
    metrics = compute_metrics(pred, true, int(system.config.num_classes))
    metrics["Loss"] = loss
    return metrics


def _is_text_encoder(module: torch.nn.Module) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a pinned dependency
        return False
    return isinstance(module, PreTrainedModel)


def param_groups(system: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Adam parameter groups: the DMD model + GD kernels, and (with use_bert) the text encoder apart."""
    wd = cfg.weight_decay if cfg.apply_weight_decay else 0.0
    encoder_ids: set[int] = set()
    if getattr(system.config, "use_bert", False):
        for module in system.modules():
            if module is not system and _is_text_encoder(module):
                encoder_ids.update(id(p) for p in module.parameters())
    main = [p for p in system.parameters() if p.requires_grad and id(p) not in encoder_ids]
    enc = [p for p in system.parameters() if p.requires_grad and id(p) in encoder_ids]
    groups = [{"params": main, "lr": cfg.learning_rate, "weight_decay": wd, "name": "dmd"}]
    if enc:
        groups.append(
            {
                "params": enc,
                "lr": cfg.learning_rate_bert,
                "weight_decay": cfg.weight_decay_bert,
                "name": "text_encoder",
            }
        )
    return groups


class Trainer:
    """Fits a DMDSystem on a training dataset, selecting the best epoch on a validation dataset."""

    def __init__(self, system: torch.nn.Module, config: TrainConfig, console: Any = None) -> None:
        self.system = system
        self.cfg = config
        self.device = resolve_device(config.device)
        self.system.to(self.device)
        self.optimizer = torch.optim.Adam(param_groups(system, config))
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.lr_factor, patience=config.patience
        )
        self.console = console
        self.minimise = config.key_eval in MINIMISE_KEYS
        self.dist = distributed.current()
        if self.dist.distributed and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank)
            self.system.to(self.device)
        self._ddp: torch.nn.Module | None = None  # the DDP wrapper while fit() runs on several processes

    def _batch_loss(self, batch: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(the tensor to backward, the loss of the (global) batch) for one mini-batch."""
        if self._ddp is not None:
            text, audio, vision, labels, live = _to(batch, self.device)
            return self._ddp(text, audio, vision, labels, live)
        text, audio, vision, labels = _to(batch, self.device)
        outputs = self.system(text, audio, vision)
        loss = self.system.losses(outputs, labels)["total"]
        return loss, loss

    # ---- one epoch ---------------------------------------------------------------------------------
    def train_epoch(
        self, loader: DataLoader, on_batch: Callable[[int, float], None] | None = None
    ) -> tuple[float, int]:
        """One pass with gradient accumulation; returns (mean batch loss, optimiser steps taken).

        On several processes (inside :meth:`fit`) the batches are each rank's shares of the global batches
        and the loss is the global batch's; the accumulation, clipping and stepping are the same.
        """
        cfg, system, opt = self.cfg, self.system, self.optimizer
        system.train()
        params = [p for g in opt.param_groups for p in g["params"]]
        total, n_batches, steps, pending = 0.0, 0, 0, 0
        for i, batch in enumerate(loader):
            if pending == 0:
                opt.zero_grad(set_to_none=True)
            to_backward, loss = self._batch_loss(batch)
            if not torch.isfinite(loss):  # on several processes: the same global loss on every rank
                raise FloatingPointError(f"non-finite training loss ({loss.item()}) at batch {i}")
            to_backward.backward()  # DDP: gradients averaged over the ranks here, every mini-batch
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_value_(params, cfg.grad_clip)
            pending += 1
            if pending == cfg.update_epochs:
                opt.step()
                steps += 1
                pending = 0
            total += float(loss.detach())
            n_batches += 1
            if on_batch is not None:
                on_batch(i, float(loss.detach()))
        if pending and cfg.step_partial_group:
            opt.step()
            steps += 1
        return total / max(n_batches, 1), steps

    def _better(self, score: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.minimise:
            return score <= best - self.cfg.min_delta
        return score >= best + self.cfg.min_delta

    # ---- the whole run -----------------------------------------------------------------------------
    def fit(
        self,
        train_data: Dataset,
        valid_data: Dataset,
        checkpoint_dir: str | Path | None = None,
        checkpoint_meta: dict | None = None,
        on_epoch_end: Callable[[EpochRecord], None] | None = None,
        resume: bool = False,
    ) -> TrainResult:
        """Train until early stopping (or ``max_epochs``), reload the best epoch's weights and return a summary.

        With ``checkpoint_dir``, the best model is saved there (atomically) each time it improves, and
        ``history.json`` and the resume state (module docstring) after every epoch. ``resume=True``
        continues from that state (ConfigError when there is none or it belongs to another model).
        On several processes every rank calls this (``on_epoch_end`` runs on every rank, with the same
        record); only rank 0 writes into ``checkpoint_dir``, all ranks read it to resume.
        """
        cfg, info = self.cfg, self.dist
        if cfg.update_epochs < 1 or cfg.batch_size < 1 or cfg.early_stop < 1:
            raise ConfigError("update_epochs, batch_size and early_stop must be >= 1")
        if len(train_data) == 0 or len(valid_data) == 0:
            raise ConfigError("training and validation sets must not be empty")
        if info.distributed and cfg.batch_size % info.world_size:
            raise ConfigError(distributed.batch_error(cfg.batch_size, info.world_size))
        set_seed(cfg.seed)
        if info.distributed:
            torch.manual_seed(distributed.rank_seed(cfg.seed, info.rank))  # own dropout masks per rank
            train_loader = distributed.make_sharded_loader(
                train_data, cfg.batch_size, info.rank, info.world_size, seed=cfg.seed
            )
        else:
            train_loader = make_loader(train_data, cfg.batch_size, shuffle=True, seed=cfg.seed)
        valid_loader = make_loader(valid_data, cfg.batch_size, shuffle=False)
        writes = checkpoint_dir is not None and info.is_main
        history: list[EpochRecord] = []
        best: float | None = None
        best_epoch, best_metrics, best_state = 0, {}, None
        stopped_early = False
        epoch = 0
        if resume:
            if checkpoint_dir is None:
                raise ConfigError("resuming needs the checkpoint folder of the interrupted run")
            if info.distributed:  # rank 0 may still be writing the state it left when it stopped
                torch.distributed.barrier()
            got = load_train_state(self, Path(checkpoint_dir), train_loader)
            epoch, best, best_epoch, best_metrics, best_state, history = got
            stopped_early = epoch - best_epoch >= cfg.early_stop
        if info.distributed:  # after resuming: DDP broadcasts rank 0's weights to the others
            self._ddp = distributed.wrap_ddp(self.system, cfg.batch_size // info.world_size, self.device)
        quiet = cfg.quiet or not info.is_main
        display = TrainingDisplay(len(train_loader), cfg.key_eval, quiet=quiet, console=self.console)
        try:
            result = self._loop(
                train_loader, valid_loader, display, checkpoint_dir if writes else None, checkpoint_meta,
                on_epoch_end, epoch, best, best_epoch, best_metrics, best_state, history, stopped_early,
            )  # fmt: skip
        finally:
            self._ddp = None
        if writes:
            import shutil

            shutil.rmtree(Path(checkpoint_dir) / RESUME_DIR, ignore_errors=True)  # type: ignore[arg-type]
        return result

    def _loop(
        self,
        train_loader: DataLoader,
        valid_loader: DataLoader,
        display: TrainingDisplay,
        checkpoint_dir: str | Path | None,
        checkpoint_meta: dict | None,
        on_epoch_end: Callable[[EpochRecord], None] | None,
        epoch: int,
        best: float | None,
        best_epoch: int,
        best_metrics: dict[str, float],
        best_state: dict[str, torch.Tensor] | None,
        history: list[EpochRecord],
        stopped_early: bool,
    ) -> TrainResult:
        """The epochs of :meth:`fit` (``checkpoint_dir`` None on the ranks that do not write)."""
        cfg, info = self.cfg, self.dist
        with display:
            while (cfg.max_epochs is None or epoch < cfg.max_epochs) and not stopped_early:
                epoch += 1
                t0 = time.perf_counter()
                display.start_epoch(epoch)
                train_loss, steps = self.train_epoch(train_loader, on_batch=display.batch_done)
                if info.distributed:  # rank 0 validates on the whole split, the others wait for its metrics
                    metrics = (
                        evaluate(self.system, valid_loader, device=self.device) if info.is_main else None
                    )
                    metrics = distributed.broadcast_object(metrics)
                else:
                    metrics = evaluate(self.system, valid_loader, device=self.device)
                score = float(metrics[cfg.key_eval]) if cfg.key_eval in metrics else math.nan
                if math.isnan(score):
                    raise ConfigError(f"key_eval {cfg.key_eval!r} is not among the metrics {sorted(metrics)}")
                self.scheduler.step(metrics["Loss"])
                improved = self._better(score, best)
                if improved:
                    best, best_epoch, best_metrics = score, epoch, dict(metrics)
                    best_state = copy.deepcopy(
                        {k: v.detach().cpu() for k, v in self.system.state_dict().items()}
                    )
                    if checkpoint_dir is not None:
                        self._save(checkpoint_dir, checkpoint_meta, epoch, best_metrics)
                record = EpochRecord(
                    epoch=epoch,
                    train_loss=train_loss,
                    valid_loss=float(metrics["Loss"]),
                    valid_metrics=metrics,
                    lr=float(self.optimizer.param_groups[0]["lr"]),
                    seconds=time.perf_counter() - t0,
                    improved=improved,
                    optimizer_steps=steps,
                )
                history.append(record)
                display.end_epoch(record)
                rank_rng = distributed.gather_rng_states() if info.distributed else None
                if checkpoint_dir is not None:
                    atomic_write_json(
                        Path(checkpoint_dir) / "history.json", json_safe([asdict(h) for h in history])
                    )
                    save_train_state(
                        self, Path(checkpoint_dir), train_loader, epoch, best, best_epoch, best_metrics,
                        best_state, history, rank_rng=rank_rng,
                    )  # fmt: skip
                if on_epoch_end is not None:
                    on_epoch_end(record)
                if epoch - best_epoch >= cfg.early_stop:
                    stopped_early = True
                    break
        if best_state is not None:
            self.system.load_state_dict(best_state)
        return TrainResult(
            best_epoch=best_epoch,
            best_score=float(best if best is not None else math.nan),
            best_metrics=best_metrics,
            epochs_run=epoch,
            stopped_early=stopped_early,
            history=history,
        )

    def _save(
        self, checkpoint_dir: str | Path, meta: dict | None, epoch: int, metrics: dict[str, float]
    ) -> None:
        from dmd_pipeline.models.checkpoint import save_checkpoint

        full = dict(meta or {})
        full["train_config"] = self.cfg.to_dict()
        full["best_epoch"] = epoch
        full.setdefault("metrics", {})
        full["metrics"] = {**full["metrics"], "valid": metrics}
        save_checkpoint(checkpoint_dir, self.system, full)
