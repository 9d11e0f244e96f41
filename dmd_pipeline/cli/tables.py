"""Rich tables of metrics, shared by ``dmd train`` (per-epoch and final metrics) and ``dmd evaluate``."""

from __future__ import annotations

import math
from typing import Any


def print_metrics(tables: dict[str, dict[str, float]], console: Any = None) -> None:
    """One rich table: a row per metric, a column per named result (e.g. valid / test)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="DMD metrics", title_justify="left")
    table.add_column("metric")
    for name in tables:
        table.add_column(name, justify="right")
    keys: list[str] = []
    for values in tables.values():
        keys += [k for k in values if k not in keys]
    for key in keys:
        cells = []
        for values in tables.values():
            v = values.get(key)
            cells.append(metric_cell(key, v))
        table.add_row(key, *cells)
    console.print(table)


def is_percentage_metric(key: str) -> bool:
    """Accuracies and F1 scores are shown as percentages (as README/MODEL_CARD write them)."""
    k = key.lower()
    return "acc" in k or "f1" in k or k in ("uar", "recall", "precision")


def metric_cell(key: str, v: Any) -> str:
    """A metric for a table: ``85.3 %`` for accuracies/F1s, 4 decimals for MAE, Corr and losses."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return _pct(v) if is_percentage_metric(key) else f"{float(v):.4f}"


def _pct(v: Any) -> str:
    return (
        "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100.0 * float(v):.1f} %"
    )


def print_classification(info: dict[str, Any], console: Any = None) -> None:
    """Rich tables of a classification report: the summary, per-class figures, the confusion matrix."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    report = info["report"]
    names = list(info.get("class_names") or [f"class_{i}" for i in range(len(report["confusion_matrix"]))])
    names = [escape(str(n)) for n in names]
    failed = f", {info['n_failed']} failed" if info.get("n_failed") else ""
    title = escape(f"{info.get('model_name') or info['model']} on {info['split']} (n={info['n']}{failed})")
    summary = Table(title=title, title_justify="left")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for key, label in (
        ("accuracy", "accuracy"),
        ("uar", "UAR (unweighted average recall)"),
        ("macro_f1", "macro-F1"),
        ("weighted_f1", "weighted-F1"),
    ):
        summary.add_row(label, _pct(report.get(key)))
    console.print(summary)

    per = report["per_class"]
    classes = Table(title="per class", title_justify="left")
    for col in ("class", "recall", "precision", "F1", "support"):
        classes.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(names):
        classes.add_row(
            name,
            _pct(per["recall"][i]),
            _pct(per["precision"][i]),
            _pct(per["f1"][i]),
            str(per["support"][i]),
        )
    console.print(classes)

    cm = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    cm.add_column("true \\ predicted")
    for name in names:
        cm.add_column(name, justify="right")
    for name, row in zip(names, report["confusion_matrix"], strict=True):
        cm.add_row(name, *(str(int(c)) for c in row))
    console.print(cm)
    if info.get("calibration"):
        print_calibration(info["calibration"], console)


def print_calibration(fig: dict[str, Any], console: Any = None) -> None:
    """A rich table of a classifier's calibration: ECE, NLL and mean confidence of the raw softmax and
    after its temperature (:func:`dmd_pipeline.calibration.calibration_figures`)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = fig.get("temperature")
    table = Table(title=f"calibration ({fig['n_bins']}-bin ECE, n={fig['n']})", title_justify="left")
    table.add_column("metric")
    table.add_column("raw softmax", justify="right")
    table.add_column("calibrated" if t is None else f"calibrated (T={t:.3g})", justify="right")
    table.add_row("ECE", _pct(fig["ece_before"]), _pct(fig["ece_after"]))
    table.add_row("NLL", f"{fig['nll_before']:.4f}", metric_cell("nll", fig["nll_after"]))
    table.add_row(
        "mean top probability", _pct(fig["mean_confidence_before"]), _pct(fig["mean_confidence_after"])
    )
    table.add_row("accuracy", _pct(fig["accuracy"]), _pct(fig["accuracy"]))
    console.print(table)
    if t is None:
        console.print("the model has no temperature (uncalibrated): its probabilities are the raw softmax")
