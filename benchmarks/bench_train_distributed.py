"""Training on 1 vs N processes (torch.distributed, gloo on CPU): seconds per mini-batch of the official recipe.

Each case is fresh spawned process(es) (``dmd_pipeline.training.distributed.launch_local``) training the
``mosi_aligned`` DMD (official sizes: 768/5/20-d inputs, 50 steps) on random data with the official recipe
(global batch 16, a step every 10 mini-batches, clipping), through the same code as ``dmd train``: one
process with T threads, or N processes with the global batch split over them (DDP, the outputs all-gathered,
the loss of the global batch). The median time per mini-batch after two warm-up ones is taken in each case;
cases are interleaved (A, B, C, A, B, C, ...) so that a change in the machine's load hits all of them.

    python benchmarks/bench_train_distributed.py [--batches 14] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _measure(out: str, threads: int, batches: int) -> None:
    """One rank of a case: train one epoch of ``batches`` global mini-batches; rank 0 writes the timings."""
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.data.datasets import MMSADataset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.training import distributed
    from dmd_pipeline.training.trainer import TrainConfig, Trainer, make_loader, set_seed

    torch.set_num_threads(threads)
    env = distributed.env_info()
    world = env.world_size if env is not None else 1
    if world > 1:
        distributed.init_process_group("cpu")
    rank = distributed.current()
    cfg = get_preset("mosi_aligned")
    n = 16 * batches
    gen = torch.Generator().manual_seed(0)
    data = MMSADataset(
        torch.randn(n, 50, 768, generator=gen).numpy(),
        torch.randn(n, 50, 5, generator=gen).numpy(),
        torch.randn(n, 50, 20, generator=gen).numpy(),
        (torch.rand(n, 1, generator=gen) * 6 - 3).numpy(),
    )
    set_seed(1111)
    trainer = Trainer(DMDSystem(cfg), TrainConfig.from_model_config(cfg, quiet=True, device="cpu"))
    if world > 1:
        loader = distributed.make_sharded_loader(data, 16, rank.rank, world, seed=1111)
        trainer._ddp = distributed.wrap_ddp(trainer.system, 16 // world, trainer.device)
    else:
        loader = make_loader(data, 16, shuffle=True, seed=1111)
    stamps = [time.perf_counter()]
    trainer.train_epoch(loader, on_batch=lambda i, loss: stamps.append(time.perf_counter()))
    trainer._ddp = None
    per_batch = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][2:]
    if rank.is_main:
        Path(out).write_text(json.dumps({"median_s": statistics.median(per_batch), "n": len(per_batch)}))
    distributed.shutdown()


def run_case(nproc: int, threads: int, batches: int) -> float:
    """Median seconds per global mini-batch of one fresh case (``nproc`` processes x ``threads``)."""
    from dmd_pipeline.training.distributed import launch_local

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.json")
        code = launch_local(_measure, nproc, (out, threads, batches))
        if code:
            raise SystemExit(f"case nproc={nproc} threads={threads} failed with exit code {code}")
        return float(json.loads(Path(out).read_text())["median_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=14, help="global mini-batches per case (2 are warm-up)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    cases = {
        f"1 process x {cores} threads": (1, cores),
        "1 process x 1 thread": (1, 1),
        f"{args.nproc} processes x {max(1, cores // args.nproc)} thread(s)": (
            args.nproc,
            max(1, cores // args.nproc),
        ),
    }
    load = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(args.rounds):
        for name, (nproc, threads) in cases.items():
            times[name].append(run_case(nproc, threads, args.batches))
            print(f"round {r + 1}: {name}: {times[name][-1] * 1000:.0f} ms per mini-batch", file=sys.stderr)
    medians = {k: statistics.median(v) for k, v in times.items()}
    base = next(iter(medians.values()))
    result = {
        "load_average_at_start": load,
        "cores": cores,
        "ms_per_batch": {k: [round(x * 1000) for x in v] for k, v in times.items()},
        "median_ms": {k: round(v * 1000) for k, v in medians.items()},
        "ratio_to_first": {k: round(v / base, 2) for k, v in medians.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k in cases:
            print(
                f"{k}: median {result['median_ms'][k]} ms per mini-batch, ratio {result['ratio_to_first'][k]}"
            )


if __name__ == "__main__":
    main()
