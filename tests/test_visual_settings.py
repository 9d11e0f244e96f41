"""Faces for DMD: the named visual feature settings (``--visual landmarks|expression|expression+landmarks``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.face.features import VISUAL_SETTINGS, make_visual_extractor
from dmd_pipeline.feature_config import ExtractionConfig
from dmd_pipeline.model import FeatureSpec

runner = CliRunner()


def test_settings_names_and_cache_key() -> None:
    assert VISUAL_SETTINGS[0] == "landmarks" and ExtractionConfig().visual == "landmarks"
    with pytest.raises(ValueError, match="unknown visual setting 'faces'"):
        ExtractionConfig(visual="faces")
    # the default adds nothing to the key (caches keep their meaning); the others each get their own
    hashes = {s: ExtractionConfig(visual=s).feature_hash() for s in VISUAL_SETTINGS}
    assert len(set(hashes.values())) == 3
    # a model records its setting; one trained before the setting existed reads as landmarks
    spec = FeatureSpec.from_meta({"feature_spec": {"feature_spec": {"config": {"visual": "expression"}}}})
    assert spec.visual == "expression"
    assert FeatureSpec.from_meta({"feature_spec": {"feature_spec": {"config": {}}}}).visual == "landmarks"


def test_columns_of_each_setting() -> None:
    land = make_visual_extractor("landmarks")
    expr = make_visual_extractor("expression")
    both = make_visual_extractor("expression+landmarks")
    try:
        assert land.dim == 66 and land.feature_names[0] == "face_present"
        classes = expr.model.classes
        assert expr.feature_names == ["face_present"] + [f"expr_p_{c}" for c in classes] + [
            f"expr_emb_{i}" for i in range(256)
        ]
        assert both.feature_names == land.feature_names + expr.feature_names[1:] and both.dim == 66 + 263
        assert expr.config_hash() != both.config_hash()
    finally:
        for e in (land, expr, both):
            e.close()


def test_expression_columns_follow_the_speaking_face() -> None:
    """A setting without the mouth columns still composes by the detections' mouth opening (det_mouth)."""
    from dmd_pipeline.extractors.base import FrameFeatures
    from dmd_pipeline.face.speaking import compose

    n = 40
    speech = np.zeros(n, np.float32)
    speech[10:30] = 0.95
    frame = np.repeat(np.arange(n), 2)
    track = np.tile([0, 1], n)
    talking = (track == 1) & (frame >= 10) & (frame < 30)
    mouth = np.where(talking, 0.3 + 0.25 * np.sin(frame * 2.1), 0.05).astype(np.float32)
    det_values = np.stack([np.ones(2 * n), np.where(track == 1, 0.9, 0.1)], axis=1).astype(np.float32)
    boxes = np.where(track[:, None] == 0, [0.5, 0.1, 0.9, 0.9], [0.1, 0.4, 0.25, 0.7]).astype(np.float32)
    extras = {
        "det_frame": frame, "det_track": track, "det_values": det_values, "det_boxes": boxes,
        "det_mouth": mouth, "n_faces": np.full(n, 2),
    }  # fmt: skip
    vis = FrameFeatures(np.zeros((n, 2), np.float32), np.arange(n) / 10, ["face_present", "expr_p_x"], extras)
    out, choices, _ = compose(vis, [(1.0, 3.0)], speech)
    assert choices[0].track == 1 and choices[0].rule == "speech correlation"
    inside = (out.times >= 1.0) & (out.times < 3.0)
    assert np.all(out.column("expr_p_x")[inside] == pytest.approx(0.9))


def _labels(src: Path, dest: Path, names: list[tuple[str, str, str]]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "transcript", "split"])
        for name, label, split in names:
            shutil.copy(src / name, dest / name)
            w.writerow([name, label, "Kids are talking by the door", split])
    return dest


@pytest.mark.slow
def test_extract_train_and_analyze_with_expression_features(shared: Path, tmp_path: Path) -> None:
    """`dmd extract --visual expression` + `dmd train` (a tiny audio+vision model) + `dmd analyze`."""
    video = shared / "data" / "ravdess" / "video"
    if not video.is_dir():
        pytest.skip(f"{video} is absent")
    torch.set_num_threads(1)
    items = [
        ("01-01-01-01-01-01-01.mp4", "neutral", "train"),
        ("01-01-08-01-01-02-01.mp4", "surprised", "train"),
        ("01-01-01-01-01-02-01.mp4", "neutral", "train"),
        ("01-01-08-02-02-02-01.mp4", "surprised", "train"),
        ("01-01-01-01-02-01-01.mp4", "neutral", "valid"),
        ("01-01-08-01-02-02-01.mp4", "surprised", "valid"),
    ]
    data = _labels(video, tmp_path / "data", items)
    res = runner.invoke(
        app,
        [
            "extract", str(data), "--out", str(tmp_path / "feats"), "--unaligned", "--seq-lens", "8,50,8",
            "--visual", "expression", "--asr", "none", "--fps", "4", "--cache-dir", str(tmp_path / "cache"),
            "--quiet",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    pkl = next((tmp_path / "feats").glob("*.pkl"))
    from dmd_pipeline.data.mmsa import load_mmsa_pickle

    splits = load_mmsa_pickle(pkl)
    vis = np.asarray(splits["train"]["vision"])
    assert vis.shape[0] == 4 and vis.shape[-1] == 264
    assert np.isfinite(vis).all() and np.abs(vis[..., 8:]).sum() > 0  # the embedding is there
    p = vis[..., 1:8]
    has_face = vis[..., 0] > 0.5
    assert has_face.any() and np.allclose(p[has_face].sum(-1), 1.0, atol=1e-3)

    out = tmp_path / "model"
    res = runner.invoke(
        app,
        [
            "train", "--data", str(pkl), "--out", str(out), "--epochs", "2", "--device", "cpu", "--seed", "3",
            "--batch-size", "4", "--update-epochs", "1", "--modalities", "audio,vision", "--quiet",
            "--set", "dst_feature_dim=8", "--set", "nheads=2", "--set", "nlevels=1",
            "--set", "conv1d_kernel_size=[3,3,3]",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["feature_dims"][2] == 264 and meta["modalities"] == ["audio", "vision"]
    from dmd_pipeline.analysis.registry import load_model

    model = load_model(out)
    assert model.visual_setting == "expression" and model.extraction_config().visual == "expression"

    clip = video / "01-01-08-01-02-02-01.mp4"
    res = runner.invoke(
        app,
        ["analyze", str(clip), "--model", str(out), "--out", str(tmp_path / "res"), "--asr", "none", "-q"],
    )
    assert res.exit_code == 0, res.output
    result = json.loads(next((tmp_path / "res").glob("*.json")).read_text())
    assert result["modalities"]["used"] == ["audio", "vision"], result["modalities"]
    probs = result["overall"]["probabilities"]
    assert set(probs) == {"neutral", "surprised"} and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
