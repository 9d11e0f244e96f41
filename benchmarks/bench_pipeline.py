"""End-to-end speed of the whole extraction pipeline, word alignment on, and of ``dmd analyze``.

Runs ``Extractor(ExtractionConfig(fps=..., asr=...)).extract_clip(path, transcript=...)`` (no feature cache)
as a user runs it, over the real clips in ../shared/data/clips (transcripts from labels.csv) and a generated
60 s clip (astronaut face, espeak-ng speech, 640x480, 25 fps; tests/media_factory.py), in two settings:

- ``given``: the transcript is given, its words are force-aligned;
- ``whisper``: no transcript, Whisper tiny.en ASR, then forced alignment;

each with the visual stage at 10 fps (the default) and 25 fps (the rate MMSA-FET uses).

Reported as real-time factors (RTF, seconds of work per second of media; lower is faster) per pipeline stage
(``bundle.metadata["timings"]``) and in total, warm (models loaded and one warm-up clip run first, in this
process) and cold (a fresh Python process per measurement: interpreter start, imports, model loads and one
clip; peak RSS from /proc/self/status VmHWM inside that process). Warm short clips: the fastest of
``--repeats`` runs; the long clip: one run. Totals come with the ratio to the MMSA-FET 0.4.1
reference in ../shared/DESIGN.md ("Performance references"; ratio = reference / ours, > 1 means faster).
Then ``analyze_clip`` (the bundled model) on the 60 s clip: called twice, the second call is the warm time;
and, unless ``--quick``, the ``dmd analyze`` command itself in a fresh process (cold, as a user starts it).

Prints a table; writes files only in a temporary folder.

    .venv/bin/python benchmarks/bench_pipeline.py [--quick] [--threads 2] [--long 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

STAGES = ("input", "probe", "audio", "transcript", "align", "acoustic", "visual", "text")
# MMSA-FET 0.4.1 (DESIGN.md): 25 fps face mesh, librosa, MiniLM text, transcripts given, no alignment.
REF_WARM_CLIPS = (0.45, 0.68)
REF_WARM_LONG = (0.29, 0.43)
REF_COLD_S_PER_2S_CLIP = 13.0
REF_RSS_MB = (800.0, 1000.0)
FULL_SETTINGS = (("given", 10.0), ("given", 25.0), ("whisper", 10.0), ("whisper", 25.0))
QUICK_SETTINGS = (("given", 10.0), ("whisper", 10.0))


def set_threads(threads: int) -> None:
    """Thread limits for every native library; must run before numpy/torch/ctranslate2 are imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM, MB); unlike ru_maxrss it is not inherited on fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def make_extractor(setting: str, fps: float) -> Any:
    """The extractor a user gets for this setting (``given``: default ASR engine, unused since the
    transcript is passed), no cache."""
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    return Extractor(ExtractionConfig(fps=fps, asr="whisper" if setting == "given" else setting), cache=None)


def measure(ext: Any, path: str, transcript: str | None) -> dict[str, Any]:
    """One ``extract_clip`` call: wall seconds, per-stage seconds, duration and word counts."""
    t0 = time.perf_counter()
    bundle = ext.extract_clip(path, transcript=transcript, use_cache=False)
    wall = time.perf_counter() - t0
    meta = bundle.metadata
    return {
        "wall_s": wall,
        "duration_s": float(meta["source"]["duration"]),
        "stages": {k: float(v) for k, v in meta["timings"].items()},
        "n_words": len(bundle.words),
        "word_sources": dict(meta.get("word_sources") or {}),
        "transcript_source": meta.get("transcript_source"),
    }


# ---- cold: one fresh process per measurement ------------------------------------------------------
def cold_child(spec: dict[str, Any]) -> None:
    """Entry point of a cold measurement, in a fresh process: imports, model loads, one clip."""
    t0 = time.perf_counter()
    import dmd_pipeline.pipeline  # noqa: F401

    imports = time.perf_counter() - t0
    ext = make_extractor(spec["asr"], spec["fps"])
    res = measure(ext, spec["path"], spec["transcript"])
    res["imports_s"] = imports
    res["loads"] = {k: float(v) for k, v in ext.load_timings.items()}
    res["in_process_s"] = time.perf_counter() - t0
    res["peak_rss_mb"] = peak_rss_mb()
    ext.close()
    print("RESULT " + json.dumps(res), flush=True)


def run_cold(path: str, asr: str, fps: float, transcript: str | None) -> dict[str, Any]:
    """Start a fresh interpreter for one clip; its wall time includes interpreter start-up."""
    spec = {"path": path, "asr": asr, "fps": fps, "transcript": transcript}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--cold-child", json.dumps(spec)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"cold run failed ({path}, {asr}, {fps} fps):\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][7:])
    res["process_wall_s"] = wall
    return res


def run_cli_cold(path: str, out_dir: str) -> dict[str, Any]:
    """``dmd analyze PATH -o OUT -q`` in a fresh process (default model and ASR), wall time and VmHWM."""
    code = (
        "import atexit, sys\n"
        "def _hwm():\n"
        "    for ln in open('/proc/self/status'):\n"
        "        if ln.startswith('VmHWM:'):\n"
        "            sys.stderr.write('VMHWM_KB ' + ln.split()[1] + '\\n')\n"
        "atexit.register(_hwm)\n"
        f"sys.argv = ['dmd', 'analyze', {path!r}, '-o', {out_dir!r}, '-q']\n"
        "from dmd_pipeline.cli.app import main\n"
        "main()\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    hwm = [ln for ln in proc.stderr.splitlines() if ln.startswith("VMHWM_KB ")]
    if proc.returncode != 0:
        raise RuntimeError(f"dmd analyze failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    doc = json.loads(next(Path(out_dir).glob("*.json")).read_text())
    return {
        "process_wall_s": wall,
        "peak_rss_mb": int(hwm[-1].split()[1]) / 1024.0 if hwm else float("nan"),
        "timings": doc.get("timings", {}),
        "n_segments": len(doc.get("segments", [])),
    }


# ---- media ------------------------------------------------------------------------------------------
def real_clips() -> list[tuple[str, str]]:
    """(path, transcript) of the shared real clips, from labels.csv; empty when ../shared is absent."""
    from dmd_pipeline.utils import shared_dir

    sd = shared_dir()
    folder = sd / "data" / "clips" if sd is not None else None
    if folder is None or not (folder / "labels.csv").is_file():
        return []
    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [(str(folder / r["file"]), r["transcript"]) for r in rows if (folder / r["file"]).is_file()]


def long_clip(root: str, duration: float) -> tuple[str, str]:
    """The generated clip and its transcript: the factory's sentence as often as it is spoken whole (the
    audio loops it; a cut-off last repetition is left out of the text, since words that are not in the
    audio make the forced alignment of the whole segment fail: all words then fall back to proportional)."""
    import soundfile as sf
    from media_factory import DEFAULT_TEXT, MediaFactory

    factory = MediaFactory(root)
    path = factory.face_video(duration=duration, size=(640, 480), fps=25, speech=True)
    info = sf.info(str(factory.speech_wav(DEFAULT_TEXT)))
    reps = max(1, math.floor(duration / (info.frames / info.samplerate)))
    return str(path), " ".join([DEFAULT_TEXT] * reps)


# ---- report -----------------------------------------------------------------------------------------
def rng(values: list[float], fmt: str = "{:.3f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if abs(hi - lo) < 5e-4 else f"{fmt.format(lo)}-{fmt.format(hi)}"


def ratio(ref: tuple[float, float], ours: list[float]) -> str:
    """reference / ours: conservative (best reference over our worst clip) and at the midpoints."""
    cons = ref[0] / max(ours)
    mid = (sum(ref) / 2) / (sum(ours) / len(ours))
    return f"{cons:.2f}x (conservative) / {mid:.2f}x (means)"


def print_warm(setting: str, rows: list[tuple[str, dict[str, Any]]], n_clips: int) -> None:
    print(f"\n### warm, {setting} (RTF = seconds per second of media; short clips: fastest of the repeats)")
    print("| media | dur s | " + " | ".join(STAGES) + " | total | words (forced) |")
    print("|---|---|" + "---|" * len(STAGES) + "---|---|")
    for name, r in rows:
        d = r["duration_s"]
        cells = [f"{r['stages'].get(s, 0.0) / d:.3f}" for s in STAGES]
        forced = r["word_sources"].get("forced", 0)
        print(f"| {name} | {d:.2f} | " + " | ".join(cells) + f" | **{r['wall_s'] / d:.3f}** | "
              f"{r['n_words']} ({forced}) |")  # fmt: skip
    clips = [r["wall_s"] / r["duration_s"] for _, r in rows[:n_clips]]
    if clips:
        print(f"real clips: total RTF {rng(clips)}; MMSA-FET {REF_WARM_CLIPS[0]}-{REF_WARM_CLIPS[1]}: "
              f"ratio {ratio(REF_WARM_CLIPS, clips)}")  # fmt: skip
    if len(rows) > n_clips:
        r = rows[-1][1]
        long_rtf = r["wall_s"] / r["duration_s"]
        print(f"long clip: total RTF {long_rtf:.3f}; MMSA-FET {REF_WARM_LONG[0]}-{REF_WARM_LONG[1]}: "
              f"ratio {ratio(REF_WARM_LONG, [long_rtf])}")  # fmt: skip


def print_cold(cold: list[tuple[str, str, dict[str, Any]]]) -> None:
    print("\n### cold (fresh process per row: interpreter + imports + model loads + one clip)")
    print("| setting | media | dur s | process wall s | imports s | model loads s | extract s (incl. loads) | "
          "RTF (wall/dur) | MMSA-FET ratio | peak RSS MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for setting, name, r in cold:
        d = r["duration_s"]
        loads = sum(r["loads"].values())
        cmp = "-"
        if d < 5:  # the reference is ~13 s per 2 s clip: compare per second of media
            cmp = f"{(REF_COLD_S_PER_2S_CLIP / 2.0) / (r['process_wall_s'] / d):.2f}x"
        print(f"| {setting} | {name} | {d:.2f} | {r['process_wall_s']:.2f} | {r['imports_s']:.2f} | "
              f"{loads:.2f} | {r['wall_s']:.2f} | {r['process_wall_s'] / d:.3f} | {cmp} | "
              f"{r['peak_rss_mb']:.0f} |")  # fmt: skip
    if cold:
        rss = [r["peak_rss_mb"] for _, _, r in cold]
        print(f"peak RSS {rng(rss, '{:.0f}')} MB vs MMSA-FET {REF_RSS_MB[0]:.0f}-{REF_RSS_MB[1]:.0f} MB "
              f"(ratio {REF_RSS_MB[0] / max(rss):.2f}-{REF_RSS_MB[1] / min(rss):.2f}x, reference / ours)")  # fmt: skip
        print("stage seconds of each cold run (first calls include lazy imports / model loads):")
        for setting, name, r in cold:
            st = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
            ld = ", ".join(f"{k} {v:.2f}" for k, v in r["loads"].items())
            print(f"  {setting} {name}: {st}; loads: {ld}")


def print_analyze(a: dict[str, Any]) -> None:
    d = a["duration_s"]
    print(f"\n### dmd analyze on the {d:.0f} s clip (bundled model {a['model']}, default options: "
          f"Whisper ASR + alignment, visual at {a['fps']:g} fps for the cues)")  # fmt: skip
    print(f"model load {a['model_load_s']:.2f} s; first call {a['first_s']:.2f} s (RTF {a['first_s'] / d:.3f}, "
          f"new extractor, libraries already imported); warm call {a['warm_s']:.2f} s -> **RTF {a['warm_s'] / d:.3f}**, "
          f"{a['n_segments']} segments")  # fmt: skip
    print("warm call, seconds per stage: " + ", ".join(f"{k} {v:.3f}" for k, v in a["timings"].items()))
    if "cli" in a:
        c = a["cli"]
        print(f"`dmd analyze` in a fresh process: wall {c['process_wall_s']:.2f} s (RTF "
              f"{c['process_wall_s'] / d:.3f}), peak RSS {c['peak_rss_mb']:.0f} MB; its stages: "
              + ", ".join(f"{k} {v:.2f}" for k, v in c["timings"].items()))  # fmt: skip


# ---- main -------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 fps only, fewer cold runs, no CLI run")
    ap.add_argument("--threads", type=int, default=2, help="OMP/MKL threads (torch, CTranslate2, numpy)")
    ap.add_argument("--long", type=float, default=60.0, help="duration of the generated clip (s)")
    ap.add_argument("--repeats", type=int, default=3, help="warm runs per short clip; the fastest is shown")
    ap.add_argument("--cold-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    set_threads(args.threads)
    if args.cold_child:
        cold_child(json.loads(args.cold_child))
        return

    load_before = loadavg()
    t_start = time.perf_counter()
    settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    tmp = tempfile.TemporaryDirectory(prefix="bench_pipeline_")
    clips = real_clips()
    long_path, long_text = long_clip(tmp.name, args.long)
    media = [*clips, (long_path, long_text)]
    names = [Path(p).name for p, _ in clips] + [f"generated {args.long:.0f} s 640x480"]

    # cold first, while this process holds no models
    cold: list[tuple[str, str, dict[str, Any]]] = []
    for asr, fps in settings:
        if args.quick and asr != "given":
            targets = [media[-1]]
        else:
            targets = [*([media[0]] if clips else []), media[-1]]
        for path, text in targets:
            tr = text if asr == "given" else None
            name = names[media.index((path, text))]
            cold.append((f"{asr} @{fps:g} fps", name, run_cold(path, asr, fps, tr)))

    warm: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    warm_rss = 0.0
    for asr, fps in settings:
        ext = make_extractor(asr, fps)
        path, text = media[0]
        measure(ext, path, text if asr == "given" else None)  # warm-up: loads every model
        rows = []
        for i, ((path, text), name) in enumerate(zip(media, names, strict=True)):
            n = 1 if i == len(media) - 1 else max(1, args.repeats)  # the long clip: one run
            runs = [measure(ext, path, text if asr == "given" else None) for _ in range(n)]
            rows.append((name, min(runs, key=lambda r: r["wall_s"])))
        warm[f"{asr} @{fps:g} fps"] = rows
        ext.close()
        warm_rss = peak_rss_mb()

    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip, get_extractor
    from dmd_pipeline.analysis.registry import load_model

    t0 = time.perf_counter()
    model = load_model(None)
    ana: dict[str, Any] = {"model_load_s": time.perf_counter() - t0, "model": model.name}
    opts = AnalyzeOptions()
    t0 = time.perf_counter()
    analyze_clip(long_path, model, opts)
    ana["first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = analyze_clip(long_path, model, opts)
    ana["warm_s"] = time.perf_counter() - t0
    ana.update(duration_s=res.duration, timings=res.timings, n_segments=len(res.segments))
    ana["fps"] = get_extractor(model, opts).config.fps
    if not args.quick:
        ana["cli"] = run_cli_cold(long_path, str(Path(tmp.name) / "analyze_out"))
    load_after = loadavg()

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"# bench_pipeline: {os.cpu_count()} cores ({cpu}), {platform.machine()}, Python "
          f"{platform.python_version()}, {args.threads} threads; {time.strftime('%Y-%m-%d %H:%M %Z')}")  # fmt: skip
    print(f"load average (1/5/15 min) before {load_before}, after {load_after}; "
          f"benchmark wall {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    for setting, rows in warm.items():
        print_warm(setting, rows, len(clips))
    print(f"\nwarm process peak RSS (all settings' models loaded in turn): {warm_rss:.0f} MB")
    print_cold(cold)
    print_analyze(ana)
    tmp.cleanup()


if __name__ == "__main__":
    main()
