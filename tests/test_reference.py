"""Golden-reference tests: our DMD reproduces the official implementation's numbers (README section 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.shared

FILES = ["mosi_aligned.npz", "mosei_aligned.npz"]


@pytest.fixture(scope="module", params=FILES)
def report(request: pytest.FixtureRequest, reference_dir: Path) -> dict:
    import torch

    from dmd_pipeline.models.selftest import check_reference

    path = reference_dir / request.param
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    torch.set_num_threads(1)
    return check_reference(path)


def _failed(report: dict, prefix: str) -> dict:
    return {k: v for k, v in report.items() if k.startswith(prefix) and isinstance(v, dict) and not v["ok"]}


def test_param_counts_equal_official(report: dict) -> None:
    assert report["param_count"]["ours"] == report["param_count"]["official"]
    assert report["config"]["ok"]


@pytest.mark.parametrize("family", ["output.", "edges.", "edges_origin.", "prior."])
def test_forward_matches_reference(report: dict, family: str) -> None:
    keys = [k for k in report if k.startswith(family)]
    assert keys, f"no {family} quantities checked"
    assert not _failed(report, family)


def test_outputs_cover_all_38(report: dict) -> None:
    assert len([k for k in report if k.startswith("output.")]) == 38


def test_losses_match_reference(report: dict) -> None:
    assert len([k for k in report if k.startswith("loss.")]) == 41
    assert not _failed(report, "loss.")


def test_gradients_match_reference(report: dict) -> None:
    assert len([k for k in report if k.startswith("grad.")]) == 46
    assert len([k for k in report if k.startswith("grad_legacy.")]) == 5
    assert not _failed(report, "grad.")
    assert not _failed(report, "grad_legacy.")
    gn = report["gradnorm"]
    assert gn["count"] == 690 and gn["ok"], gn["failed"]
    assert report["ok"]
