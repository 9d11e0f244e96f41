"""Training/inference speed when other processes busy the cores: DMD train steps, idle and loaded, with
libgomp's default spinning (``GOMP_SPINCOUNT=300000``) and with the bound ``import dmd_pipeline`` sets
(``GOMP_SPINCOUNT=10000``, ``KMP_BLOCKTIME=1``).

Each case is a fresh process (the variables must be set before torch loads OpenMP): ``--steps`` training
steps of the ``mosi_aligned`` DMD on random data (batch 16), median seconds per step after one warm-up step.
"Loaded" starts ``--hogs`` busy-loop processes (default: one per core) for the duration of the case.

    python benchmarks/bench_contention.py [--steps 20] [--hogs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import os, statistics, time, torch
if os.environ.get("BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
from dmd_pipeline.config import get_preset
from dmd_pipeline.models import DMDSystem
torch.manual_seed(0)
cfg = get_preset("mosi_aligned", feature_dims=(384, 25, 66))
system = DMDSystem(cfg)
opt = torch.optim.Adam(system.parameters(), lr=1e-4)
b, t = 16, 50
x = (torch.randn(b, t, 384), torch.randn(b, t, 25), torch.randn(b, t, 66))
times = []
for step in range({steps} + 1):
    t0 = time.perf_counter()
    out = system(*x)
    loss = sum(v.float().pow(2).mean() for v in (out.values() if isinstance(out, dict) else [out])
               if torch.is_tensor(v) and v.requires_grad)
    opt.zero_grad(); loss.backward(); opt.step()
    if step:
        times.append(time.perf_counter() - t0)
print(statistics.median(times))
"""


def _hog() -> None:
    while True:
        pass


def run_case(steps: int, spin: str, hogs: int, threads: int | None = None) -> float:
    """Median seconds per training step in a fresh process (``hogs`` busy processes alongside; ``threads``
    torch threads, default torch's own choice)."""
    env = {**os.environ, "GOMP_SPINCOUNT": spin, "KMP_BLOCKTIME": "1" if spin != "300000" else "200"}
    env["BENCH_THREADS"] = str(threads) if threads else ""
    procs = [mp.Process(target=_hog, daemon=True) for _ in range(hogs)]
    for p in procs:
        p.start()
    try:
        res = subprocess.run(
            [sys.executable, "-c", _CHILD.replace("{steps}", str(steps))],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        for p in procs:
            p.terminate()
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--threads", type=int, nargs="*", default=[], help="also run these torch thread counts")
    args = ap.parse_args()
    out: dict[str, object] = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    for spin in ("300000", "10000"):
        for hogs in (0, args.hogs):
            out[f"spin={spin},hogs={hogs}"] = run_case(args.steps, spin, hogs)
    for threads in args.threads:  # interleaved idle/loaded with the bounded spin
        for hogs in (0, args.hogs):
            out[f"spin=10000,hogs={hogs},threads={threads}"] = run_case(args.steps, "10000", hogs, threads)
    out["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for k, v in out.items():
        print(f"{k:<28} {v if not isinstance(v, float) else f'{v * 1000:.0f} ms/step'}")


if __name__ == "__main__":
    main()
