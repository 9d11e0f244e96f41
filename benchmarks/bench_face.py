"""Per-face CPU cost of the face-expression model: the crop and the network, batch 1 and batched.

    python benchmarks/bench_face.py                       # the bundled model
    python benchmarks/bench_face.py --model path/to/folder --threads 1 --repeats 15

Times are medians over ``--repeats`` runs after a warm-up, in milliseconds per face (wall, and CPU time of
this process, which a shared machine inflates less), for
``predict_crops`` (with the mirrored pass, as the model is used) at each batch size, and for
``aligned_crop`` on a 640x480 frame. The 1-minute load average before and after is printed, since the
machine may be shared. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU (this process) milliseconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def main(argv: list[str] | None = None) -> int:
    from dmd_pipeline.face.crop import aligned_crop
    from dmd_pipeline.face.model import FaceExpressionModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="face model folder or bundled name (default: bundled)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batches", default="1,8,32,128")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = FaceExpressionModel.load(args.model)
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]
    out: dict = {"model": str(model.path), "threads": args.threads, "ms_per_face": {}, "cpu_ms_per_face": {}}
    for b in (int(x) for x in args.batches.split(",")):
        crops = rng.integers(0, 256, (b, model.input_size, model.input_size), dtype=np.uint8)
        ms, cpu = _median_ms(lambda c=crops: model.predict_crops(c), args.repeats)
        out["ms_per_face"][f"batch_{b}"] = round(ms / b, 3)
        out["cpu_ms_per_face"][f"batch_{b}"] = round(cpu / b, 3)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    lm = np.full((478, 3), 0.5)
    lm[[33, 133], :2] = [[0.42, 0.45], [0.47, 0.45]]
    lm[[362, 263], :2] = [[0.53, 0.45], [0.58, 0.45]]
    out["crop_ms_640x480"] = round(
        _median_ms(lambda: aligned_crop(frame, lm, model.template), args.repeats)[0], 3
    )
    out["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
