"""The voice path of ``dmd analyze`` on the generated 60 s clip: the new default voice model against the old one.

    .venv/bin/python benchmarks/bench_voice_models.py [--rounds 3] [--duration 60]
        [--models voice-emotion-5corpora,ravdess-voice-emotion]

For each voice model, what the analysis spends on it for one file: the acoustic extraction of its setting
with the librosa cues (``dmd analyze`` extracts ``<setting>+librosa``: Whisper base's 7 states at 10 Hz for
the new model, tiny.en's final state at 50 Hz for the old), then the model's inputs for the file's 4 s
analysis windows (``LoadedModel.inputs``, its declared normalisation included) and its forward pass. One warm
process, one torch thread, models loaded once; interleaved rounds (order alternating), medians, the ratio of
medians, the load average before and after, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def main(argv: list[str] | None = None) -> int:
    import torch
    from media_factory import MediaFactory

    from dmd_pipeline import media
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.analysis.utterances import analysis_windows
    from dmd_pipeline.extractors.whisper_encoder import AcousticFeatureSet
    from dmd_pipeline.extractors.words import Segment
    from dmd_pipeline.features import FeatureBundle

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--models", default="voice-emotion-5corpora,ravdess-voice-emotion")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = args.models.split(",")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_voice_") as tmp:
        clip = MediaFactory(tmp).face_video(duration=args.duration, size=(640, 480), fps=25)
        y = media.load_audio(clip, sr=16000)
    runners = {}
    for name in names:
        model = load_model(name)
        feats = AcousticFeatureSet(f"{model.acoustic_setting}+librosa")

        def run(model=model, feats=feats) -> dict[str, float]:
            t0 = time.perf_counter()
            frames = feats.extract(y, 16000)
            t1 = time.perf_counter()
            bundle = FeatureBundle(text=None, acoustic=frames, visual=None, metadata={"dims": model.dims})
            ext = SimpleNamespace(acoustic=feats, config=SimpleNamespace(acoustic=feats.setting))
            cols = {"audio": model.columns(ext, "audio")}
            spans = [
                Segment(a, b, "") for a, b in analysis_windows(0.0, len(y) / 16000, model.analysis_window_s)
            ]
            inputs = [model.inputs(bundle, s, ext=object(), present=["audio"], columns=cols) for s in spans]
            model.forward(inputs)
            t2 = time.perf_counter()
            return {"extract_s": t1 - t0, "model_s": t2 - t1, "total_s": t2 - t0, "windows": len(spans)}

        runners[name] = run
    for run in runners.values():  # warm-up
        run()
    times: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(runners[name]())
    med = {
        n: {
            k: round(statistics.median(t[k] for t in times[n]), 3)
            for k in ("extract_s", "model_s", "total_s")
        }
        for n in names
    }
    out = {
        "audio_s": round(len(y) / 16000, 2),
        "rounds": args.rounds,
        "median": med,
        "windows": {n: int(times[n][0]["windows"]) for n in names},
        "ratio_total": round(med[names[0]]["total_s"] / med[names[-1]]["total_s"], 2),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
