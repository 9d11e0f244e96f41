"""A bounded load test of ``dmd serve`` on loopback: N uploads, C at a time, each polled to completion.

Starts its own server (``--model mosi-text-minilm``, given transcripts, ``asr none``) on a free port of
127.0.0.1 with a temporary data dir, and stops it in a ``finally``. Bounded in count (``--n``) and time
(``--max-seconds``: what has not finished by then is counted as unfinished). Prints the upload latency
(POST -> 202), the end-to-end latency (POST -> done) p50/p95, and the throughput (jobs per second over the
whole run). The clip is a short generated speech wav unless ``--clip`` is given.

    .venv/bin/python benchmarks/bench_serve.py --n 40 --concurrency 8 --workers 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TEXT = "I really liked this movie. The acting was great, and the story kept me watching."


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    """Run the load test; returns the exit code (1 when some job failed or did not finish)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="uploads in all")
    ap.add_argument("--concurrency", type=int, default=8, help="clients at a time")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop waiting after this long")
    ap.add_argument("--clip", type=Path, default=None, help="the clip to upload (default: generated speech)")
    args = ap.parse_args()

    import httpx
    from media_factory import MediaFactory
    from test_serve import Server, upload

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    clip = args.clip or MediaFactory(tmp / "media").speech_wav(TEXT)
    srv = Server(
        tmp / "data", "--workers", str(args.workers), "--max-queue", str(args.n), "--max-upload-mb", "50"
    )
    deadline = time.monotonic() + args.max_seconds
    up_lat: list[float] = []
    e2e: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            t0 = time.perf_counter()
            r = upload(c, clip, name=f"clip{i:03d}{clip.suffix}", asr="none", transcript=TEXT)
            t1 = time.perf_counter()
            if r.status_code != 202:
                with lock:
                    failures.append(f"upload {i}: {r.status_code} {r.text[:100]}")
                return
            jid = r.json()["id"]
            while time.monotonic() < deadline:
                job = c.get(f"/v1/analyses/{jid}").json()
                if job["status"] in ("done", "failed"):
                    with lock:
                        up_lat.append(t1 - t0)
                        if job["status"] == "done":
                            e2e.append(time.perf_counter() - t0)
                        else:
                            failures.append(f"job {i}: {job['error']}")
                    return
                time.sleep(0.2)
            with lock:
                failures.append(f"job {i}: not finished in time")

    try:
        t_start = time.perf_counter()
        srv.start()
        t_ready = time.perf_counter()
        # one warm-up job so that the numbers are about a running service, not the model loading
        one(-1)
        up_lat.clear()
        e2e.clear()
        t_run = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(one, range(args.n)))
        wall = time.perf_counter() - t_run
        rss = srv.rss_mb()
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"clip: {clip.name}  uploads: {args.n}  concurrency: {args.concurrency}  workers: {args.workers}")
    print(f"server start: {t_ready - t_start:.1f} s (models load in the workers on the first job)")
    print(
        f"upload (POST -> 202)   p50 {_pct(up_lat, 0.5) * 1000:.0f} ms  p95 {_pct(up_lat, 0.95) * 1000:.0f} ms"
    )
    print(f"end to end (POST -> done) p50 {_pct(e2e, 0.5):.2f} s  p95 {_pct(e2e, 0.95):.2f} s  "
          f"mean {statistics.fmean(e2e) if e2e else float('nan'):.2f} s")  # fmt: skip
    print(
        f"throughput: {len(e2e) / wall:.2f} jobs/s ({len(e2e)} done in {wall:.1f} s); server RSS {rss:.0f} MiB"
    )
    for f in failures[:10]:
        print("FAILED", f)
    return 1 if failures or len(e2e) < args.n else 0


if __name__ == "__main__":
    sys.exit(main())
