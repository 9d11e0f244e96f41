"""The fused answer against each channel alone on the audio-visual clips we have (tiny n: an illustration, not
an accuracy figure): the 7 RAVDESS audio-video clips of actor 1 and the 6 CREMA-D clips.

Reads `dmd analyze` results (schema 1.3: `fused`, the file's `face`, the voice model's `overall`) and the
label files, maps every label and every channel onto the fused classes (`dmd_pipeline.fusion.CLASS_MAP`:
calm -> neutral, fearful -> fear, surprised -> surprise; CREMA-D's anger/happiness/sadness -> angry/happy/sad)
and prints, per clip, the label, what the face alone, the voice alone and the fused answer say (file level),
whether the fused answer is flagged uncertain, and the counts right; `--json` prints the same as JSON.

    dmd analyze ../shared/data/ravdess/video/01-01-* ../shared/data/clips/1001_DFA_* --out runs/fusion
    python benchmarks/fusion_clips.py --results runs/fusion

The golden results (tests/golden/analyze) are such results for these clips; `--results tests/golden/analyze`
reads them. The words alone name no class (they are valence evidence): their score is listed.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from dmd_pipeline.fusion import CLASS_MAP, to_fused_classes
from dmd_pipeline.utils import shared_dir

#: Label words of the CREMA-D clips file beyond CLASS_MAP.
_CREMA = {"anger": "angry", "happiness": "happy", "sadness": "sad"}


def labels(shared: Path) -> dict[str, tuple[str, str]]:
    """file stem -> (dataset, fused-class label) of the audio-visual clips."""
    out: dict[str, tuple[str, str]] = {}
    for r in csv.DictReader((shared / "ravdess" / "video" / "labels.csv").open(encoding="utf-8")):
        if r["has_audio"] == "True":
            out[Path(r["file"]).stem] = ("RAVDESS", CLASS_MAP[r["label"]])
    for r in csv.DictReader((shared / "clips" / "labels.csv").open(encoding="utf-8")):
        if r["dataset"] == "CREMA-D":
            out[Path(r["file"]).stem] = (
                "CREMA-D",
                CLASS_MAP.get(r["label"], _CREMA.get(r["label"], r["label"])),
            )
    return out


def _top(probs: dict[str, float] | None) -> tuple[str, float] | None:
    mapped = to_fused_classes(probs)
    if not mapped:
        return None
    best = max(mapped, key=mapped.__getitem__)
    return best, mapped[best]


def clip_row(doc: dict[str, Any], dataset: str, label: str) -> dict[str, Any]:
    """What each channel and the fused answer say about one clip."""
    face = (doc.get("face") or {}).get("probabilities")
    voice = next(
        (
            m
            for m in doc.get("models", [])
            if m["task"] == "classification" and m["info"]["modalities"] == ["audio"]
        ),
        None,
    )
    words = next((m for m in doc.get("models", []) if m["task"] == "regression"), None)
    fused = doc.get("fused") or {}
    f, v = _top(face), _top(voice["overall"].get("probabilities") if voice else None)
    return {
        "clip": Path(doc["file"]).name,
        "dataset": dataset,
        "label": label,
        "face": f[0] if f else None,
        "face_p": f[1] if f else None,
        "voice": v[0] if v else None,
        "voice_p": v[1] if v else None,
        "words_score": words["overall"].get("score") if words else None,
        "fused": fused.get("label"),
        "fused_p": fused.get("probability"),
        "uncertain": fused.get("uncertain_reason"),
        "contributions": fused.get("contributions"),
    }


def tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many each channel and the fused answer got right of those it answered; the fused answer also
    over the clips it did not flag uncertain."""
    out: dict[str, Any] = {"n": len(rows)}
    for k in ("face", "voice", "fused"):
        out[k] = {
            "right": sum(r[k] == r["label"] for r in rows),
            "answered": sum(r[k] is not None for r in rows),
        }
    sure = [r for r in rows if r["fused"] is not None and r["uncertain"] is None]
    out["fused, not uncertain"] = {
        "right": sum(r["fused"] == r["label"] for r in sure),
        "answered": len(sure),
    }
    return out


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, required=True, help="folder of dmd analyze JSON results")
    ap.add_argument("--shared", type=Path, default=None, help="the shared data folder (default: ../shared)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    shared = args.shared or shared_dir()
    if shared is None:
        raise SystemExit("no shared data folder (../shared or $DMD_SHARED_DIR)")
    truth = labels(Path(shared) / "data" if (Path(shared) / "data").is_dir() else Path(shared))
    rows = []
    for path in sorted(args.results.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        stem = Path(str(doc.get("file", ""))).stem
        if stem in truth:
            rows.append(clip_row(doc, *truth[stem]))
    counts = {"all": tally(rows)}
    for ds in sorted({r["dataset"] for r in rows}):
        counts[ds] = tally([r for r in rows if r["dataset"] == ds])
    if args.json:
        print(json.dumps({"n": len(rows), "counts": counts, "clips": rows}, indent=2))
        return
    print(
        "| clip | label | face alone | voice alone | words score | fused | uncertain | contributions f/v/w |"
    )
    print("|---|---|---|---|---|---|---|---|")

    def cell(name: str | None, p: float | None) -> str:
        return "n/a" if name is None else f"{name} {p:.2f}"

    for r in rows:
        c = r["contributions"] or {}
        shares = "/".join(f"{c.get(k, 0.0):.2f}" for k in ("face", "voice", "words")) if c else ""
        score = "" if r["words_score"] is None else f"{r['words_score']:+.2f}"
        print(
            f"| {r['clip']} | {r['label']} | {cell(r['face'], r['face_p'])} | {cell(r['voice'], r['voice_p'])} "
            f"| {score} | {cell(r['fused'], r['fused_p'])} | {r['uncertain'] or ''} | {shares} |"
        )
    print()
    for group, tallies in counts.items():
        n = tallies.pop("n")
        said = "; ".join(f"{k} {v['right']}/{v['answered']}" for k, v in tallies.items())
        print(f"{group} (n = {n}): right/answered: {said}")


if __name__ == "__main__":
    main()
