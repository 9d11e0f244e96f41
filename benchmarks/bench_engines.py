"""Local workers vs Ray actors: ``dmd analyze`` of 16 clips with ``--engine ray --actors 2``, ``-j 2`` and
``-j 1``, runs interleaved (A, B, C, A, B, C, ...), medians and ratios of medians; then the driver's own
work per file, to say how far one driver goes (a 100-node extrapolation in BENCHMARKS.md).

The 16 clips are the 8 real clips of ``../shared/data/clips`` copied twice (copies: the driver removes
duplicates by what a path points to). Every run is a fresh ``dmd analyze`` process into a new folder
(models loaded, Ray's private instance started and stopped: what a user pays for one run).

Driver-side work per finished file (what the driver does with each result, whatever the engine): receive
it (a pickle round trip of the outcome stands in for Ray's transfer, plus one measured Ray task round trip),
write its files atomically (``commit_outputs``), rewrite ``summary.csv``/``errors.csv`` from every result in
the folder (``write_tables``; the batch calls it after a file only when the last rewrite took less than a
tenth of the time since, so it costs at most ~10% of the driver), and before the run, per input, the
resume check (``existing_result``) and the ffprobe probe (``probe_problem``). ``write_tables`` grows with
the folder, so it is timed with 100, 1,000 and 10,000 results present.

    python benchmarks/bench_engines.py                     # 3 rounds (9 runs), then the driver costs
    python benchmarks/bench_engines.py --rounds 1 --json   # one JSON object
    python benchmarks/bench_engines.py --driver-only       # only the driver-side costs
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "clips"
CONFIGS: dict[str, list[str]] = {
    "ray --actors 2": ["--engine", "ray", "--actors", "2"],
    "-j 2": ["-j", "2"],
    "-j 1": ["-j", "1"],
}


def _inputs(dest: Path, copies: int) -> list[Path]:
    clips = sorted(p for p in CLIPS.iterdir() if p.suffix.lower() in (".mp4", ".flv"))
    if not clips:
        raise SystemExit(f"no clips in {CLIPS}")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(copies):
        for c in clips:
            p = dest / f"{c.stem}_{i}{c.suffix}"
            shutil.copy(c, p)
            out.append(p)
    return out


def _run(src: Path, out: Path, extra: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "dmd_pipeline.cli.app", "analyze", str(src), "--out", str(out), "-q", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-3000:]}")
    return dt


def engines(rounds: int, copies: int, tmp: Path) -> dict[str, Any]:
    """Wall seconds of each configuration, interleaved; medians, ratios, files per second."""
    src = tmp / "in"
    files = _inputs(src, copies)
    times: dict[str, list[float]] = {k: [] for k in CONFIGS}
    for r in range(rounds):
        for name, extra in CONFIGS.items():
            dt = _run(src, tmp / f"out-{r}-{name.replace(' ', '_')}", extra)
            times[name].append(dt)
            load = os.getloadavg()[0]
            print(f"round {r + 1}: {name:15s} {dt:6.1f} s  (load {load:.2f})", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["-j 1"]
    return {
        "files": len(files),
        "times_s": times,
        "median_s": med,
        "files_per_s": {k: len(files) / v for k, v in med.items()},
        "speedup_vs_j1": {k: base / v for k, v in med.items()},
        "ray_vs_j2": med["-j 2"] / med["ray --actors 2"],
        "outputs": str(tmp),
    }


def _ms(fn: Any, n: int) -> float:
    """Median milliseconds of ``n`` calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def driver_costs(tmp: Path, sample_out: Path | None) -> dict[str, Any]:
    """Per-file milliseconds of the driver's own work, with 100 / 1,000 / 10,000 results in --out."""
    from dmd_pipeline.analysis.batch import (
        FileOutcome,
        commit_outputs,
        existing_result,
        output_names,
        probe_problem,
        write_tables,
    )

    if sample_out is None or not any(sample_out.glob("*.json")):  # make one real result
        sample_out = tmp / "sample"
        clip = sorted(CLIPS.glob("*.mp4"))[0]
        _run(clip, sample_out, [])
    jp = sorted(p for p in sample_out.glob("*.json"))[0]
    doc = json.loads(jp.read_text(encoding="utf-8"))
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    media = Path(doc["file"])
    res: dict[str, Any] = {"result_json_bytes": len(text.encode())}

    oc = FileOutcome(str(media), "x", "ok", headline=doc.get("headline", ""))
    oc.outputs = {"x.json": text}
    res["pickle_roundtrip_ms"] = _ms(lambda: pickle.loads(pickle.dumps(oc)), 50)
    from dmd_pipeline import media as media_mod

    def probe_uncached() -> None:
        media_mod._PROBES.clear()  # the driver probes each input once: no cache hit
        probe_problem(media)

    res["probe_ms"] = _ms(probe_uncached, 10)
    res["existing_result_ms"] = _ms(lambda: existing_result(jp, media), 20)
    res["ray_task_roundtrip_ms"] = _ray_roundtrip(oc)

    for n in (100, 1000, 10000):
        out = tmp / f"tables-{n}"
        out.mkdir()
        files = [Path(f"/data/clip{i:06d}.mp4") for i in range(n)]
        names = output_names(files)
        for f in files:  # results in the folder (their "file" fields differ)
            d = dict(doc, file=str(f))
            (out / f"{names[f]}.json").write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
        outcomes = {f: FileOutcome(str(f), names[f], "ok") for f in files}
        write_tables(files, names, outcomes, out)  # warm the driver's document cache (as in a run)
        k = iter(range(10**9))

        def one_file(
            out: Path = out, files: list[Path] = files, names: dict = names, outcomes: dict = outcomes, k=k
        ) -> None:
            i = next(k) % len(files)
            f = files[i]
            o = FileOutcome(str(f), names[f], "ok")
            o.outputs = {f"{names[f]}.json": json.dumps(dict(doc, file=str(f)), indent=2) + "\n"}
            commit_outputs(out, o)
            outcomes[f] = o
            write_tables(files, names, outcomes, out)

        res[f"json_plus_tables_ms_with_{n}_results"] = _ms(one_file, 5 if n >= 10000 else 20)
        res[f"commit_json_ms_with_{n}_results"] = _ms(
            lambda out=out: commit_outputs(out, _with(FileOutcome("/data/z.mp4", "z", "ok"), text)), 20
        )
        shutil.rmtree(out)
    return res


def _with(oc: Any, text: str) -> Any:
    oc.outputs = {f"{oc.name}.json": text}
    return oc


def _ray_roundtrip(payload: Any) -> float | None:
    """Median ms of one Ray actor call returning ``payload`` (a private 1-CPU instance), None without Ray."""
    try:
        import ray
    except ImportError:
        return None
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:

        @ray.remote(num_cpus=0)
        class Echo:
            def get(self, x: Any) -> Any:
                return x

        a = Echo.remote()
        ray.get(a.get.remote(1))
        return _ms(lambda: ray.get(a.get.remote(payload)), 50)
    finally:
        ray.shutdown()


def main() -> None:
    """Run the engines comparison and the driver-side costs; print a table or one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--copies", type=int, default=2, help="copies of the 8 clips (2: 16 files)")
    ap.add_argument("--driver-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, Any] = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as t:
        tmp = Path(t)
        sample = None
        if not args.driver_only:
            result["engines"] = engines(args.rounds, args.copies, tmp)
            sample = tmp / "out-0--j_1"
        result["load_after_engines"] = os.getloadavg()
        result["driver"] = driver_costs(tmp, sample)
    result["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if "engines" in result:
        e = result["engines"]
        print(f"\n{e['files']} files; median wall s (files/s, speed-up vs -j 1):")
        for k, v in e["median_s"].items():
            print(f"  {k:15s} {v:6.1f} s  ({e['files_per_s'][k]:.2f} files/s, x{e['speedup_vs_j1'][k]:.2f})")
        print(f"  ray / -j 2 throughput ratio: {e['ray_vs_j2']:.2f}")
    print("\ndriver-side work (ms):")
    for k, v in result["driver"].items():
        print(f"  {k:34s} {v if v is None or isinstance(v, int) else round(v, 2)}")
    print(f"\nload average before {result['load_before']}, after {result['load_after']}")


if __name__ == "__main__":
    main()
