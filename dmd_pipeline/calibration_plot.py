"""The reliability diagram of a classifier's calibration (``dmd evaluate --report FILE.png``): per bin of
the top-class probability, how often the top class was right against how confident the model was, for the
raw softmax and after the model's temperature, over the diagonal of perfect calibration. Drawn with
matplotlib's Agg backend; the figures come from :func:`dmd_pipeline.calibration.calibration_figures`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmd_pipeline.utils import atomic_open


def save_reliability_diagram(figures: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Write the reliability diagram of ``figures`` to ``path`` (PNG, written atomically); returns the path.

    Bars: accuracy per bin (raw softmax, and after calibration when the model has a temperature), the
    bin's mean confidence as a marker, the number of examples per bin below; the ECE of each in the legend.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    series = [("raw softmax", figures["bins_before"], figures["ece_before"], "#c0392b")]
    if figures.get("bins_after") is not None:
        t = figures.get("temperature")
        series.append((f"calibrated (T = {t:.3g})", figures["bins_after"], figures["ece_after"], "#1f77b4"))
    n_bins = len(series[0][1])
    width = 1.0 / n_bins
    fig, (ax, axn) = plt.subplots(
        2, 1, figsize=(6.4, 7.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="#888", linestyle="--", linewidth=1, label="perfect calibration")
    bar_w = width / len(series)
    for k, (name, bins, ece, color) in enumerate(series):
        lefts = [b["lo"] + k * bar_w for b in bins]
        acc = [b["accuracy"] or 0.0 for b in bins]
        ax.bar(lefts, acc, width=bar_w, align="edge", color=color, alpha=0.75, edgecolor="white",
               label=f"{name}: ECE {100 * ece:.1f} %")  # fmt: skip
        pts = [(b["confidence"], b["accuracy"]) for b in bins if b["n"]]
        ax.scatter([c for c, _ in pts], [a for _, a in pts], color=color, s=14, zorder=3)
        axn.bar(lefts, [b["n"] for b in bins], width=bar_w, align="edge", color=color, alpha=0.75)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in the bin (dots: at its mean confidence)")
    ax.set_title(title or f"reliability diagram ({n_bins} bins, n = {figures.get('n')})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    axn.set_xlabel("confidence (top-class probability)")
    axn.set_ylabel("examples")
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path
