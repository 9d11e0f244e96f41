"""Latency, backlog and memory of ``dmd live`` over a long stream (issue 20).

Joins the 7 real RAVDESS audio-video clips of actor 1 (``../shared/data/ravdess/video/01-01-*``: one
sentence each, with pauses; ~23 s) into one clip, loops it into a stream of ``--minutes`` (default 10;
codecs copied), plays it at real time with ffmpeg as MPEG-TS over UDP on loopback (127.0.0.1 only) into
``dmd live udp://... --stdout`` with the bundled default models, and records per utterance its latency
(from the moment the stream passed the utterance's end to its JSON line, as ``dmd live`` measures it), the
utterances waiting behind it, whether it was joined with others or scored early, and where its latency went
(``started_s``, ``frames_wait_s``, ``scoring_s``); every 5 s the resident memory of
``dmd live`` (VmRSS, plus its ffmpeg) and the load average. Prints a JSON summary (per-minute latency p95,
backlog and RSS, to show whether they grow) and writes it to ``--out``.

    .venv/bin/python benchmarks/bench_live.py [--minutes 10] [--out bench_live.json] [--asr-model base|tiny.en]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its children (MiB); 0 when gone."""
    total = 0.0
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024.0
        except OSError:
            pass
    return total


def _joined(folder: Path) -> Path:
    video = REPO.parent / "shared" / "data" / "ravdess" / "video"
    clips = sorted(video.glob("01-01-*.mp4"))
    if not clips:
        sys.exit(f"{video} is absent: the benchmark streams real clips")
    out = folder / "ravdess_actor1.mp4"
    inputs = [a for c in clips for a in ("-i", str(c))]
    graph = "".join(f"[{k}:v][{k}:a]" for k in range(len(clips))) + f"concat=n={len(clips)}:v=1:a=1[v][a]"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]", "-map",
         "[a]", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-c:a", "aac", str(out)],
        check=True,
    )  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("bench_live.json"))
    ap.add_argument("--asr-model", default=None, help="dmd live --asr-model (default: dmd live's own)")
    args = ap.parse_args()
    seconds = float(args.minutes) * 60.0
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        clip = _joined(Path(tmp))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        live = subprocess.Popen(
            [sys.executable, "-m", "dmd_pipeline.cli.app", "live", f"udp://127.0.0.1:{port}", "--stdout",
             "--stall-timeout", "30", *(["--asr-model", args.asr_model] if args.asr_model else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        recs: list[dict] = []
        errs: list[str] = []
        ready = threading.Event()
        t_line: list[float] = []

        def read_out() -> None:
            for line in iter(live.stdout.readline, ""):
                recs.append(json.loads(line))
                t_line.append(time.monotonic())

        def read_err() -> None:
            for line in iter(live.stderr.readline, ""):
                errs.append(line.rstrip())
                if "live: reading" in line:
                    ready.set()

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()
        if not ready.wait(timeout=900):
            live.kill()
            sys.exit("dmd live did not start:\n" + "\n".join(errs))
        samples: list[dict] = []
        t0 = time.monotonic()
        sender = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-t", f"{seconds:.0f}", "-i",
             str(clip), "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        )  # fmt: skip
        while sender.poll() is None:
            samples.append(
                {"t": round(time.monotonic() - t0, 1), "rss_mb": round(_rss_mb(live.pid), 1),
                 "load": os.getloadavg()[0], "utterances": len(recs)}
            )  # fmt: skip
            time.sleep(5.0)
        time.sleep(15.0)  # the last utterances
        live.send_signal(signal.SIGINT)
        rc = live.wait(timeout=600)
    utts = [r for r in recs if r.get("type") == "utterance"]
    lat = np.array([r["live"]["latency_s"] for r in utts], np.float64)
    per_min: list[dict] = []
    for m in range(int(np.ceil(seconds / 60.0))):
        sel = [r for r in utts if m * 60 <= r["end"] < (m + 1) * 60]
        rss = [s["rss_mb"] for s in samples if m * 60 <= s["t"] < (m + 1) * 60]
        if sel:
            la = np.array([r["live"]["latency_s"] for r in sel])
            per_min.append({
                "minute": m + 1, "utterances": len(sel), "latency_p50": round(float(np.percentile(la, 50)), 2),
                "latency_p95": round(float(np.percentile(la, 95)), 2),
                "waiting_max": max(r["live"]["waiting"] for r in sel),
                "joined_max": max(r["live"]["joined"] for r in sel),
                "rss_mb_median": round(float(np.median(rss)), 1) if rss else None,
            })  # fmt: skip
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "asr_model": args.asr_model or "dmd live's default",
        "stream_s": seconds,
        "exit_code": rc,
        "utterances": len(utts),
        "latency_p50": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "latency_p95": round(float(np.percentile(lat, 95)), 3) if lat.size else None,
        "latency_max": round(float(lat.max()), 3) if lat.size else None,
        "behind": int(sum(bool(r["live"]["behind"]) for r in utts)),
        "early": int(sum(bool(r["live"].get("early")) for r in utts)),
        # where the latency went (p50 / p95 over the utterances): end -> scoring started, frames, scoring
        "parts": {
            k: [round(float(np.percentile(v, q)), 3) for q in (50, 95)]
            for k in ("started_s", "frames_wait_s", "scoring_s")
            if (v := [r["live"][k] for r in utts if k in r["live"]])
        },
        "waiting_max": max((r["live"]["waiting"] for r in utts), default=0),
        "rss_mb_first_min": per_min[0]["rss_mb_median"] if per_min else None,
        "rss_mb_last_min": per_min[-1]["rss_mb_median"] if per_min else None,
        "rss_mb_max": max((s["rss_mb"] for s in samples), default=None),
        "load_1min": [round(s["load"], 2) for s in samples[:: max(1, len(samples) // 10)]],
        "per_minute": per_min,
        "status": [e for e in errs if "behind" in e or "caught up" in e or "backlog" in e][:20],
    }
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
