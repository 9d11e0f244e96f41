"""``dmd evaluate`` of a face-expression model on a label CSV of images (tiny model built here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.errors import DataError
from dmd_pipeline.face.evaluate import evaluate_images, read_image_labels
from dmd_pipeline.face.model import FaceExpressionModel, is_face_model, save_face_model
from dmd_pipeline.face.network import FaceExpressionNet, FaceNetConfig


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_face_model(
        tmp_path_factory.mktemp("face") / "tiny", FaceExpressionNet(FaceNetConfig(width=4, hidden=8)).eval()
    )


def _write_images(folder: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["file,label,split"]
    for i, label in enumerate(["happy", "fearful", "Surprised", "sad", "neutral", "angry"]):
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(folder / f"img{i}.png")
        rows.append(f"img{i}.png,{label},{'test' if i < 4 else 'train'}")
    (folder / "broken.jpg").write_bytes(b"not an image")
    rows.append("broken.jpg,happy,test")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def test_images_are_scored_with_synonyms_and_failures_listed(tiny_model: Path, tmp_path: Path) -> None:
    csv_path = _write_images(tmp_path)
    model = FaceExpressionModel.load(tiny_model)
    seen: list[str | None] = []
    res = evaluate_images(model, csv_path, "test", on_item=lambda it, why: seen.append(why))
    assert res.n_items == 5 and len(res.files) == 4 and len(seen) == 5
    assert res.targets == ["happy", "fear", "surprise", "sad"]
    assert len(res.failed) == 1 and res.failed[0]["file"].endswith("broken.jpg")
    assert res.used_whole == 4 and res.faces_found == 0  # noise: no face, so each image is used whole
    rep = res.report
    assert rep is not None and rep["n"] == 4 and np.asarray(rep["confusion_matrix"]).sum() == 4
    assert all(p in model.classes for p in res.predictions)


def test_splits_and_unknown_labels(tiny_model: Path, tmp_path: Path) -> None:
    csv_path = _write_images(tmp_path)
    assert len(read_image_labels(csv_path, "all")[0]) == 7
    with pytest.raises(DataError, match="no items in split"):
        read_image_labels(csv_path, "valid")
    (tmp_path / "bad.csv").write_text("file,label\nimg0.png,calm\n")
    with pytest.raises(DataError, match="calm"):
        evaluate_images(FaceExpressionModel.load(tiny_model), tmp_path / "bad.csv", "all")


def test_cli_evaluates_a_face_model_on_images(tiny_model: Path, tmp_path: Path) -> None:
    csv_path = _write_images(tmp_path)
    assert is_face_model(tiny_model) and not is_face_model(tmp_path)
    res = CliRunner().invoke(
        app, ["evaluate", "--model", str(tiny_model), "--labels", str(csv_path), "--split", "test", "--json"]
    )
    assert res.exit_code == 1, res.output  # one image failed: listed, the rest scored
    doc = json.loads(res.stdout[res.stdout.index("{") :])
    assert doc["kind"] == "images" and doc["n"] == 4 and doc["n_failed"] == 1
    assert set(doc["metrics"]) == {"accuracy", "uar", "macro_f1", "weighted_f1"}
    cal = doc["calibration"]  # ECE of the raw probabilities; no temperature in this model: no "after"
    assert cal["n"] == 4 and 0 <= cal["ece_before"] <= 1 and cal["ece_after"] is None


def test_a_face_model_temperature_is_applied_to_the_mirrored_average(
    tiny_model: Path, tmp_path: Path
) -> None:
    import shutil

    from dmd_pipeline.calibration import softmax
    from dmd_pipeline.errors import ModelFileError

    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_model, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["calibration"] = {"method": "temperature", "temperature": 2.0}
    (folder / "config.json").write_text(json.dumps(cfg))
    raw, cal = FaceExpressionModel.load(tiny_model), FaceExpressionModel.load(folder)
    crops = np.random.default_rng(0).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    p0, p1 = raw.predict_crops(crops), cal.predict_crops(crops)
    assert np.allclose(p1, softmax(np.log(p0) / 2.0), atol=1e-5) and (p1.argmax(1) == p0.argmax(1)).all()
    assert np.allclose(cal.predict_crops(crops, calibrated=False), p0, atol=1e-6)
    assert cal.calibration is not None and cal.calibration.temperature == 2.0
    cfg["calibration"]["temperature"] = -1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="calibration.temperature"):
        FaceExpressionModel.load(folder)


def test_a_real_face_photo_is_cropped_not_used_whole(tiny_model: Path, tmp_path: Path, shared: Path) -> None:
    from PIL import Image

    from dmd_pipeline.media import iter_frames

    video = shared / "data" / "ravdess" / "video" / "01-01-01-01-01-01-01.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    frame = next(f for t, f in iter_frames(video, fps=2.0) if t >= 1.0)
    Image.fromarray(frame).save(tmp_path / "frame.jpg")
    (tmp_path / "labels.csv").write_text("file,label\nframe.jpg,neutral\n")
    res = evaluate_images(FaceExpressionModel.load(tiny_model), tmp_path / "labels.csv", "all")
    assert res.faces_found == 1 and res.used_whole == 0 and len(res.files) == 1


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow only warns between its pixel limit and twice it: a photo upload (``dmd serve``) could make a
    worker decode hundreds of MB; the limit itself refuses, with the reason."""
    from PIL import Image

    from dmd_pipeline.face.evaluate import load_rgb

    p = tmp_path / "big.png"
    Image.new("RGB", (200, 100), (90, 120, 200)).save(p)
    assert load_rgb(p).shape == (100, 200, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000)  # 20,000 pixels: over it, under twice it
    with pytest.raises(ValueError, match="200x100 pixels is more than 15,000"):
        load_rgb(p)
