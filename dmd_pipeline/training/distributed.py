"""Training DMD on several processes with ``torch.distributed`` (DDP): gloo on CPU, NCCL on CUDA.

What a run on N processes computes, and why it is the single-process run split N ways:

* **The global batch stays ``batch_size``.** Every rank iterates the *same* seeded sequence of global
  batches (the single-process ``RandomSampler`` + ``BatchSampler`` over one shared generator, so the order,
  the resume state and the shuffles of later epochs are exactly those of one process) and loads only its
  contiguous share of each (:class:`ShardedBatchSampler`): rank r of N gets ``batch_size / N`` samples
  (``batch_size`` must divide by N). The last, partial batch of an epoch is neither dropped nor padded
  with repeated samples: it is split as evenly as it goes (sizes differ by at most one); a rank whose
  share is empty (fewer samples than processes) runs one placeholder sample that is left out of the loss.
* **The loss is the loss of the global batch.** DMD's loss is not a per-sample mean: the GD regulariser
  squares a batch mean of the edge weights, the margin loss compares pairs of samples of the batch, the
  HeteroGD repr term multiplies two batch means. So mean-of-means over ranks would differ from the
  single-process loss. Instead each rank runs the model on its share, the outputs the loss reads are
  all-gathered (one ``all_gather`` per mini-batch), and every rank computes the loss of the whole global
  batch; gradients flow into the rank's own share only, the loss is scaled by N, and DDP's gradient
  averaging over the N ranks then yields exactly the single-process gradient (:class:`GlobalBatchLoss`).
* **Accumulation keeps the official semantics.** The official recipe clips the *accumulated* gradient
  after every backward (``clip_grad_value_``, non-linear), so the gradient must be the global one at
  every mini-batch: DDP synchronises on every backward (no ``no_sync``); the averaged gradient already
  accumulated is identical on all ranks, so averaging keeps it and adds the mean of the new parts.
  ``update_epochs``, ``step_partial_group`` and the optimiser step are unchanged.
* ``find_unused_parameters=True`` (with ``keep_dead_layers``, the default): the official dead layers
  (``proj_cosine_*``) run in the forward pass but feed no loss, so they never get a gradient (as with one
  process: ``grad`` stays None and Adam skips them). Without them, every parameter gets one.
* Validation: rank 0 evaluates the whole validation split with the plain module and broadcasts the
  metrics; the other ranks wait in that broadcast. Rank 0 alone writes the checkpoint, ``history.json``
  and the resume state, and prints; the others write nothing into the output folder.
* Seeds: every rank builds its model from the same seed and DDP broadcasts rank 0's weights anyway;
  dropout (and audio augmentation) draws use a per-rank seed, so ranks do not repeat one mask. Each
  rank's RNG state is kept in the resume state, so ``--resume`` with the same N continues exactly.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from dmd_pipeline.device import resolve_device
from dmd_pipeline.errors import ConfigError

#: Output keys whose batch axis is 1: time-major (T', B, d) representations and the (6, B) edge weights.
BATCH_AXIS_1 = frozenset({"s_l", "s_v", "s_a", "c_l", "c_v", "c_a", "edges_homo", "edges_hetero"})
#: Output keys without a batch axis (not read by the loss; not gathered).
NO_BATCH_AXIS_PREFIXES = ("edges_origin_",)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def env_info() -> DistInfo | None:
    """The ranks that ``torchrun`` (or ``dmd train --nproc``) put in the environment; None when absent.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` (the torch.distributed
    launcher's variables); ConfigError when they are malformed.
    """
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise ConfigError(
            "RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE must be integers (as torchrun sets them)"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not within WORLD_SIZE={world}")
    return DistInfo(rank, world, local_rank, local_world)


def current() -> DistInfo:
    """This process's rank and world size from the initialised process group (rank 0 of 1 without one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    env = env_info()
    world = dist.get_world_size()
    local_rank = env.local_rank if env is not None else dist.get_rank()
    local_world = env.local_world_size if env is not None else world
    return DistInfo(dist.get_rank(), world, local_rank, local_world)


def rank_device(device: str, info: DistInfo) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA (one GPU per process), else the CPU.

    ConfigError for MPS (no torch.distributed backend) or too few GPUs for the local processes.
    """
    dev = resolve_device(device)
    if dev.type == "mps":
        raise ConfigError("training on several processes needs --device cpu or cuda (MPS has no DDP backend)")
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if info.local_world_size > count:
            raise ConfigError(
                f"{info.local_world_size} processes on this node but torch sees {count} CUDA GPU(s); "
                "one GPU per process (use fewer processes, or --device cpu)"
            )
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def init_process_group(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group described by the environment (``env://``): NCCL for CUDA, gloo for CPU.

    Returns (this rank, its device). Does nothing but return them when already initialised.
    """
    import torch.distributed as dist

    info = env_info()
    if info is None:
        raise ConfigError("not launched as a distributed run (RANK/WORLD_SIZE are not set)")
    dev = rank_device(device, info)
    if dist.is_initialized():
        return current(), dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ConfigError(f"{key} is not set (torchrun sets it; see docs/cluster.md)")
    dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size)
    return current(), dev


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _child(index: int, fn: Callable[..., Any], nproc: int, port: int, args: tuple[Any, ...]) -> None:
    os.environ.update(
        RANK=str(index),
        LOCAL_RANK=str(index),
        WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(nproc),
        GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    fn(*args)


def launch_local(fn: Callable[..., Any], nproc: int, args: tuple[Any, ...] = ()) -> int:
    """Run ``fn(*args)`` in ``nproc`` fresh local processes (``spawn``) set up as ranks 0..nproc-1 of one
    ``env://`` group on 127.0.0.1 and a free port, wait for all, and return the exit code (0 when all
    succeeded, else the first failing process's code; 1 for an uncaught exception, whose traceback is
    printed). When one process fails the others are terminated. ``fn`` must be importable (top level).
    """
    import torch.multiprocessing as mp

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    port = free_port()
    try:
        mp.start_processes(
            _child, args=(fn, nproc, port, args), nprocs=nproc, join=True, start_method="spawn"
        )
    except mp.ProcessExitedException as exc:
        code = exc.exit_code
        return code if isinstance(code, int) and code > 0 else 1
    except mp.ProcessRaisedException as exc:
        print(f"error: training process failed:\n{exc}", file=sys.stderr)
        return 1
    return 0


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of rank ``rank`` for dropout/augmentation draws (rank 0 keeps ``seed``)."""
    return (int(seed) + 1_000_003 * int(rank)) % (2**63)


# ---- data: every rank walks the same global batches and loads its share -------------------------------
class ShardedBatchSampler(Sampler[list[tuple[int, bool]]]):
    """Yields, for each global batch of ``batches``, this rank's contiguous share as ``(index, live)`` pairs.

    Shares of a batch of m samples over N ranks: sizes ``m // N`` (+1 for the first ``m % N`` ranks), in
    rank order, so the concatenation over ranks is the global batch in its order. An empty share becomes
    one placeholder ``(batch[0], False)`` so that every rank runs every step.
    """

    def __init__(self, batches: BatchSampler, rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        for batch in self.batches:
            base, extra = divmod(len(batch), self.world_size)
            start = self.rank * base + min(self.rank, extra)
            size = base + (1 if self.rank < extra else 0)
            share = batch[start : start + size]
            yield [(i, True) for i in share] if share else [(batch[0], False)]


class _Tagged(Dataset):
    """``dataset[i]`` plus a float flag (1 = a real sample of this rank's share, 0 = placeholder)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, bool]) -> tuple[Tensor, ...]:
        index, live = key
        item = self.dataset[index]
        fields = tuple(item) if isinstance(item, (tuple, list)) else (item,)
        return (*fields, torch.tensor(1.0 if live else 0.0))


def make_sharded_loader(
    dataset: Dataset, batch_size: int, rank: int, world_size: int, seed: int
) -> DataLoader:
    """The training loader of one rank: the single-process shuffled batches (same generator, same draws,
    see :func:`dmd_pipeline.training.trainer.make_loader`), this rank's share of each; items carry the
    placeholder flag as a fifth tensor."""
    if batch_size % world_size:
        raise ConfigError(batch_error(batch_size, world_size))
    gen = torch.Generator()
    gen.manual_seed(seed)
    batches = BatchSampler(RandomSampler(dataset, generator=gen), batch_size, drop_last=False)  # type: ignore[arg-type]
    return DataLoader(
        _Tagged(dataset),
        batch_sampler=ShardedBatchSampler(batches, rank, world_size),
        generator=gen,
        num_workers=0,
    )


def batch_error(batch_size: int, world_size: int) -> str:
    """The message for a global batch size that the number of processes does not divide."""
    lower = batch_size - batch_size % world_size
    near = " or ".join(str(x) for x in (lower, lower + world_size) if x > 0)
    return (
        f"--batch-size {batch_size} is not divisible by {world_size} processes: it is the global batch, "
        f"split evenly over the processes (e.g. --batch-size {near})"
    )


# ---- the loss of the global batch ------------------------------------------------------------------
def _batch_axis(key: str) -> int | None:
    if key.startswith(NO_BATCH_AXIS_PREFIXES):
        return None
    return 1 if key in BATCH_AXIS_1 else 0


class GlobalBatchLoss(nn.Module):
    """Wraps a DMDSystem for DDP: ``forward(text, audio, vision, labels, live)`` runs the model on this
    rank's share, all-gathers the outputs, and returns ``(N * loss, loss)`` where ``loss`` is
    ``system.losses(...)["total"]`` of the whole global batch (identical on every rank) and the first,
    for ``backward``, carries gradients into this rank's share only (module docstring)."""

    def __init__(self, system: nn.Module, rows_per_rank: int, world_size: int) -> None:
        super().__init__()
        self.system = system
        self.rows_per_rank = int(rows_per_rank)
        self.world_size = int(world_size)

    def forward(
        self, text: Tensor, audio: Tensor, vision: Tensor, labels: Tensor, live: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(loss to backward, the global batch's loss detached)."""
        import torch.distributed as dist

        out = self.system(text, audio, vision)
        n_live = int(live.sum().item())
        keys = [k for k in out if _batch_axis(k) is not None]
        parts = [live.reshape(-1, 1)[:n_live].to(out[keys[0]].dtype)]
        parts.append(labels.reshape(labels.shape[0], -1)[:n_live].to(parts[0].dtype))
        shapes: dict[str, tuple[int, ...]] = {}
        for key in keys:
            axis = _batch_axis(key)
            t = out[key].movedim(axis, 0)  # type: ignore[arg-type]
            if t.shape[0] != live.shape[0]:
                raise RuntimeError(
                    f"model output {key!r} has no batch axis {axis} (shape {tuple(out[key].shape)})"
                )
            shapes[key] = tuple(t.shape[1:])
            parts.append(t[:n_live].reshape(n_live, int(torch.Size(shapes[key]).numel())))
        local = torch.cat(parts, dim=1).detach()
        buf = local.new_zeros((self.rows_per_rank, local.shape[1]))
        buf[:n_live] = local
        gathered = [torch.empty_like(buf) for _ in range(self.world_size)]
        dist.all_gather(gathered, buf)
        me = dist.get_rank()
        counts = [int(g[:, 0].sum().item()) for g in gathered]
        widths = [1, parts[1].shape[1]] + [int(torch.Size(shapes[k]).numel()) for k in keys]
        offsets = [0]
        for w in widths:
            offsets.append(offsets[-1] + w)
        full: dict[str, Tensor] = {}
        for j, key in enumerate(keys):
            axis = _batch_axis(key)
            pieces = []
            for r, g in enumerate(gathered):
                if counts[r] == 0:
                    continue
                if r == me:
                    pieces.append(out[key].narrow(axis, 0, n_live))  # type: ignore[arg-type]
                else:
                    cols = g[: counts[r], offsets[j + 2] : offsets[j + 3]]
                    pieces.append(cols.reshape(counts[r], *shapes[key]).movedim(0, axis))  # type: ignore[arg-type]
            full[key] = torch.cat(pieces, dim=axis)  # type: ignore[arg-type]
        lab = [
            (labels.reshape(labels.shape[0], -1)[:n_live] if r == me else g[: counts[r], 1 : offsets[2]])
            for r, g in enumerate(gathered)
            if counts[r]
        ]
        full_labels = torch.cat([x.to(labels.dtype) for x in lab]).reshape(-1, *labels.shape[1:])
        loss = self.system.losses(full, full_labels)["total"]
        scaled = loss * self.world_size
        if n_live == 0:  # a placeholder share: no part of the loss, but DDP needs this rank's graph to
            # reach the parameters the loss reaches (zero gradients), and only those
            scaled = scaled + self.system.losses(out, labels)["total"] * 0.0
        return scaled, loss.detach()


def wrap_ddp(system: nn.Module, rows_per_rank: int, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(GlobalBatchLoss(system))`` for this rank's device (module docstring)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    module = GlobalBatchLoss(system, rows_per_rank, dist.get_world_size())
    config = getattr(system, "config", None)
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        # the dead proj_cosine_* layers run in the forward pass but feed no loss; without them every
        # trainable parameter gets a gradient and DDP can skip its search for unused ones
        find_unused_parameters=bool(getattr(config, "keep_dead_layers", True)),
        forward_sync_buffers=False,  # the only buffers are the GD priors, constants (synced at init)
    )


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable objects; the others pass anything)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_rng_states() -> list[Tensor]:
    """Every rank's torch CPU RNG state, in rank order (on every rank)."""
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, torch.get_rng_state())
    return [torch.as_tensor(s) for s in states]
