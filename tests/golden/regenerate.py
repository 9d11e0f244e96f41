"""Write (or check) the golden results: `dmd analyze` JSON of the real clips, the RAVDESS videos and the demo.

The goldens guard refactors: results must stay byte-identical after a change that is meant to keep behaviour.
A change that *means* to alter the output regenerates them in a commit of its own:

    .venv/bin/python tests/golden/regenerate.py            # rewrite tests/golden/analyze/*.json
    .venv/bin/python tests/golden/regenerate.py --check    # compare only (what tests/test_golden.py does)
    .venv/bin/python tests/golden/regenerate.py --evaluate # also `dmd evaluate --json` of both bundled models

Normalised away before comparing (they depend on the run or the machine, not on the analysis):
- `timings` (wall-clock seconds of each stage), `created_at` (the time of the run), `mtime_ns` (the input
  file's modification time) and a model's `digest` (it covers the weights file's modification time), both
  identities for resume, at any depth;
- absolute paths: the repository root becomes `$REPO` and the shared data folder `$SHARED` in every string.
Everything else, floats included, is compared as JSON text (Python's shortest round-trip float repr).
Exact float equality assumes the same CPU class and library builds as the run that wrote the goldens, and the
same thread counts: torch's float reductions differ in the last bits between 1 and 2 threads, and by default
`dmd` picks its thread count from the machine's load (`utils.choose_threads`), so every run here is pinned to
one torch thread and one Whisper thread (`PINNED_THREADS`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
ANALYZE_DIR = GOLDEN / "analyze"
EVALUATE_DIR = GOLDEN / "evaluate"
DROP_KEYS = frozenset({"timings", "created_at", "mtime_ns", "digest"})
# Both bundled models on a split each; the label files are the ones the model card measures with.
# One thread each, whatever the load: the goldens must not depend on how busy the machine is.
PINNED_THREADS = {"DMD_THREADS": "1", "DMD_ASR_THREADS": "1"}
EVALUATIONS = {
    "mosi-text-minilm": ("data/mosi/label.csv", "test"),
    "ravdess-voice-emotion": ("data/ravdess/labels.csv", "test"),
}


def shared_root() -> Path | None:
    """The shared data folder (../shared next to the checkout, or $DMD_SHARED_DIR), None when absent."""
    sys.path.insert(0, str(REPO))
    from dmd_pipeline.utils import shared_dir

    return shared_dir()


def inputs(shared: Path | None) -> list[Path]:
    """The media the goldens cover: the demo clip always, the real clips and RAVDESS videos when shared exists."""
    subprocess.run(
        [sys.executable, str(REPO / "samples" / "make_demo.py")], check=True, stdout=subprocess.DEVNULL
    )
    files = [REPO / "samples" / "out" / "demo.mp4"]
    if shared is not None:
        clips = shared / "data" / "clips"
        files += sorted(p for p in clips.iterdir() if p.suffix in {".mp4", ".flv"})
        files += sorted((shared / "data" / "ravdess" / "video").glob("*.mp4"))
    return files


def normalise(value: object, roots: list[tuple[str, str]]) -> object:
    """Drop run-dependent keys and replace machine-dependent path prefixes, recursively."""
    if isinstance(value, dict):
        return {k: normalise(v, roots) for k, v in value.items() if k not in DROP_KEYS}
    if isinstance(value, list):
        return [normalise(v, roots) for v in value]
    if isinstance(value, str):
        for prefix, token in roots:
            value = value.replace(prefix, token)
        return value
    return value


def _roots(shared: Path | None) -> list[tuple[str, str]]:
    roots = [(str(REPO), "$REPO")]
    if shared is not None:
        roots.insert(0, (str(shared.resolve()), "$SHARED"))
        roots.insert(0, (str(shared), "$SHARED"))
    return roots


def _text(doc: object) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _dmd() -> str:
    return str(Path(sys.executable).with_name("dmd"))


def analyze_outputs(files: list[Path], shared: Path | None) -> dict[str, str]:
    """Run one `dmd analyze` over all files (one process, models loaded once); normalised JSON text per stem."""
    with tempfile.TemporaryDirectory(prefix="dmd-golden-") as tmp:
        out = Path(tmp) / "out"
        cmd = [_dmd(), "analyze", *map(str, files), "--out", str(out), "--force", "-q"]
        subprocess.run(
            cmd,
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **PINNED_THREADS},
        )
        roots = _roots(shared)
        return {
            f.stem: _text(normalise(json.loads((out / f"{f.stem}.json").read_text()), roots)) for f in files
        }


def evaluate_outputs(shared: Path) -> dict[str, str]:
    """`dmd evaluate --json` of both bundled models (feature cache off), normalised JSON text per model."""
    docs = {}
    for model, (labels, split) in EVALUATIONS.items():
        cmd = [_dmd(), "evaluate", "--model", model, "--labels", str(shared / labels), "--split", split]
        cmd += ["--json", "--no-cache", "-q"]
        run = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env={**os.environ, **PINNED_THREADS}
        )
        docs[model] = _text(normalise(json.loads(run.stdout), _roots(shared)))
    return docs


def compare(expected_dir: Path, actual: dict[str, str]) -> list[str]:
    """One message per golden file that is missing or differs (with a short unified diff)."""
    problems = []
    for name, text in sorted(actual.items()):
        path = expected_dir / f"{name}.json"
        if not path.exists():
            problems.append(f"{path}: no golden file (run tests/golden/regenerate.py)")
            continue
        want = path.read_text()
        if want != text:
            diff = difflib.unified_diff(
                want.splitlines(), text.splitlines(), str(path), "now", lineterm="", n=1
            )
            problems.append("\n".join(list(diff)[:40]))
    return problems


def _write(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / f"{name}.json").write_text(text)
    print(f"wrote {len(docs)} file(s) to {folder}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed goldens, write nothing")
    ap.add_argument(
        "--evaluate", action="store_true", help="also `dmd evaluate --json` of both bundled models"
    )
    args = ap.parse_args(argv)
    shared = shared_root()
    if shared is None:
        print("../shared is absent: only the demo clip is covered", file=sys.stderr)
    results = [(ANALYZE_DIR, analyze_outputs(inputs(shared), shared))]
    if args.evaluate and shared is not None:
        results.append((EVALUATE_DIR, evaluate_outputs(shared)))
    if not args.check:
        for folder, docs in results:
            _write(folder, docs)
        return 0
    problems = [p for folder, docs in results for p in compare(folder, docs)]
    print("\n\n".join(problems) if problems else "goldens match")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
