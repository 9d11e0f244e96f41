"""The opening of the HTML report: the fused answer a person reads first, its reasons, an agreement strip over
time and the derived valence/arousal timeline.

* **The answer** (:func:`answer_html`): the fused label and probability, ``uncertain`` with its reason and
  what each channel said, how much each channel moved it (a bar split by ``contributions``), the agreement,
  the derived valence/arousal (labelled derived) and, for a multimodal DMD model, its own graph account.
* **The agreement strip** (:func:`strip_html`): one row per channel over the file's time, the fused row on
  top, then face, voice and words; each segment a cell coloured by its class (the words by the sign of their
  sentiment), grey where the channel says nothing; a hatched fused cell is uncertain. Plain HTML and CSS (no
  script, no image), so a reader can hover a cell for its numbers.
* **The valence/arousal timeline**: per segment, a PNG drawn by
  :func:`dmd_pipeline.analysis.report.plot_valence_arousal` (the report owns its plots).

Channel per segment: the face from the segment's ``face`` dict (schema 1.3), the voice and the words from the
models :mod:`dmd_pipeline.analysis.fused` picks, all on the fused classes (:mod:`dmd_pipeline.fusion`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from dmd_pipeline.analysis.fused import voice_run, words_run
from dmd_pipeline.analysis.result import AnalysisResult, SegmentResult
from dmd_pipeline.fusion import CHANNELS, to_fused_classes

__all__ = ["CLASS_COLOURS", "answer_html", "strip_cells", "strip_html"]

#: One colour per fused class (``dmd_pipeline.fusion.FUSED_CLASSES``): the strip and its legend.
CLASS_COLOURS: dict[str, str] = {
    "angry": "#c0392b",
    "disgust": "#8e44ad",
    "fear": "#d35400",
    "happy": "#e1b100",
    "neutral": "#95a5a6",
    "sad": "#2c6fbb",
    "surprise": "#16a085",
}
_NONE = "#eeeeee"
_POSITIVE, _NEGATIVE, _NEUTRAL_WORDS = "#1a7f37", "#6e2c00", "#bbbbbb"

CSS = """
.answer{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;margin:.8em 0}
.answer .label{font-size:1.6em;font-weight:700}.answer .unsure{color:#a05a00;font-weight:600}
.shares{display:flex;height:1.3em;border-radius:3px;overflow:hidden;margin:.3em 0;max-width:600px}
.shares div{color:#fff;font-size:.8em;line-height:1.3em;padding-left:4px;white-space:nowrap;overflow:hidden}
.strip{position:relative;margin:.4em 0 .2em 5.5em;max-width:900px}
.strip .row{position:relative;height:1.4em;margin:2px 0;background:#fafafa}
.strip .row span.name{position:absolute;left:-5.5em;width:5.2em;text-align:right;font-size:.85em}
.strip .cell{position:absolute;top:0;bottom:0;border-right:1px solid #fff}
.strip .cell.unsure{background-image:repeating-linear-gradient(45deg,rgba(255,255,255,.55) 0 3px,transparent 3px 7px)}
.legend span{display:inline-block;margin-right:.8em;font-size:.85em}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.25em;vertical-align:-.1em}
"""


def _face_probs(seg: Any) -> Mapping[str, float] | None:
    face = getattr(seg, "face", None)
    if isinstance(face, Mapping):
        return face.get("probabilities")
    return getattr(face, "probabilities", None) if face is not None else None


def _class_cell(probs: Mapping[str, float] | None) -> tuple[str, str]:
    """(colour, title) of a class channel's span."""
    mapped = to_fused_classes(probs)
    if not mapped:
        return _NONE, "n/a"
    best = max(mapped, key=mapped.__getitem__)
    return CLASS_COLOURS[best], f"{best} {mapped[best]:.2f}"


def _words_cell(score: float | None) -> tuple[str, str]:
    if score is None:
        return _NONE, "n/a"
    colour = _POSITIVE if score >= 0.5 else _NEGATIVE if score <= -0.5 else _NEUTRAL_WORDS
    return colour, f"sentiment {score:+.2f}"


def strip_cells(result: AnalysisResult) -> dict[str, list[tuple[SegmentResult, str, str, bool]]]:
    """Per row (``fused``, ``face``, ``voice``, ``words``): (segment, colour, title, uncertain) per segment."""
    voice, words = voice_run(result.models), words_run(result.models)
    rows: dict[str, list[tuple[SegmentResult, str, str, bool]]] = {k: [] for k in ("fused", *CHANNELS)}
    for s in result.segments:
        f = s.fused or {}
        if f.get("label"):
            title = f"{f['label']} {f['probability']:.2f}"
            if f.get("uncertain"):
                title += f", uncertain ({f.get('uncertain_reason')}: {f.get('detail')})"
            rows["fused"].append((s, CLASS_COLOURS.get(f["label"], _NONE), title, bool(f.get("uncertain"))))
        else:
            rows["fused"].append((s, _NONE, "no answer (no face or voice)", True))
        rows["face"].append((s, *_class_cell(_face_probs(s)), False))
        vp = s.predictions.get(voice.name) if voice is not None else None
        rows["voice"].append((s, *_class_cell(vp.probabilities if vp is not None else None), False))
        wp = s.predictions.get(words.name) if words is not None else None
        rows["words"].append((s, *_words_cell(wp.score if wp is not None else None), False))
    return rows


def strip_html(result: AnalysisResult) -> str:
    """The agreement strip (module docstring) with its class legend."""
    e = html.escape
    total = max(float(result.duration), max((s.end for s in result.segments), default=0.0), 1e-3)
    out = ['<div class="strip" id="agreement-strip">']
    for name, cells in strip_cells(result).items():
        out.append(f'<div class="row" data-channel="{name}"><span class="name">{name}</span>')
        for s, colour, title, unsure in cells:
            left, width = 100 * s.start / total, max(0.2, 100 * s.duration / total)
            cls = "cell unsure" if unsure and name == "fused" else "cell"
            out.append(
                f'<div class="{cls}" style="left:{left:.2f}%;width:{width:.2f}%;background-color:{colour}" '
                f'title="{s.start:.2f}–{s.end:.2f} s: {e(title)}"></div>'
            )
        out.append("</div>")
    out.append("</div>")
    legend = "".join(f'<span><i style="background:{c}"></i>{e(k)}</span>' for k, c in CLASS_COLOURS.items())
    legend += (
        f'<span><i style="background:{_POSITIVE}"></i>words positive</span>'
        f'<span><i style="background:{_NEGATIVE}"></i>words negative</span>'
        f'<span><i style="background:{_NONE}"></i>n/a</span>'
    )
    out.append(f'<p class="legend muted">{legend} · hatched: uncertain · 0–{total:.1f} s</p>')
    return "\n".join(out)


def answer_html(result: AnalysisResult) -> str:
    """The fused answer block (module docstring); empty for a result without one (an older version)."""
    f = result.fused
    if not f:
        return ""
    e = html.escape
    out = ['<div class="answer" id="fused-answer">']
    if f.get("label"):
        out.append(
            f'<span class="label">{e(f["label"])}</span> <span class="big">{f["probability"]:.2f}</span>'
        )
    else:
        out.append('<span class="label">no emotion named</span>')
    if f.get("uncertain"):
        out.append(
            f'<p class="unsure">uncertain: {e(str(f.get("uncertain_reason")))} — {e(str(f.get("detail")))}</p>'
        )
    else:
        out.append(f'<p class="muted">{e(str(f.get("detail") or ""))}</p>')
    shares = f.get("contributions") or {}
    colours = {"face": "#6c5ce7", "voice": "#0984e3", "words": "#00a884"}
    bars = "".join(
        f'<div style="width:{100 * shares[k]:.1f}%;background:{colours[k]}" title="{k} {shares[k]:.2f}">'
        f"{k} {shares[k]:.2f}</div>"
        for k in CHANNELS
        if shares.get(k, 0.0) > 0
    )
    if bars:
        out.append('<p>How much each channel moved the answer:</p><div class="shares">' + bars + "</div>")
    if f.get("agreement") is not None:
        out.append(f"<p>Agreement between the channels: {f['agreement']:.2f} (1 = they say the same)</p>")
    if f.get("valence") is not None:
        arousal = "" if f.get("arousal") is None else f", arousal {f['arousal']:+.2f}"
        out.append(
            f'<p>Valence {f["valence"]:+.2f}{arousal} <span class="muted">({e(str(f.get("derived_note")))})</span></p>'
        )
    if f.get("model_account"):
        out.append(f'<p class="muted">The model\'s own account: {e(f["model_account"])}</p>')
    out.append("</div>")
    return "\n".join(out)
