"""Outputs people use directly, from a result document: CSV/TSV timelines, SRT/VTT subtitles, DataFrames.

Everything works on the JSON document (``AnalysisResult.to_dict()``), so a stored result can be exported
again without re-analysing. Numbers are rounded (times to 3 decimals, scores and probabilities to 4), and
every timeline row names its ``file``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from dmd_pipeline.analysis.predictions import (
    FACE_COLUMNS,
    FUSED_COLUMNS,
    face_cells,
    fused_cells,
    is_face_run,
    prediction_cells,
)

#: ``--format`` values; ``all`` is every one of them.
FORMATS = ("json", "csv", "tsv", "srt", "vtt")
TIME_DECIMALS = 3
VALUE_DECIMALS = 4


def parse_formats(text: str | list[str] | None) -> list[str]:
    """``"json,csv"`` / ``["srt", "vtt"]`` / ``"all"`` -> the format list (json always first).

    Raises ValueError naming an unknown format and the valid choices.
    """
    items: list[str] = []
    for part in [text] if isinstance(text, str) or text is None else list(text):
        items.extend(x.strip().lower() for x in str(part or "json").split(",") if x.strip())
    out = ["json"]
    for x in items:
        if x == "all":
            out.extend(f for f in FORMATS if f not in out)
        elif x not in FORMATS:
            raise ValueError(f"unknown format {x!r}: choose from {', '.join([*FORMATS, 'all'])}")
        elif x not in out:
            out.append(x)
    return out


def _r(x: Any, n: int = VALUE_DECIMALS) -> Any:
    return round(float(x), n) if isinstance(x, (int, float)) and not isinstance(x, bool) else x


def _cells(name: str, task: str, p: dict[str, Any] | None) -> dict[str, Any]:
    """Per-model cells of one prediction: ``<name>:score`` or ``<name>:label``/``<name>:p`` (rounded)."""
    return prediction_cells(name, task, p, _r)


def _has_face(doc: dict[str, Any]) -> bool:
    """Whether a face model ran (schema 1.3 ``face``): then the timeline has the face columns."""
    return doc.get("face") is not None


def segment_columns(doc: dict[str, Any]) -> list[str]:
    """The columns of the segment timeline (fixed ones, the fused answer, then per DMD model, then the face
    channel's ``face:label``, ``face:p``, ``face:visible`` when a face model ran)."""
    cols = ["file", "index", "start", "end", "score", "label7", "label2", "predicted_class", "text"]
    cols.extend(FUSED_COLUMNS)
    for m in doc.get("models") or []:
        if not is_face_run(m):
            cols.extend(_cells(m["name"], m["task"], None))
    if _has_face(doc):
        cols.extend(FACE_COLUMNS)
    return cols


def segment_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per segment: file, index, start, end (3 decimals), primary prediction, text, per model."""
    rows = []
    for s in doc["segments"]:
        p = s.get("prediction") or {}
        row: dict[str, Any] = {
            "file": doc["file"],
            "index": s["index"],
            "start": _r(s["start"], TIME_DECIMALS),
            "end": _r(s["end"], TIME_DECIMALS),
            "score": "" if p.get("score") is None else _r(p["score"]),
            "label7": p.get("label7") or "",
            "label2": p.get("label2") or "",
            "predicted_class": p.get("predicted_class") or "",
            "text": s["text"],
            **fused_cells(s.get("fused"), _r),
        }
        for m in doc.get("models") or []:
            if not is_face_run(m):
                row.update(_cells(m["name"], m["task"], (s.get("predictions") or {}).get(m["name"])))
        if _has_face(doc):
            row.update(face_cells(s.get("face"), _r))
        rows.append(row)
    return rows


def _table(doc: dict[str, Any], delimiter: str) -> str:
    buf = io.StringIO()
    cols = segment_columns(doc)
    w = csv.DictWriter(buf, fieldnames=cols, delimiter=delimiter, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in segment_rows(doc):
        if delimiter == "\t":  # a TSV cell never holds a tab or a newline
            row = {k: (" ".join(v.split()) if isinstance(v, str) else v) for k, v in row.items()}
        w.writerow(row)
    return buf.getvalue()


def segments_csv(doc: dict[str, Any]) -> str:
    """The segment timeline as CSV (with a ``file`` column, rounded numbers)."""
    return _table(doc, ",")


def segments_tsv(doc: dict[str, Any]) -> str:
    """The segment timeline as TSV (tabs and newlines in the text become spaces)."""
    return _table(doc, "\t")


def prediction_label(task: str, p: dict[str, Any] | None) -> str | None:
    """``neutral -0.12`` (sentiment) or ``angry 0.71`` (emotion); None when there is no prediction."""
    p = p or {}
    if task == "regression":
        return None if p.get("score") is None else f"{p.get('label7')} {p['score']:+.2f}"
    probs = p.get("probabilities") or {}
    if not probs:
        return None
    best = p.get("predicted_class") or max(probs, key=probs.__getitem__)
    return f"{best} {probs[best]:.2f}"


def fused_label(fused: dict[str, Any] | None) -> str | None:
    """``happy 0.74`` or ``happy 0.41 uncertain (conflict)``; None without a fused label."""
    if not fused or not fused.get("label"):
        return None
    text = f"{fused['label']} {fused['probability']:.2f}"
    return text + f" uncertain ({fused['uncertain_reason']})" if fused.get("uncertain") else text


def face_caption(face: dict[str, Any] | None) -> str | None:
    """``face: happy 0.81 (visible 90 %)``, ``face: n/a (no face)``; None without a face model or video."""
    if not face or not face.get("n_frames"):
        return None
    if face.get("probability") is None:
        return f"face: {face.get('note') or 'n/a (no face)'}"
    return f"face: {face['label']} {face['probability']:.2f} (visible {100 * face['visible_fraction']:.0f} %)"


def segment_caption(doc: dict[str, Any], seg: dict[str, Any]) -> str:
    """A subtitle's second line: the fused answer, the face channel, then each DMD model's segment
    prediction, e.g. ``[fused: sad 0.69 · face: sad 0.52 (visible 100 %) · mosi-text-minilm: negative -1.65 ·
    ravdess-voice-emotion: sad 0.61]``."""
    fused = fused_label(seg.get("fused"))
    parts = [f"fused: {fused}"] if fused else []
    face = face_caption(seg.get("face"))
    if face is not None:
        parts.append(face)
    for m in doc.get("models") or []:
        if is_face_run(m):
            continue
        label = prediction_label(m["task"], (seg.get("predictions") or {}).get(m["name"]))
        if label is not None:
            parts.append(f"{m['name']}: {label}")
    return "[" + " · ".join(parts) + "]" if parts else ""


def _stamp(t: float, sep: str) -> str:
    ms = max(0, round(float(t) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(doc: dict[str, Any]) -> list[tuple[float, float, str]]:
    out = []
    for s in doc["segments"]:
        lines = [x for x in (" ".join(str(s["text"]).split()), segment_caption(doc, s)) if x]
        if lines:
            out.append((float(s["start"]), float(s["end"]), "\n".join(lines)))
    return out


def srt(doc: dict[str, Any]) -> str:
    """SubRip subtitles: one cue per segment, its text then the models' predictions."""
    blocks = [
        f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{text}\n"
        for i, (a, b, text) in enumerate(_cues(doc), 1)
    ]
    return "\n".join(blocks)


def vtt(doc: dict[str, Any]) -> str:
    """WebVTT subtitles (same cues as :func:`srt`)."""
    blocks = [f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{text}\n" for a, b, text in _cues(doc)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(doc: dict[str, Any], fmt: str) -> str:
    """The text of one non-JSON format."""
    return {"csv": segments_csv, "tsv": segments_tsv, "srt": srt, "vtt": vtt}[fmt](doc)


def output_files(doc: dict[str, Any], name: str, formats: list[str]) -> dict[str, str]:
    """``{file name: text}`` of the non-JSON formats asked for."""
    return {f"{name}.{fmt}": render(doc, fmt) for fmt in formats if fmt != "json"}


# ---- pandas ---------------------------------------------------------------------------------------
def to_pandas(doc: dict[str, Any], kind: str = "segments") -> Any:
    """A pandas DataFrame of the ``segments`` (default), ``words`` or ``cues`` of a result.

    Needs the optional ``pandas`` extra (``pip install 'dmd-pipeline[pandas]'``).
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("to_pandas needs pandas: pip install 'dmd-pipeline[pandas]'") from exc
    if kind == "segments":
        return pd.DataFrame(segment_rows(doc), columns=segment_columns(doc)).replace({"": None})
    if kind == "words":
        rows = [
            {"file": doc["file"], "segment": s["index"], **w}
            for s in doc["segments"]
            for w in s.get("words", [])
        ]
        return pd.DataFrame(rows, columns=["file", "segment", "text", "start", "end", "source"])
    if kind == "cues":
        cues = doc["cues"]
        data: dict[str, Any] = {"time": cues["times"]}
        for name, series in cues["series"].items():
            data[name] = [float("nan") if v is None else v for v in series["values"]]
        return pd.DataFrame(data)
    raise ValueError(f"unknown kind {kind!r}: choose segments, words or cues")


def plot(doc: dict[str, Any], path: str | Path | None = None) -> Any:
    """A matplotlib figure: each model's prediction per segment over time (and save it to ``path``)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    runs = doc.get("models") or []
    fig, axes = plt.subplots(max(1, len(runs)), 1, figsize=(9, 2.4 * max(1, len(runs))), squeeze=False)
    for ax, m in zip(axes[:, 0], runs, strict=False):
        for s in doc["segments"]:
            p = (s.get("predictions") or {}).get(m["name"]) or {}
            if m["task"] == "regression":
                y = p.get("score")
            else:
                probs = p.get("probabilities") or {}
                y = max(probs.values()) if probs else None
            if y is not None:
                ax.hlines(y, s["start"], s["end"], linewidth=3)
        if m["task"] == "regression":
            ax.set_ylim(-3, 3)
            ax.set_ylabel("sentiment")
        else:
            ax.set_ylim(0, 1)
            ax.set_ylabel("top-class p")
        ax.set_title(m["name"], fontsize=9)
        ax.set_xlim(0, max(float(doc.get("duration") or 0.0), 1e-3))
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
