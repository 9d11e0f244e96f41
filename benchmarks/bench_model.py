"""Speed of the DMD core: one training step and one inference batch (prints to stdout only).

Training step = zero_grad + forward (train mode, model + HomoGD + HeteroGD) + every loss + backward +
clip_grad_value_ + Adam step, batch 16, text as 768-d features. Inference = eval-mode ``predict`` of one batch.
Reported: medians after warm-up, per-stage medians, and the ratio to the official implementation measured on
this machine class (2 threads): train 0.65 s (MOSI) / 0.59 s (MOSEI), inference 0.113 s / 0.129 s.

    .venv/bin/python benchmarks/bench_model.py [--threads 2] [--repeats 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

OFFICIAL = {"mosi_aligned": (0.65, 0.113), "mosei_aligned": (0.59, 0.129)}


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def bench(name: str, repeats: int, warmup: int, batch: int) -> dict[str, float]:
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem

    cfg = get_preset(name)
    torch.manual_seed(0)
    system = DMDSystem(cfg)
    opt = torch.optim.Adam(system.parameters(), lr=cfg.train["learning_rate"])
    g = torch.Generator().manual_seed(1)
    (lt, la, lv), (dt, da, dv) = cfg.seq_lens, cfg.feature_dims
    text, audio, vision = (torch.randn(batch, n, d, generator=g) for n, d in ((lt, dt), (la, da), (lv, dv)))
    labels = torch.empty(batch, 1).uniform_(-3, 3, generator=g)
    stages: dict[str, list[float]] = {
        "forward": [],
        "losses": [],
        "backward": [],
        "clip+adam": [],
        "step": [],
    }
    system.train()
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = system(text, audio, vision)
        t1 = time.perf_counter()
        loss = system.losses(out, labels)["total"]
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_value_(system.parameters(), cfg.train["grad_clip"])
        opt.step()
        t4 = time.perf_counter()
        if i >= warmup:
            for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                stages[k].append(v)
    system.eval()
    infer = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        system.predict(text, audio, vision)
        if i >= warmup:
            infer.append(time.perf_counter() - t0)
    res = {k: _median(v) for k, v in stages.items()}
    res["inference"] = _median(infer)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch}, load {os.getloadavg()}")
    for name, (off_train, off_inf) in OFFICIAL.items():
        r = bench(name, args.repeats, args.warmup, args.batch)
        print(
            f"{name}: train step {r['step']:.3f} s (official {off_train} s, {off_train / r['step']:.2f}x) | "
            f"inference {r['inference']:.4f} s (official {off_inf} s, {off_inf / r['inference']:.2f}x)"
        )
        print(
            "  stages: "
            + ", ".join(f"{k} {r[k]:.3f} s" for k in ("forward", "losses", "backward", "clip+adam"))
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
