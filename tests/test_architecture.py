"""The package's structure: no import cycles among its modules, and the CLI's choices match the library's."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dmd_pipeline"


def _module_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (top-level, function-level and TYPE_CHECKING imports)."""
    files = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = p
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != mod and not mod.startswith(t + ".") and t != "dmd_pipeline":
                    graph[mod].add(t)
    return graph


def test_no_import_cycles() -> None:
    graph = _module_graph()

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {m: reach(m) for m in graph}
    cycles = sorted(
        {tuple(sorted((a, b))) for a in graph for b in reachable[a] if b != a and a in reachable[b]}
    )
    assert not cycles, f"modules that import each other (directly or around a circle): {cycles}"


def test_cli_choices_match_the_library() -> None:
    from dmd_pipeline.cli.common import AcousticSetting, AsrEngine
    from dmd_pipeline.extractors.whisper_encoder import ACOUSTIC_SETTINGS
    from dmd_pipeline.feature_config import ASR_ENGINES

    assert tuple(e.value for e in AsrEngine) == tuple(ASR_ENGINES)
    assert tuple(e.value for e in AcousticSetting) == tuple(ACOUSTIC_SETTINGS)
