"""Pipelined vs serial ``dmd analyze`` (issue 11): total time against the slowest stage run alone.

Warm (models loaded, one warm-up run), in one process, on the generated 60 s clip (astronaut face,
espeak-ng speech, 640x480, 25 fps; tests/media_factory.py) or ``--clip``, with the bundled default models
and Whisper ASR, in interleaved rounds of three variants:

- ``serial, ASR 2 threads``: the stages one after another, Whisper with 2 CTranslate2 threads;
- ``serial, ASR 1 thread``: the same with 1 thread (this project's default on 2 cores);
- ``pipelined`` (the default): faces and acoustic features on stage threads beside the speech path.

Prints per variant the median total (``analyze_clip``, scoring included) and real-time factor, the median
time of every extraction stage in the serial runs ("run alone": nothing else runs beside it), and the
ratio of the pipelined total to the slowest stage alone (each stage at its faster thread setting).

    .venv/bin/python benchmarks/bench_pipelined.py [--rounds 5] [--clip PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

STAGES = ("probe", "audio", "transcript", "align", "acoustic", "visual", "text")
VARIANTS = {  # name -> (concurrent, DMD_ASR_THREADS)
    "serial, ASR 2 threads": (False, "2"),
    "serial, ASR 1 thread": (False, "1"),
    "pipelined (default)": (True, ""),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clip", default=None, help="media file (default: the generated 60 s clip)")
    args = ap.parse_args()
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip, get_extractor
    from dmd_pipeline.analysis.registry import load_models

    tmp = tempfile.TemporaryDirectory()
    if args.clip:
        clip = args.clip
    else:
        from bench_pipeline import long_clip

        clip, _ = long_clip(tmp.name, 60.0)
    models = load_models(None)
    opts = AnalyzeOptions()
    ext = get_extractor(models, opts)

    def run(name: str) -> dict[str, float]:
        concurrent, threads = VARIANTS[name]
        ext.concurrent = concurrent
        if threads:
            os.environ["DMD_ASR_THREADS"] = threads
        else:
            os.environ.pop("DMD_ASR_THREADS", None)
        t0 = time.perf_counter()
        res = analyze_clip(clip, models, opts)
        out = {k: float(v) for k, v in res.timings.items() if k in STAGES}
        out["total"] = time.perf_counter() - t0
        out["duration"] = float(res.duration)
        return out

    print(
        f"date {time.strftime('%Y-%m-%d %H:%M')}  load {os.getloadavg()}  cpus {os.cpu_count()}  clip {clip}"
    )
    for name in VARIANTS:  # warm-up: models loaded, each thread setting's Whisper built
        run(name)
    got: dict[str, list[dict[str, float]]] = {n: [] for n in VARIANTS}
    for r in range(args.rounds):
        for name in VARIANTS:
            got[name].append(run(name))
        print(
            f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {got[n][-1]['total']:.2f} s" for n in VARIANTS)
        )
    dur = got["pipelined (default)"][0]["duration"]

    def med(name: str, key: str) -> float:
        return statistics.median(x.get(key, 0.0) for x in got[name])

    print(f"\n| variant | total s (median) | RTF | {' | '.join(STAGES)} |")
    print("|---|---|---|" + "---|" * len(STAGES))
    for name in VARIANTS:
        cells = " | ".join(f"{med(name, s):.2f}" for s in STAGES)
        print(f"| {name} | {med(name, 'total'):.2f} | {med(name, 'total') / dur:.3f} | {cells} |")
    alone = {s: min(med("serial, ASR 2 threads", s), med("serial, ASR 1 thread", s)) for s in STAGES}
    slowest = max(alone, key=alone.get)  # type: ignore[arg-type]
    pipe = med("pipelined (default)", "total")
    print(
        f"\nslowest stage alone: {slowest} {alone[slowest]:.2f} s; pipelined total / slowest stage alone = "
        f"{pipe / alone[slowest]:.2f}x; pipelined / serial (2 threads) = {pipe / med('serial, ASR 2 threads', 'total'):.2f}x"
        f"; RTF {pipe / dur:.3f}"
    )
    print(f"load after {os.getloadavg()}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
