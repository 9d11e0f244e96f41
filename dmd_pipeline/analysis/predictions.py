"""How one prediction reads, wherever it is shown: the top class of a classification (:func:`top_class`),
the cells a prediction fills in a table of per-model columns (:func:`prediction_cells`), and the cells of a
fused answer (:func:`fused_cells`) and of the face channel (:func:`face_cells`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def top_class(probabilities: Mapping[str, float] | None, predicted: str | None = None) -> str | None:
    """The predicted class (``predicted`` when given, else the most probable one); None without
    probabilities."""
    if predicted:
        return predicted
    if not probabilities:
        return None
    return max(probabilities, key=probabilities.__getitem__)


def prediction_cells(
    name: str, task: str, p: Mapping[str, Any] | None, number: Callable[[float], Any]
) -> dict[str, Any]:
    """Per-model cells of one prediction (a result's prediction dict, or None): ``<name>:score`` for a
    regression model, ``<name>:label`` and ``<name>:p`` for a classifier; empty strings where there is no
    value. ``number`` formats a value (a rounded float for data files, a fixed-decimals string for tables)."""
    p = p or {}
    if task == "regression":
        score = p.get("score")
        return {f"{name}:score": "" if score is None else number(score)}
    probs = p.get("probabilities") or {}
    best = top_class(probs, p.get("predicted_class"))
    return {f"{name}:label": best or "", f"{name}:p": number(probs[best]) if best in probs else ""}


#: The columns of a fused answer in a table (segment CSV/TSV, summary.csv).
FUSED_COLUMNS: tuple[str, ...] = (
    "fused:label",
    "fused:p",
    "fused:uncertain",
    "fused:reason",
    "fused:valence",
    "fused:arousal",
)


def fused_cells(fused: Mapping[str, Any] | None, number: Callable[[float], Any]) -> dict[str, Any]:
    """``fused:label``, ``fused:p``, ``fused:uncertain`` (``true``/``false``), ``fused:reason`` and the derived
    ``fused:valence``/``fused:arousal`` of a result's ``fused`` dict (schema 1.3); empty strings where there is
    no value (an older result)."""
    f = fused or {}

    def num(key: str) -> Any:
        x = f.get(key)
        return "" if x is None else number(x)

    return {
        "fused:label": f.get("label") or "",
        "fused:p": num("probability"),
        "fused:uncertain": "" if "uncertain" not in f else ("true" if f["uncertain"] else "false"),
        "fused:reason": f.get("uncertain_reason") or "",
        "fused:valence": num("valence"),
        "fused:arousal": num("arousal"),
    }


#: The face channel's columns in timelines (CSV/TSV) and summary.csv.
FACE_COLUMNS: tuple[str, ...] = ("face:label", "face:p", "face:visible")


def face_cells(face: Mapping[str, Any] | None, number: Callable[[float], Any]) -> dict[str, Any]:
    """The face channel's cells of a span (a result's ``face`` dict, or None when no face model ran):
    ``face:label`` (the top class, or the note, e.g. ``n/a (no face)``), ``face:p`` (its probability) and
    ``face:visible`` (the visible fraction); empty where there is no value."""
    if not face:
        return dict.fromkeys(FACE_COLUMNS, "")
    p = face.get("probability")
    seen = face.get("visible_fraction")
    return {
        "face:label": face.get("label") or face.get("note") or "",
        "face:p": "" if p is None else number(p),
        "face:visible": "" if seen is None or face.get("n_frames", 0) == 0 else number(seen),
    }


def is_face_run(run: Mapping[str, Any]) -> bool:
    """Whether a ``models[]`` entry is the face model (its numbers go in the face columns, not per model)."""
    return run.get("role") == "expression"
