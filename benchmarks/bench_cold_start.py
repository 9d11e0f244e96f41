"""Cold-start benchmark: wall time of fresh processes for ``import dmd_pipeline``, ``dmd --help`` and
``dmd analyze`` of one short clip (default: the 2.4 s CMU-MOSI clip in ``../shared/data/clips``).

Every measurement is a new Python process; ``analyze`` runs once first (the "first run": caches fill),
then ``--repeat`` times with ``--force`` into a temporary folder, and the median is reported. Targets
(issue 8): analyze <= 6 s, --help <= 0.5 s, import <= 0.3 s.

    python benchmarks/bench_cold_start.py                       # this checkout
    python benchmarks/bench_cold_start.py --src /tmp/before     # another source tree (PYTHONPATH)
    python benchmarks/bench_cold_start.py --json                # one JSON object
    python benchmarks/bench_cold_start.py --against /tmp/before --repeat 5
        # A/B: dmd analyze alternately from /tmp/before and this checkout (one warm-up round, then --repeat
        # rounds), each run's wall and CPU seconds (the child's user + system time), medians and ratios

The machine's load (``os.getloadavg``) is printed: the numbers mean little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clips" / "0h-zjBukYpk_1.mp4"
TARGETS_S = {"import": 0.3, "help": 0.5, "analyze": 6.0}


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(
        cmd, env=env, cwd=env["PYTHONPATH"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    dt = time.perf_counter() - t0
    if res.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-2000:]}")
    return dt


def measure(src: Path, clip: Path, repeat: int, model: str | None = None) -> dict[str, object]:
    """Median wall seconds of each case, in fresh processes."""
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    py = sys.executable
    cases = {
        "import": [py, "-c", "import dmd_pipeline"],
        "help": [py, "-c", "from dmd_pipeline.cli.app import main; main()", "--help"],
    }
    out: dict[str, object] = {"src": str(src), "clip": str(clip), "load_before": os.getloadavg()}
    for name, cmd in cases.items():
        _wall(cmd, env)
        out[name] = statistics.median(_wall(cmd, env) for _ in range(repeat))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            py,
            "-c",
            "from dmd_pipeline.cli.app import main; main()",
            "analyze",
            str(clip),
            "-o",
            tmp,
            "--force",
        ]
        if model:
            cmd += ["--model", model]
        out["model"] = model or "default models"
        out["analyze_first"] = _wall(cmd, env)
        out["analyze"] = statistics.median(_wall(cmd, env) for _ in range(repeat))
    out["load_after"] = os.getloadavg()
    return out


def _analyze_cmd(clip: Path, out: str, model: str | None) -> list[str]:
    cmd = [
        sys.executable,
        "-c",
        "from dmd_pipeline.cli.app import main; main()",
        "analyze",
        str(clip),
        "-o",
        out,
    ]
    return cmd + ["--force"] + (["--model", model] if model else [])


def _timed(cmd: list[str], src: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh process run from ``src``; CPU is its user + system time."""
    import resource

    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = _wall(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def interleaved(
    before: Path, after: Path, clip: Path, repeat: int, model: str | None = None
) -> dict[str, object]:
    """``dmd analyze`` of ``clip`` from ``before`` and ``after`` alternately (a warm-up round first, not
    counted): every run's wall and CPU seconds, their medians and the after/before ratios of the medians."""
    runs: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in ("before", "after")}
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat + 1):
            for name, src in (("before", before), ("after", after)):
                wall, cpu = _timed(_analyze_cmd(clip, f"{tmp}/{name}", model), src)
                if r:
                    runs[name]["wall"].append(round(wall, 3))
                    runs[name]["cpu"].append(round(cpu, 3))
            loads.append(os.getloadavg())
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in runs.items()}
    return {
        "clip": str(clip),
        "before": str(before),
        "after": str(after),
        "runs": runs,
        "median": med,
        "ratio_wall": med["after"]["wall"] / med["before"]["wall"],
        "ratio_cpu": med["after"]["cpu"] / med["before"]["cpu"],
        "load": [round(x[0], 2) for x in loads],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=REPO, help="source tree to measure (put on PYTHONPATH)")
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=None, help="--model for analyze (default: the bundled defaults)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--against", type=Path, default=None, help="A/B: the source tree to compare --src with")
    args = ap.parse_args()
    if not args.clip.is_file():
        raise SystemExit(f"{args.clip} is absent (../shared/data/clips); pass --clip")
    if args.against is not None:
        ab = interleaved(args.against.resolve(), args.src.resolve(), args.clip, args.repeat, args.model)
        print(json.dumps(ab, indent=1))
        return
    res = measure(args.src.resolve(), args.clip, args.repeat, args.model)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"source {res['src']}, clip {Path(str(res['clip'])).name}, load {res['load_before']}")
    for k, target in TARGETS_S.items():
        v = float(res[k])  # type: ignore[arg-type]
        print(f"  {k:<8} {v:6.2f} s  (target <= {target} s: {'ok' if v <= target else 'over'})")
    print(f"  first analyze (fills caches): {float(res['analyze_first']):.2f} s")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
