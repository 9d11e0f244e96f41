"""Where the time of one ``dmd live`` utterance goes (issue 20): per stage, on the live scoring path.

Builds a :class:`~dmd_pipeline.live.runner.LiveRunner` with the bundled default models (warmed up as
``dmd live`` does), decodes real RAVDESS audio-video clips (``../shared/data/ravdess/video/01-01-*``: one
sentence each), cuts each with the live :class:`~dmd_pipeline.live.cutter.UtteranceCutter` and scores the
utterance through the runner's own ``_score`` (the path a live stream takes), timing each stage: the cut
(voice activity), the feature stages (the extractor's ``timings``: transcript = language identification +
speech recognition, language, align, acoustic, visual, speech, text), language identification and speech
recognition apart, the models + fusion (``score_stretch``), the assembly of the record (``assemble_result``)
and the total. Prints one JSON object: per clip and the median per stage, with the load average.

    .venv/bin/python benchmarks/profile_live.py [--clips 7] [--repeat 1] [--out profile_live.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _timed(store: dict[str, float], key: str, fn):  # noqa: ANN001, ANN202 - a wrapper of any callable
    def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            store[key] = store.get(key, 0.0) + time.perf_counter() - t0

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from dmd_pipeline import media
    from dmd_pipeline.analysis import analyze
    from dmd_pipeline.extractors import language, transcribe
    from dmd_pipeline.live import runner as live_runner
    from dmd_pipeline.live.cutter import UtteranceCutter
    from dmd_pipeline.live.source import parse_source

    clips = sorted((REPO.parent / "shared" / "data" / "ravdess" / "video").glob("01-01-*.mp4"))[: args.clips]
    if not clips:
        sys.exit("../shared/data/ravdess/video is absent: the profile scores real clips")
    t0 = time.perf_counter()
    run = live_runner.LiveRunner(parse_source(str(clips[0]), realtime=True))
    run.warm_up()
    load_s = time.perf_counter() - t0
    stage: dict[str, float] = {}
    # wrap the calls whose time the extractor's timings do not separate
    language.detect = _timed(stage, "language_id", language.detect)
    transcribe._transcribe_whisper = _timed(stage, "asr_total", transcribe._transcribe_whisper)
    orig_model = transcribe.whisper_model

    def model_for(*a, **k):  # noqa: ANN002, ANN003, ANN202
        m = orig_model(*a, **k)
        if not getattr(m, "_profiled", False):
            m.transcribe = _timed(stage, "whisper_transcribe", m.transcribe)
            m._profiled = True
        return m

    transcribe.whisper_model = model_for
    live_runner_score = {}
    analyze_score, analyze_assemble = analyze.score_stretch, analyze.assemble_result
    analyze.score_stretch = _timed(live_runner_score, "models_fusion", analyze_score)
    analyze.assemble_result = _timed(live_runner_score, "assemble", analyze_assemble)
    bundles: list[dict[str, float]] = []
    ext = run.ext
    orig_extract = ext.extract_arrays

    def extract(*a, **k):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        b = orig_extract(*a, **k)
        bundles.append({**b.metadata["timings"], "extract_total": time.perf_counter() - t0})
        return b

    ext.extract_arrays = extract
    rows = []
    for _ in range(args.repeat):
        for clip in clips:
            audio = media.load_audio(clip, sr=16000)
            frames = list(media.iter_frames(clip, fps=run.fps, max_side=run.ext.config.max_side or 640))
            cutter = UtteranceCutter(
                16000, run.options.pause_s, run.options.max_utterance_s, run.options.min_speech_s
            )
            t1 = time.perf_counter()
            utts = cutter.push(audio) + cutter.flush()
            cut_s = time.perf_counter() - t1
            if not utts:
                continue
            u = utts[0]
            run._frames = live_runner._Frames(10_000)
            for t, f in frames:
                run._frames.add(t, f)
            stage.clear()
            live_runner_score.clear()
            bundles.clear()
            got: list[dict] = []
            run.on_result = got.append
            t2 = time.perf_counter()
            run._score([(u, time.monotonic())])
            total = time.perf_counter() - t2
            b = bundles[-1] if bundles else {}
            rows.append({
                "clip": clip.name, "utterance_s": round(u.end - u.start, 2), "cut_s_per_clip": round(cut_s, 4),
                **{f"stage_{k}": round(v, 4) for k, v in b.items()},
                **{k: round(v, 4) for k, v in stage.items()},
                **{k: round(v, 4) for k, v in live_runner_score.items()},
                "score_total": round(total, 4), "load_1min": os.getloadavg()[0],
                "label": (got[0].get("fused") or {}).get("label") if got else None,
                "text": got[0].get("text") if got else None,
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    keys = sorted({k for r in rows for k in r if isinstance(r[k], float) and k != "load_1min"})
    med = {k: round(float(np.median([r[k] for r in rows if k in r])), 4) for k in keys}
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
        "load_1min": [r["load_1min"] for r in rows], "startup_s": round(load_s, 2),
        "models": run.names, "face_model": getattr(run.face_model, "name", None),
        "median": med, "rows": rows,
    }  # fmt: skip
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text)
    print(json.dumps({"median": med, "load": out["load_1min"]}, indent=2))


if __name__ == "__main__":
    main()
