"""The facial-expression network and its model folder: save, load (validated), predict; tiny models built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dmd_pipeline.errors import ModelFileError
from dmd_pipeline.face.crop import FER_TEMPLATE
from dmd_pipeline.face.model import BUNDLED_FACE_MODEL, FaceExpressionModel, face_model_dir, save_face_model
from dmd_pipeline.face.network import FER_CLASSES, FaceExpressionNet, FaceNetConfig


def _tiny(seed: int = 0) -> FaceExpressionNet:
    torch.manual_seed(seed)
    net = FaceExpressionNet(FaceNetConfig(width=4, hidden=8, dropout=0.1))
    with torch.no_grad():  # non-trivial BN statistics, so that eval-mode outputs depend on them
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _crops(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 48, 48), dtype=np.uint8)


def test_network_shapes_and_probabilities() -> None:
    net = _tiny()
    x = torch.rand(3, 1, 48, 48)
    assert net(x).shape == (3, len(FER_CLASSES))
    assert net.embed(x).shape == (3, 8)
    p = net.predict_proba(x)
    assert torch.allclose(p.sum(1), torch.ones(3), atol=1e-5) and bool((p >= 0).all())
    with pytest.raises(ValueError, match="grayscale"):
        net(torch.rand(2, 3, 48, 48))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="width"):
        FaceNetConfig.from_dict({"width": 0})
    with pytest.raises(ValueError, match="classes"):
        FaceNetConfig.from_dict({"classes": ["a", "a"]})
    cfg = FaceNetConfig(width=4, hidden=8)
    assert FaceNetConfig.from_dict(cfg.to_dict()) == cfg


def test_save_load_roundtrip_float16(tmp_path: Path) -> None:
    net = _tiny()
    save_face_model(tmp_path / "m", net, {"note": "tiny"})
    model = FaceExpressionModel.load(tmp_path / "m")
    assert model.classes == list(FER_CLASSES)
    assert model.template == FER_TEMPLATE and model.input_size == 48
    assert model.meta["note"] == "tiny" and model.meta["weights_dtype"] == "float16"
    crops = _crops()
    got = model.predict_crops(crops)
    assert got.shape == (5, 7) and got.dtype == np.float32
    assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    ref = net.half().float().predict_proba(torch.from_numpy(crops).float().div(255).unsqueeze(1)).numpy()
    assert np.allclose(got, ref, atol=1e-5)
    assert model.embed_crops(crops).shape == (5, 8)
    assert model.predict_crops(np.zeros((0, 48, 48), np.uint8)).shape == (0, 7)
    with pytest.raises(ValueError, match="crops"):
        model.predict_crops(np.zeros((2, 40, 40), np.uint8))


def test_corrupt_or_foreign_folders_are_refused(tmp_path: Path) -> None:
    folder = save_face_model(tmp_path / "m", _tiny())
    blob = bytearray((folder / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="sha256"):
        FaceExpressionModel.load(folder)

    folder = save_face_model(tmp_path / "n", _tiny())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["network"]["width"] = 5  # weights no longer fit the network
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="do not match"):
        FaceExpressionModel.load(folder)

    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="format"):
        FaceExpressionModel.load(folder)
    with pytest.raises(ModelFileError, match="no such folder"):
        face_model_dir(tmp_path / "absent")


def test_bundled_model_loads_and_predicts() -> None:
    try:
        folder = face_model_dir(BUNDLED_FACE_MODEL)
    except ModelFileError:
        pytest.skip("the bundled face model is not in this checkout")
    model = FaceExpressionModel.load()
    assert model.path == folder
    p = model.predict_crops(_crops(4))
    assert p.shape == (4, len(model.classes)) and np.allclose(p.sum(1), 1.0, atol=1e-4)
