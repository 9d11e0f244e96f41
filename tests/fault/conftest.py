"""Fixtures of the fault-injection suite (helpers in ``fault_helpers``): tiny model and media, and a
registry of spawned processes that are killed after each test, pass or fail."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import kill_tree
from media_factory import MediaFactory, session_factory


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, small text-only DMD checkpoint."""
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint

    out = tmp_path_factory.mktemp("models") / "tiny_fault"
    torch.manual_seed(0)
    cfg = get_preset("mosi_aligned", feature_dims=(384, 25, 66), dst_feature_dim=12, nheads=2, nlevels=1)
    save_checkpoint(out, DMDSystem(cfg), {"modalities": ["text"], "task": "regression"})
    return out


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    """Processes registered here are killed (with their whole session) after the test, pass or fail."""
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for p in started:
            kill_tree(p)
