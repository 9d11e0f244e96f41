"""A bounded load test of ``dmd serve`` on loopback: N uploads, C at a time, each polled to completion.

Starts its own server (``--model mosi-text-minilm``, given transcripts, ``asr none``) on a free port of
127.0.0.1 with a temporary data dir, and stops it in a ``finally``. Bounded in count (``--n``) and time
(``--max-seconds``: what has not finished by then is counted as unfinished). Prints the upload latency
(POST -> 202), the end-to-end latency (POST -> done) p50/p95, the throughput (jobs per second over the
whole run) and the server's RSS after the warm-up job and at the end. The clip is a short generated speech
wav unless ``--clip`` is given.

``--stalled K`` first opens K connections that send their headers and 100 bytes of a body and then nothing
(each from its own loopback address, 127.0.1.x, so that no per-client bound applies), keeps them open
during the run, and reports what the server answered them and when (a server that counted them against
its queue would refuse the real uploads with 429).

    .venv/bin/python benchmarks/bench_serve.py --n 40 --concurrency 8 --workers 2
    .venv/bin/python benchmarks/bench_serve.py --n 100 --concurrency 1 --workers 1      # the soak
    .venv/bin/python benchmarks/bench_serve.py --n 10 --concurrency 2 --stalled 40     # slow clients
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
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
    ap.add_argument("--stalled", type=int, default=0, help="stalled uploads held open during the run")
    args = ap.parse_args()

    import httpx
    from media_factory import MediaFactory
    from test_serve import Server, upload

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    clip = args.clip or MediaFactory(tmp / "media").speech_wav(TEXT)
    queue = str(args.n) if not args.stalled else str(args.concurrency)  # stalled uploads must not fill it
    srv = Server(tmp / "data", "--workers", str(args.workers), "--max-queue", queue, "--max-upload-mb", "50")
    deadline = time.monotonic() + args.max_seconds
    up_lat: list[float] = []
    e2e: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60, headers={"X-DMD-Client": "bench"}) as c:
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
        rss0 = srv.rss_mb()
        stalled = _stall(srv.port, args.stalled)
        answers: list[tuple[float, bytes]] = []
        collector = threading.Thread(target=_collect, args=(stalled, answers), daemon=True)
        collector.start()
        if stalled:
            time.sleep(1.0)
            in_progress = httpx.get(srv.url + "/healthz").json().get("uploads_in_progress")
        t_run = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(one, range(args.n)))
        wall = time.perf_counter() - t_run
        rss = srv.rss_mb()
        collector.join(timeout=120)
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
    print(f"throughput: {len(e2e) / wall:.2f} jobs/s ({len(e2e)} done in {wall:.1f} s); "
          f"server RSS {rss0:.0f} MiB after the warm-up, {rss:.0f} MiB at the end")  # fmt: skip
    if stalled:
        codes: dict[str, list[float]] = {}
        for t, head in answers:
            key = head.split(b"\r\n", 1)[0].decode("latin-1", "replace") or "(closed without an answer)"
            codes.setdefault(key, []).append(t)
        how = "; ".join(f"{k}: {len(v)} after {min(v):.1f}-{max(v):.1f} s" for k, v in sorted(codes.items()))
        print(
            f"stalled uploads: {len(stalled)} held open; uploads_in_progress {in_progress} with them; {how}"
        )
    for f in failures[:10]:
        print("FAILED", f)
    return 1 if failures or len(e2e) < args.n else 0


def _stall(port: int, k: int) -> list[tuple[socket.socket, float]]:
    """``k`` connections, each from its own loopback address, that send headers and 100 bytes, then stop."""
    head = (
        (
            f"POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-DMD-Client: bench\r\n"
            "Content-Type: multipart/form-data; boundary=bNdRy\r\nContent-Length: 1048576\r\n\r\n"
        ).encode()
        + b"--bNdRy\r\n"
        + b"x" * 91
    )
    out = []
    for i in range(k):
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.1.{i + 1}", 0))
        s.sendall(head)
        out.append((s, time.monotonic()))
    return out


def _collect(stalled: list[tuple[socket.socket, float]], answers: list[tuple[float, bytes]]) -> None:
    """Wait (up to 90 s) for the server's answer on every stalled connection; (seconds, first bytes) each."""
    import selectors

    sel = selectors.DefaultSelector()
    for s, t0 in stalled:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, t0)
    t_end = time.monotonic() + 90
    while sel.get_map() and time.monotonic() < t_end:
        for key, _ in sel.select(timeout=1.0):
            data = b""
            with contextlib.suppress(OSError):
                data = key.fileobj.recv(4096)
            answers.append((time.monotonic() - key.data, data))
            sel.unregister(key.fileobj)
            key.fileobj.close()
    for key in list(sel.get_map().values()):  # never answered
        answers.append((time.monotonic() - key.data, b"(no answer in 90 s)"))
        key.fileobj.close()


if __name__ == "__main__":
    sys.exit(main())
