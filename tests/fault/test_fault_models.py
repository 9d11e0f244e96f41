"""Broken model folders: each is one ModelFileError naming the file, found before any tensor is built, and
`dmd analyze` exits 2 with one line (no traceback, no hang, no huge allocation)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_helpers import silent_folder
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.errors import ModelFileError


def _edit_config(folder: Path, fn: Callable[[dict], None]) -> None:
    p = folder / "config.json"
    meta = json.loads(p.read_text())
    fn(meta)
    p.write_text(json.dumps(meta))


def _set(key: str, value) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        def edit(meta: dict) -> None:
            if "." in key:
                k, i = key.split(".")
                meta["config"][k][int(i)] = value
            else:
                meta["config"][key] = value

        _edit_config(folder, edit)

    return apply


def _deep(folder: Path) -> None:
    (folder / "config.json").write_text('{"format": "dmd-pipeline-checkpoint", "config": ' + "[" * 100_000
                                        + "]" * 100_000 + "}")  # fmt: skip


def _pickled_text_encoder(folder: Path) -> None:
    enc = folder.parent / f"{folder.name}-encoder"
    enc.mkdir()
    (enc / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 384}))
    (enc / "pytorch_model.bin").write_bytes(
        b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."
    )

    def edit(meta: dict) -> None:
        meta["config"].update(use_bert=True, text_encoder=str(enc))

    _edit_config(folder, edit)


def _nan_weights(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    w = folder / "model.safetensors"
    tensors = load_file(str(w))
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 4)
    tensors[key][0] = float("nan")
    save_file(tensors, str(w), metadata={"format": "pt"})
    _edit_config(folder, lambda meta: meta.pop("weights_sha256"))  # nothing recorded to catch it


def _truncated_weights(folder: Path) -> None:
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])


def _not_an_object(folder: Path) -> None:
    (folder / "config.json").write_text("[1, 2, 3]")


def _fifo_config(folder: Path) -> None:
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")  # reading it would block forever


def _bad_modalities(folder: Path) -> None:
    _edit_config(folder, lambda meta: meta.update(modalities=5))


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "nlevels_100000": (_set("nlevels", 100_000), r"nlevels = 100000 is outside \[1, 48\]"),
    "dst_feature_dim_2e6": (
        _set("dst_feature_dim", 2e6),
        r"dst_feature_dim = 2000000 is outside \[1, 4096\]",
    ),
    "feature_dim_1e9": (_set("feature_dims.0", 1e9), r"feature_dims \(text\) = 1000000000 is outside"),
    "huge_but_in_range": (
        _set("dst_feature_dim", 4000),
        r"about [\d,]+ parameters .* the limit is 250,000,000",
    ),
    "string_for_number": (_set("nheads", "ten"), r"config nheads must be an integer, got 'ten'"),
    "deep_json": (_deep, r"nested deeper than"),
    "pickled_text_encoder": (
        _pickled_text_encoder,
        r"holds no model.safetensors \(pickled weights pytorch_model.bin",
    ),
    "nan_weights": (_nan_weights, r"holds NaN or infinite values"),
    "truncated_weights": (_truncated_weights, r"unreadable safetensors file"),
    "config_not_an_object": (_not_an_object, r"not a dmd-pipeline model config"),
    "fifo_config": (_fifo_config, r"not a model folder \(missing config.json\)"),
    "bad_modalities": (_bad_modalities, r"'modalities' must be a list"),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory, media) -> Path:
    return silent_folder(media, tmp_path_factory.mktemp("clip"), ["a.wav"])[0]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_model_folder(case: str, tmp_path: Path, tiny_model: Path, clip: Path) -> None:
    from dmd_pipeline.analysis.registry import load_model

    breaker, message = BROKEN[case]
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    breaker(folder)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    with pytest.raises(ModelFileError, match=message):
        load_model(folder)
    res = CliRunner().invoke(
        app,
        ["analyze", str(clip), "--model", str(folder), "--out", str(tmp_path / "out"), "--asr", "none", "-q"],
    )
    assert time.monotonic() - t0 < 20
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024 < 500  # MiB
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert "Traceback" not in res.output and lines[-1].startswith("Error: ") and len(lines) == 1, res.output
    assert str(folder) in lines[0]
