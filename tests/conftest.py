"""Shared pytest fixtures: locating ../shared (skip with a reason when absent), thread limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from dmd_pipeline.utils import shared_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder; tests that need it skip with a clear reason when it is absent."""
    d = shared_dir()
    if d is None:
        pytest.skip("../shared is absent (real data and reference fixtures live there); skipping")
    return d


@pytest.fixture(scope="session")
def ravdess(shared: Path) -> Path:
    """../shared/data/ravdess (speech of actors 1-21 and its labels.csv); tests skip when it is absent."""
    d = shared / "data" / "ravdess"
    if not (d / "labels.csv").is_file():
        pytest.skip(f"{d} is absent; skipping the tests on real RAVDESS clips")
    return d


@pytest.fixture(scope="session")
def shared_clips(shared: Path) -> Path:
    d = shared / "data" / "clips"
    if not d.is_dir():
        pytest.skip(f"{d} is absent; skipping tests on real clips")
    return d


@pytest.fixture(scope="session")
def reference_dir(shared: Path) -> Path:
    d = shared / "fixtures" / "dmd_reference"
    if not d.is_dir():
        pytest.skip(f"{d} is absent; skipping golden-reference tests")
    return d
