"""HTML report of an analysis: one self-contained page per clip plus an index page for a batch.

Plots are PNG files drawn with matplotlib's Agg backend and stored in ``<stem>_files/`` beside the page;
every ``src``/``href`` is a relative path (no network resources). Transcript text is HTML-escaped.

A page leads with the result's headline, the fused answer with its reasons (how much each channel moved it,
the agreement, the derived valence/arousal), the agreement strip over time (one row per channel, the fused
row on top) and the valence/arousal timeline (:mod:`~dmd_pipeline.analysis.report_answer`), then a
per-model summary (one row per model run, with the notes on how each model was built and what it was fed as
zeros), the primary model's timeline (sentiment score bars for a regression model), an emotion-over-time plot per
classification model that has predictions (``emotion.png``, ``emotion_2.png``...: its class probabilities
stacked per window or segment), the face over time (``face.png``: the face model's class probabilities on
the result's ``face_timeline``, gaps where no face is visible), the segment table with every model's
prediction, key frames, the graph edges and the descriptive cues. A photo (a result of duration 0) has
nothing over time: no strip, no valence/arousal or score timeline, its key frame with the face box instead.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmd_pipeline.analysis.report_answer import CSS as ANSWER_CSS
from dmd_pipeline.analysis.report_answer import answer_html, strip_html
from dmd_pipeline.analysis.result import EDGE_NAMES, AnalysisResult, KeyFrame, ModelRun
from dmd_pipeline.media import iter_frames
from dmd_pipeline.utils import atomic_open, atomic_write_text

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:2em auto;max-width:1000px;
color:#222;padding:0 1em}
h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}.frames{display:flex;gap:1%;flex-wrap:nowrap}.frames img{flex:1 1 0;min-width:0;max-width:none}.pos{color:#1a7f37}.neg{color:#c0392b}
.muted{color:#777;font-size:.85em}.big{font-size:1.3em;font-weight:600}
"""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)


def _seg_value(seg: Any, result: AnalysisResult) -> float:
    p = seg.prediction
    if p.score is not None:
        return float(p.score)
    if p.probabilities:
        return float(max(p.probabilities.values()))
    return 0.0


def plot_timeline(result: AnalysisResult, path: Path) -> Path:
    """Segment scores over time as bars (regression) or winning-class probability bars (classification),
    with each segment's transcript text in a strip under the time axis."""
    import textwrap

    plt = _plt()
    regression = result.model.task == "regression"
    fig, (ax, strip) = plt.subplots(
        2, 1, figsize=(10, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.3], "hspace": 0.08}
    )
    n = len(result.segments)
    for k, seg in enumerate(result.segments):
        v = _seg_value(seg, result)
        color = ("#1a7f37" if v >= 0 else "#c0392b") if regression else "#2c6fbb"
        width = max(seg.duration, 1e-3)
        ax.bar(seg.start, v, width=width, align="edge", color=color, alpha=0.75, edgecolor="white")
        strip.axvspan(seg.start, seg.start + width, color="#eef2f7" if k % 2 == 0 else "#dde5ef")
        label = seg.text
        if not regression and seg.prediction.predicted_class:
            label = f"[{seg.prediction.predicted_class}] {label}"
        chars = max(8, int(110 * width / max(result.duration, 1e-3)))
        lines = textwrap.wrap(label, width=chars)[:4]
        if len(textwrap.wrap(label, width=chars)) > 4:
            lines[-1] = lines[-1][: max(1, chars - 3)] + "..."
        strip.text(
            seg.start + width / 2,
            0.5 if n < 12 or k % 2 == 0 else 0.2,
            "\n".join(lines),
            ha="center",
            va="center",
            fontsize=7,
            clip_on=True,
        )
    if regression:
        ax.set_ylim(-3.2, 3.2)
        ax.axhline(0, color="#444", lw=0.8)
        if result.overall.score is not None:
            ax.axhline(result.overall.score, color="#2c6fbb", ls="--", lw=1, label="overall")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_ylabel("sentiment score")
    else:
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("probability of\npredicted class")
    ax.grid(axis="y", alpha=0.3)
    strip.set_yticks([])
    strip.set_ylim(0, 1)
    strip.set_xlim(0, max(result.duration, 1e-3))
    strip.set_xlabel("time (s)")
    _save(fig, path)
    return path


def plot_valence_arousal(result: AnalysisResult, path: Path) -> Path | None:
    """The derived valence and arousal of each segment's fused answer, as steps over time; None when no
    segment has a valence."""
    spans = [(s.start, s.end, s.fused or {}) for s in result.segments]
    if not any(f.get("valence") is not None for _, _, f in spans):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 2.6))
    for key, colour in (("valence", "#1a7f37"), ("arousal", "#d35400")):
        first = True
        for a, b, f in spans:
            if f.get(key) is not None:
                ax.hlines(f[key], a, b, colour, linewidth=3, label=key if first else None)
                first = False
    ax.axhline(0, color="#444", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlim(0, max(float(result.duration), 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("derived")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)
    return path


def emotion_spans(result: AnalysisResult, run: ModelRun) -> list[tuple[float, float, dict[str, float]]]:
    """(start, end, class probabilities) of a classification model over time: its windows when it has
    them, else its segment predictions; spans without a prediction are left out."""
    if run.windows:
        spans = [(w.start, w.end, w.prediction.probabilities) for w in run.windows]
    else:
        spans = [
            (s.start, s.end, (s.predictions.get(run.name) or s.prediction).probabilities)
            for s in result.segments
        ]
    return [(a, b, p) for a, b, p in spans if p]


def plot_emotions(result: AnalysisResult, run: ModelRun, path: Path) -> Path | None:
    """Emotion over time: the class probabilities of a classification model stacked per window/segment
    (each span a stacked bar as wide as the span); None when the model has no prediction."""
    spans = emotion_spans(result, run)
    if not spans:
        return None
    plt = _plt()
    names = list(run.class_names or spans[0][2].keys())
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(10, 3.0))
    for a, b, probs in spans:
        bottom = 0.0
        for k, n in enumerate(names):
            v = float(probs.get(n, 0.0))
            ax.bar(a, v, width=max(b - a, 1e-3), bottom=bottom, align="edge", color=cmap(k % cmap.N), lw=0)
            bottom += v
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k % cmap.N)) for k in range(len(names))]
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(result.duration, 1e-3))
    ax.set_ylabel("class probability")
    ax.set_xlabel("time (s)")
    where = "windows" if run.windows else "segments"
    ax.set_title(f"{run.name}: emotion over time (per {where[:-1]})", fontsize=9)
    _save(fig, path)
    return path


def plot_face(result: AnalysisResult, path: Path) -> Path | None:
    """Face over time: one line per class of the face model's probabilities on the ``face_timeline`` grid
    (gaps where no face is visible); None without a timeline or without any visible face."""
    tl = result.face_timeline
    if tl is None or not tl.times or not any(v is not None for vs in tl.probabilities.values() for v in vs):
        return None
    plt = _plt()
    names = list(tl.probabilities)
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(10, 3.0))
    for k, n in enumerate(names):
        ys = [math.nan if v is None else float(v) for v in tl.probabilities[n]]
        ax.plot(tl.times, ys, color=cmap(k % cmap.N), lw=1.6, label=n, marker="." if len(ys) < 40 else None)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(result.duration, 1e-3))
    ax.set_ylabel("class probability")
    ax.set_xlabel("time (s)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{tl.model}: facial expression over time ({tl.rate_hz:g} Hz)", fontsize=9)
    _save(fig, path)
    return path


#: Fixed y ranges per cue (physiological / score ranges), widened only when the data leave them, so a
#: change of 0.02 degrees is not drawn as a cliff.
CUE_RANGES: dict[str, tuple[float, float]] = {
    "smile": (0.0, 1.0),
    "brow_raise": (0.0, 1.0),
    "brow_down": (0.0, 1.0),
    "head_yaw": (-45.0, 45.0),
    "head_pitch": (-45.0, 45.0),
    "head_roll": (-45.0, 45.0),
    "f0": (50.0, 400.0),
    "loudness": (-80.0, 0.0),
}


def cue_range(name: str, values: Sequence[float | None]) -> tuple[float, float] | None:
    """The y range of a cue panel: its fixed range, widened to the observed values (None: autoscale)."""
    lo_hi = CUE_RANGES.get(name)
    if lo_hi is None:
        return None
    vals = [v for v in values if v is not None and math.isfinite(v)]
    lo, hi = lo_hi
    if vals:
        lo, hi = min(lo, min(vals)), max(hi, max(vals))
    return lo, hi


def plot_cues(result: AnalysisResult, path: Path) -> Path | None:
    """One small panel per cue with at least one observed value, on fixed, meaningful axes
    (:data:`CUE_RANGES`); None when there is nothing to draw."""
    series = {k: s for k, s in result.cues.series.items() if any(v is not None for v in s.values)}
    if not series or not result.cues.times:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        len(series), 1, figsize=(10, 1.3 * len(series) + 0.5), sharex=True, squeeze=False
    )
    t = result.cues.times
    for ax, (name, s) in zip(axes[:, 0], series.items(), strict=True):
        ax.plot(t, [math.nan if v is None else v for v in s.values], lw=1.3, marker=".", ms=3)
        ax.set_ylabel(f"{name}\n({s.unit})", fontsize=7, rotation=0, ha="right", va="center")
        yr = cue_range(name, s.values)
        if yr is not None:
            ax.set_ylim(*yr)
        ax.grid(alpha=0.3)
        for seg in result.segments:
            ax.axvline(seg.start, color="#bbb", lw=0.6)
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 0].set_xlim(0, max(result.duration, 1e-3))
    _save(fig, path)
    return path


def mean_edges(result: AnalysisResult) -> dict[str, dict[str, float]] | None:
    """Duration-weighted mean edge weights over segments, {"homo": {...}, "hetero": {...}}."""
    segs = [s for s in result.segments if s.edges is not None]
    if not segs:
        return None
    total = sum(max(s.duration, 1e-6) for s in segs)
    out: dict[str, dict[str, float]] = {}
    for kind in ("homo", "hetero"):
        out[kind] = {
            e: sum(getattr(s.edges, kind)[e] * max(s.duration, 1e-6) for s in segs) / total
            for e in EDGE_NAMES
        }
    return out


_LETTER = {"text": "L", "audio": "A", "vision": "V"}


def fed_edges(result: AnalysisResult) -> list[str]:
    """The edges between modalities the primary model was actually fed (not zero-filled)."""
    used = {_LETTER[m] for m in result.modalities.used if m in _LETTER}
    return [e for e in EDGE_NAMES if set(e.split("->")) <= used]


def plot_edges(result: AnalysisResult, path: Path) -> Path | None:
    """Grouped bars of the mean HomoGD / HeteroGD edge weights, only between modalities that were fed
    (None when fewer than two were: the edges of zero-filled inputs mean nothing)."""
    edges = mean_edges(result)
    names = fed_edges(result)
    if edges is None or not names:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.6))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [edges["homo"][e] for e in names], width=0.4, label="HomoGD")
    ax.bar([i + 0.2 for i in x], [edges["hetero"][e] for e in names], width=0.4, label="HeteroGD")
    ax.set_xticks(list(x), [e.replace("->", "→") for e in names])
    ax.set_ylim(0, 1)
    ax.set_ylabel("edge weight")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return path


def save_key_frames(media_path: str | Path, faces: Sequence[KeyFrame], folder: Path) -> list[Path]:
    """Grab the frames at the given times (media.iter_frames) and save them with the face box drawn."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    paths: list[Path] = []
    for i, ff in enumerate(faces):
        frame = None
        try:
            for _t, img in iter_frames(
                media_path, fps=10.0, start=max(0.0, ff.time), end=ff.time + 0.5, max_side=480
            ):
                frame = img
                break
        except Exception:  # e.g. a time past the last decodable frame: skip this key frame
            frame = None
        if frame is None:
            continue
        h, w = frame.shape[:2]
        fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
        ax.imshow(frame)
        if ff.box is not None:
            x0, y0, x1, y1 = ff.box
            ax.add_patch(
                # a white box inside a black one: visible on any background (a green screen included)
                Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, ec="black", lw=4)
            )
            ax.add_patch(
                Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, ec="white", lw=1.5)
            )
        ax.set_title(f"t = {ff.time:.2f} s", fontsize=9)
        ax.axis("off")
        p = folder / f"frame_{i + 1}.png"
        _save(fig, p)
        paths.append(p)
    return paths


def _fmt(x: float | None, nd: int = 2) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _pred_html(p: Any) -> str:
    if p.score is not None:
        cls = "pos" if p.score >= 0 else "neg"
        return f'<span class="{cls}">{p.score:+.2f}</span> ({html.escape(p.label7 or "")}, {html.escape(p.label2 or "")})'
    if p.probabilities:
        return html.escape(f"{p.predicted_class} ({max(p.probabilities.values()):.2f})")
    return "–"


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def write_report(
    result: AnalysisResult,
    out_dir: str | Path,
    stem: str,
    media_path: str | Path | None = None,
) -> Path:
    """Write ``<out_dir>/<stem>.html`` and its PNGs in ``<out_dir>/<stem>_files/``; returns the page path.

    Key frames (``result.key_frames``, with their face boxes) are grabbed from ``media_path`` (default:
    ``result.file``); when the media is unreadable the page says so and has no key-frame section.
    """
    out_dir = Path(out_dir)
    assets = out_dir / f"{stem}_files"
    assets.mkdir(parents=True, exist_ok=True)
    e = html.escape
    still = result.duration <= 0  # a photo: one moment, nothing over time
    timeline = None if still else plot_timeline(result, assets / "timeline.png")
    va_png = None if still else plot_valence_arousal(result, assets / "valence_arousal.png")
    emotion_pngs: list[tuple[ModelRun, Path]] = []
    face_png = plot_face(result, assets / "face.png")
    for run in result.models:
        if run.task == "classification" and run.has_prediction and run.role != "expression":
            name = "emotion.png" if not emotion_pngs else f"emotion_{len(emotion_pngs) + 1}.png"
            png = plot_emotions(result, run, assets / name)
            if png is not None:
                emotion_pngs.append((run, png))
    cues = plot_cues(result, assets / "cues.png")
    edges_png = plot_edges(result, assets / "edges.png")
    frames: list[Path] = []
    media_path = media_path if media_path is not None else result.file
    if result.key_frames and result.media.has_video and Path(media_path).is_file():
        try:
            frames = save_key_frames(media_path, result.key_frames, assets)
        except Exception as exc:  # a report must not fail the analysis; say what happened
            result.warnings.append(f"report: key frames not saved ({exc})")

    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(Path(result.file).name)} — dmd analyze</title>",
        f"<style>{_CSS}{ANSWER_CSS}</style></head><body>",
        f"<h1>{e(Path(result.file).name)}</h1>",
        f'<p class="big">{e(result.headline)}</p>',
        f'<p class="muted">{e(result.file)} · {result.duration:.2f} s · '
        f"{'models' if len(result.models) > 1 else 'model'} {e(', '.join(r.name for r in result.models))} "
        f"· schema {e(result.schema_version)}</p>",
    ]
    if result.fused:
        parts.append("<h2>The answer</h2>")
        parts.append(answer_html(result))
        if not still:
            parts.append("<h2>Agreement over time</h2>")
            parts.append(strip_html(result))
    if va_png is not None:
        parts.append("<h2>Valence and arousal over time (derived)</h2>")
        parts.append(f'<img src="{e(_rel(va_png, out_dir))}" alt="derived valence and arousal over time">')
        parts.append(f'<p class="muted">{e(str((result.fused or {}).get("derived_note") or ""))}</p>')
    parts += [
        "<h2>Models</h2>",
        "<table><tr><th>model</th><th>role</th><th>uses</th><th>used here</th><th>overall</th>"
        "<th>note</th></tr>",
    ]
    for run in result.models:
        parts.append(
            f"<tr><td>{e(run.name)}</td><td>{e(run.role)}</td><td>{e('+'.join(run.info.modalities))}</td>"
            f"<td>{e('+'.join(run.modalities_used) or 'none')}</td><td>{_pred_html(run.overall)}</td>"
            f'<td class="muted">{e(run.note)}</td></tr>'
        )
    parts.append("</table>")
    mods = result.modalities
    parts.append(
        "<p>Modalities present: "
        + e(", ".join(mods.present) or "none")
        + " · used by the model: "
        + e(", ".join(mods.used) or "none")
        + (" · fed as zeros: " + e(", ".join(mods.zero_filled)) if mods.zero_filled else "")
        + "</p>"
    )
    if mods.note:
        parts.append(f'<p class="muted">{e(mods.note)}</p>')
    for run in result.models:
        if run.overall.probabilities:
            title = "Class probabilities" + (f" ({e(run.name)})" if len(result.models) > 1 else "")
            parts.append(f"<h2>{title}</h2><table><tr><th>class</th><th>p</th></tr>")
            for k, v in run.overall.probabilities.items():
                parts.append(f'<tr><td>{e(k)}</td><td class="num">{v:.3f}</td></tr>')
            parts.append("</table>")
    if timeline is not None:
        parts.append("<h2>Timeline</h2>")
        if len(result.models) > 1:
            parts.append(f'<p class="muted">{e(result.models[0].name)} ({e(result.models[0].role)})</p>')
        parts.append(f'<img src="{e(_rel(timeline, out_dir))}" alt="segment scores over time">')
    if face_png is not None and result.face is not None:
        parts.append(f"<h2>Face over time ({e(result.face.model)})</h2>")
        parts.append(
            f'<p class="muted">Face visible in {100 * result.face.visible_fraction:.0f} % of the frame time '
            f"({result.face.n_frames} frames); gaps: no face.</p>"
        )
        parts.append(f'<img src="{e(_rel(face_png, out_dir))}" alt="facial expression over time">')
    elif result.face is not None and result.face.note and result.media.has_video:
        parts.append(f'<h2>Face over time</h2><p class="muted">{e(result.face.note)}</p>')
    for run, png in emotion_pngs:
        parts.append(f"<h2>Emotion over time ({e(run.name)})</h2>")
        parts.append(f'<img src="{e(_rel(png, out_dir))}" alt="emotion over time: {e(run.name)}">')
    heads = "".join(
        f"<th>{e(r.name)}</th>" if len(result.models) > 1 else "<th>prediction</th>" for r in result.models
    )
    parts.append(f"<table><tr><th>#</th><th>start</th><th>end</th>{heads}<th>text</th></tr>")
    for s in result.segments:
        cells = "".join(
            f"<td>{_pred_html(s.predictions.get(r.name, s.prediction))}</td>" for r in result.models
        )
        parts.append(
            f'<tr><td class="num">{s.index}</td><td class="num">{s.start:.2f}</td>'
            f'<td class="num">{s.end:.2f}</td>{cells}<td>{e(s.text)}</td></tr>'
        )
    parts.append("</table>")
    if frames:
        parts.append('<h2>Key frames</h2><div class="frames">')
        parts.extend(
            f'<img src="{e(_rel(p, out_dir))}" alt="key frame {i + 1}">' for i, p in enumerate(frames)
        )
        parts.append("</div>")
    if edges_png is not None:
        parts.append("<h2>Distillation graph edges</h2>")
        parts.append(f'<img src="{e(_rel(edges_png, out_dir))}" alt="graph edge weights">')
        me = mean_edges(result) or {}
        parts.append("<table><tr><th>edge (teacher→student)</th><th>HomoGD</th><th>HeteroGD</th></tr>")
        for name in fed_edges(result):
            parts.append(
                f'<tr><td>{e(name)}</td><td class="num">{me["homo"][name]:.3f}</td>'
                f'<td class="num">{me["hetero"][name]:.3f}</td></tr>'
            )
        parts.append('</table><p class="muted">Duration-weighted mean over segments.</p>')
    if cues is not None:
        parts.append("<h2>Descriptive cues</h2>")
        parts.append(f'<img src="{e(_rel(cues, out_dir))}" alt="cues over time">')
        parts.append("<table><tr><th>cue</th><th>unit</th><th>meaning</th></tr>")
        for name, s in result.cues.series.items():
            parts.append(f"<tr><td>{e(name)}</td><td>{e(s.unit)}</td><td>{e(s.description)}</td></tr>")
        parts.append("</table>")
    if result.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in result.warnings) + "</ul>")
    t = result.timings
    parts.append(
        '<p class="muted">Timings (s): ' + e(", ".join(f"{k} {v:.2f}" for k, v in t.items())) + "</p>"
    )
    parts.append(f'<p class="muted">dmd-pipeline {e(result.tool_version)} · {e(result.created_at)}</p>')
    parts.append("</body></html>")
    page = out_dir / f"{stem}.html"
    atomic_write_text(page, "\n".join(parts) + "\n")
    return page


@dataclass
class IndexEntry:
    """One row of the batch index page."""

    file: str
    page: Path | None
    score: float | None
    label: str | None
    status: str
    headline: str = ""


def write_index(out_dir: str | Path, entries: Sequence[IndexEntry]) -> Path:
    """Write ``<out_dir>/index.html`` linking every clip page (relative links)."""
    out_dir = Path(out_dir)
    e = html.escape
    rows = []
    for it in entries:
        name = e(Path(it.file).name)
        link = f'<a href="{e(_rel(it.page, out_dir))}">{name}</a>' if it.page is not None else name
        rows.append(
            f'<tr><td>{link}</td><td>{e(it.headline or "–")}</td><td class="num">{_fmt(it.score)}</td>'
            f"<td>{e(it.label or '–')}</td><td>{e(it.status)}</td></tr>"
        )
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>dmd analyze — index</title>',
            f"<style>{_CSS}</style></head><body><h1>dmd analyze</h1>",
            "<table><tr><th>file</th><th>headline</th><th>score</th><th>label</th><th>status</th></tr>",
            *rows,
            "</table></body></html>",
        ]
    )
    path = out_dir / "index.html"
    atomic_write_text(path, page + "\n")
    return path
