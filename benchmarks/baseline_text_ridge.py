"""Simple text baseline for the model card: mean-pooled MiniLM embedding + ridge regression (numpy only).

Each transcript of a label CSV (MMSA / CMU-MOSI layout) is encoded with the bundled all-MiniLM-L6-v2
exactly as the DMD text path tokenises it (:class:`dmd_pipeline.extractors.text.TextEncoder`, 50 tokens),
the last hidden layer is averaged over the real tokens ([CLS]/[SEP] included, as sentence-transformers
pools), and a ridge regression with an intercept is solved in closed form on the train split. The ridge
strength ``alpha`` is chosen on the valid split (lowest MAE, the quantity DMD's model selection uses); the
test split is scored once with that alpha. Metrics are those of :mod:`dmd_pipeline.training.metrics`.

Usage::

    .venv/bin/python benchmarks/baseline_text_ridge.py --labels ../shared/data/mosi/label.csv [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ALPHAS = [float(a) for a in np.logspace(-3, 3, 25)]


def mean_pooled_embeddings(texts: list[str], max_len: int = 50) -> np.ndarray:
    """(N, 384) mean of the last hidden layer over each transcript's real tokens."""
    from dmd_pipeline.extractors.text import TextEncoder

    enc = TextEncoder()
    feats = enc.encode_batch([t.split() for t in texts], max_len=max_len)
    out = np.zeros((len(feats), enc.dim), dtype=np.float64)
    for i, f in enumerate(feats):
        mask = f.attention_mask.astype(bool)
        out[i] = f.features[mask].mean(axis=0)
    return out


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge with an unpenalised intercept: (weights, bias)."""
    mx, my = x.mean(axis=0), y.mean()
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, float(my - mx @ w)


def run(labels: Path, max_len: int = 50) -> dict:
    """Encode, choose alpha on valid, report valid and test metrics (and timings)."""
    from dmd_pipeline.data.text_only import read_label_csv
    from dmd_pipeline.training.metrics import regression_metrics

    rows = read_label_csv(labels)
    t0 = time.perf_counter()
    x = {k: mean_pooled_embeddings([r["text"] for r in v], max_len) for k, v in rows.items()}
    y = {k: np.array([r["label"] for r in v], dtype=np.float64) for k, v in rows.items()}
    t_encode = time.perf_counter() - t0
    scores = []
    for alpha in ALPHAS:
        w, b = fit_ridge(x["train"], y["train"], alpha)
        scores.append(float(np.mean(np.abs(x["valid"] @ w + b - y["valid"]))))
    best = ALPHAS[int(np.argmin(scores))]
    w, b = fit_ridge(x["train"], y["train"], best)
    metrics = {k: regression_metrics(x[k] @ w + b, y[k]) for k in ("valid", "test") if k in x}
    return {
        "baseline": "mean-pooled all-MiniLM-L6-v2 (bundled) + ridge regression, alpha chosen on valid MAE",
        "labels": Path(labels).name,
        "n": {k: len(v) for k, v in rows.items()},
        "alpha": best,
        "alpha_grid": [ALPHAS[0], ALPHAS[-1], len(ALPHAS)],
        "valid_mae_by_alpha": dict(zip([f"{a:.4g}" for a in ALPHAS], scores, strict=True)),
        "metrics": metrics,
        "encode_seconds": round(t_encode, 1),
    }


def main() -> None:
    """Command-line entry point: prints the result as JSON (and writes it with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, default=Path("../shared/data/mosi/label.csv"))
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the result to this file")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    result = run(args.labels, args.max_len)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
