"""`dmd evaluate --labels CSV` on a folder of media: a tiny untrained 3-class audio-only model built here,
synthetic espeak clips (one broken file), and (when ../shared is there) six real RAVDESS test clips."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from media_factory import MediaFactory, session_factory
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app

runner = CliRunner()
CLASSES = ["Angry", "Happy", "Sad"]  # the model's order and spelling; the CSVs use lower case
TEXTS = [
    "I am so angry about this.",
    "What a wonderful day it is.",
    "I feel sad and tired today.",
    "Leave me alone right now.",
    "This is the best news ever.",
    "Nothing ever goes right for me.",
]


def make_audio_model(out: Path, class_names=CLASSES, num_classes: int = 3, seed: int = 0) -> Path:
    """An untrained, small audio-only DMD checkpoint with the meta `dmd train --data` records."""
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.extractors.acoustic import AcousticExtractor
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint
    from dmd_pipeline.pipeline import ExtractionConfig

    torch.manual_seed(seed)
    cfg = get_preset(
        "mosi_aligned",
        feature_dims=(384, 25, 66),
        seq_lens=(8, 8, 8),
        dst_feature_dim=10,
        nheads=2,
        nlevels=1,
        num_classes=num_classes,
        conv1d_kernel_size=(1, 1, 1),
    )
    cfg.name = "tiny_audio"
    spec = {
        "config": ExtractionConfig(asr="none", aligned=False, seq_lens=(8, 8, 8)).to_dict(),
        "names": {"audio": list(AcousticExtractor().feature_names)},
    }
    meta = {
        "modalities": ["audio"],
        "task": "classification" if num_classes > 1 else "regression",
        "feature_spec": {"feature_spec": spec, "aligned": False},
    }
    if num_classes > 1:
        meta["class_names"] = list(class_names)
    save_checkpoint(out, DMDSystem(cfg), meta)
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_audio_model(tmp_path_factory.mktemp("models") / "tiny_audio")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature_cache")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, media) -> Path:
    """A folder of six espeak clips (two per class, wav and mp3) and one broken file."""
    import shutil

    root = tmp_path_factory.mktemp("clips")
    (root / "speech").mkdir()
    for i, text in enumerate(TEXTS):
        src = media.speech_wav(text, speed=150 + 10 * i)
        shutil.copy(src, root / "speech" / f"clip{i}.wav")
    shutil.copy(media.audio_only("mp3"), root / "speech" / "long.mp3")
    shutil.copy(media.text_as_mp4(), root / "broken.mp4")
    return root


LABELS = ["angry", "happy", "sad", "angry", "happy", "sad"]


def _rows(with_split: bool = True, broken: bool = True) -> list[list]:
    rows = [
        [f"speech/clip{i}.wav", lab] + (["test" if i < 4 else "train"] if with_split else [])
        for i, lab in enumerate(LABELS)
    ]
    rows.append(["speech/long.mp3", "HAPPY"] + (["test"] if with_split else []))
    if broken:
        rows.append(["broken.mp4", "sad"] + (["test"] if with_split else []))
    return rows


def _evaluate(model_dir: Path, labels: Path, cache_dir: Path, *extra: str):
    args = ["evaluate", "--model", str(model_dir), "--labels", str(labels), "--cache-dir", str(cache_dir)]
    return runner.invoke(app, [*args, *extra])


def test_media_classification_json_counts_failures(model_dir, clips, cache_dir) -> None:
    labels = write_csv(clips / "labels.csv", ["file", "label", "split"], _rows())
    res = _evaluate(model_dir, labels, cache_dir, "--json", "-q")
    assert res.exit_code == 1, res.output  # one broken file: listed, left out, exit code 1
    doc = json.loads(res.stdout)
    assert doc["split"] == "test" and doc["kind"] == "media" and doc["task"] == "classification"
    assert doc["model_name"] == "tiny_audio" and doc["labels"] == str(labels.resolve())
    assert doc["n_items"] == 6 and doc["n"] == 5 and doc["n_failed"] == 1
    assert [f["id"] for f in doc["failed"]] == ["broken"] and doc["failed"][0]["reason"]
    assert "broken" in res.stderr
    assert doc["class_names"] == CLASSES
    m = doc["metrics"]
    assert set(m) == {"accuracy", "uar", "macro_f1", "weighted_f1"}
    assert all(0.0 <= m[k] <= 1.0 for k in m)
    rep = doc["report"]
    cm = np.array(rep["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == doc["n"] == rep["n"]
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    # support in the MODEL's class order: test rows are angry, happy, sad, angry + HAPPY (broken sad left out)
    assert rep["per_class"]["support"] == [2, 2, 1]
    assert doc["extraction"]["aligned"] is False and doc["extraction"]["seq_lens"] == [8, 8, 8]

    # a second run reads every clip back from the cache and gives the same numbers
    again = json.loads(_evaluate(model_dir, labels, cache_dir, "--json", "-q").stdout)
    assert again["cache_hits"] == 5 and again["report"] == rep


def test_media_tables_and_split_all(model_dir, clips, cache_dir) -> None:
    labels = write_csv(clips / "all.csv", ["file", "label", "split"], _rows(broken=False))
    res = _evaluate(model_dir, labels, cache_dir, "--split", "all")
    assert res.exit_code == 0, res.output
    out = res.stdout
    for text in ("UAR", "macro-F1", "weighted-F1", "confusion matrix", "per class", *CLASSES, "n=7"):
        assert text in out, text
    assert re.search(r"\d{1,3}\.\d %", out)  # percentages with one decimal
    assert "evaluating" in res.stderr  # the progress bar goes to stderr
    quiet = _evaluate(model_dir, labels, cache_dir, "--split", "train", "--quiet")
    assert quiet.exit_code == 0 and "n=2" in quiet.stdout and "evaluating" not in quiet.stderr


def test_no_split_column_needs_split_all(model_dir, clips, cache_dir) -> None:
    labels = write_csv(clips / "nosplit.csv", ["file", "label"], _rows(with_split=False, broken=False))
    res = _evaluate(model_dir, labels, cache_dir, "--json", "-q", "--split", "all")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["n"] == 7 and doc["split"] == "all" and doc["n_failed"] == 0
    assert sum(map(sum, doc["report"]["confusion_matrix"])) == 7
    res = _evaluate(model_dir, labels, cache_dir, "-q")  # default --split test
    assert res.exit_code == 2 and "--split all" in res.stderr and "no split column" in res.stderr


def test_mistyped_split_lists_the_available_ones(model_dir, clips, cache_dir) -> None:
    labels = write_csv(clips / "labels.csv", ["file", "label", "split"], _rows())
    res = _evaluate(model_dir, labels, cache_dir, "--split", "tset")
    assert res.exit_code == 2
    assert "unknown split 'tset'" in res.stderr and "train (2)" in res.stderr and "test (6)" in res.stderr
    assert "[]" not in res.stderr
    res = _evaluate(model_dir, labels, cache_dir, "--split", "valid")
    assert res.exit_code == 2 and "no items in split 'valid'" in res.stderr and "test (6)" in res.stderr


def test_label_the_model_does_not_know_is_a_clear_error(model_dir, clips, cache_dir) -> None:
    rows = [*_rows(broken=False), ["speech/clip0.wav", "bored", "test"]]
    labels = write_csv(clips / "unknown.csv", ["file", "label", "split"], rows)
    res = _evaluate(model_dir, labels, cache_dir, "-q")
    assert res.exit_code == 2
    err = " ".join(res.stderr.split())
    assert "'bored'" in err and "not classes of the model" in err
    assert "Angry" in err and "Sad" in err and "happy" in err  # both sets are listed


def test_model_class_order_is_kept(tmp_path, clips, cache_dir) -> None:
    """Labels map to the model's class indices, not to the CSV's own sorted order."""
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.evaluation import select_media_items

    order = ["sad", "ANGRY", "Happy"]
    model = load_model(make_audio_model(tmp_path / "m", class_names=order))
    labels = write_csv(clips / "labels.csv", ["file", "label", "split"], _rows())
    sel = select_media_items(labels, model, "all")
    want = {"angry": 1, "happy": 2, "sad": 0}
    assert sel.targets == [want[str(it.label).lower()] for it in sel.items]
    res = _evaluate(tmp_path / "m", labels, cache_dir, "--json", "-q", "--split", "all")
    doc = json.loads(res.stdout)
    assert doc["class_names"] == order
    assert doc["report"]["per_class"]["support"] == [2, 2, 3]  # sad (broken one left out), angry, happy


def test_unused_modalities_are_zeros_and_audio_matches_extract(model_dir, clips, cache_dir) -> None:
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.pipeline import Extractor, to_model_inputs

    model = load_model(model_dir)
    config = model.extraction_config()
    assert config.aligned is False and config.seq_lens == (8, 8, 8) and config.asr == "none"
    ex = Extractor(config, cache=cache_dir)
    bundle = ex.extract_clip(clips / "speech" / "clip1.wav")
    x = model.inputs(bundle, aligned=False)
    assert x["text"].shape == (8, 384) and x["vision"].shape == (8, 66) and x["audio"].shape == (8, 25)
    assert not x["text"].any() and not x["vision"].any() and x["audio"].any()
    ref = to_model_inputs(bundle, aligned=False, seq_lens=(8, 8, 8), dims={"text": 384, "vision": 66})
    np.testing.assert_array_equal(x["audio"], ref["audio"])  # the same array `dmd extract` stores


def test_regression_model_on_media_prints_mmsa_metrics(tmp_path, clips, cache_dir) -> None:
    model = make_audio_model(tmp_path / "reg", num_classes=1)
    rows = [[f"speech/clip{i}.wav", v] for i, v in enumerate([-2.0, 1.5, -1.0, 0.5, 2.5, -0.5])]
    labels = write_csv(clips / "scores.csv", ["file", "label"], rows)
    res = _evaluate(model, labels, cache_dir, "--json", "-q", "--split", "all")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["task"] == "regression" and doc["report"] is None and doc["n"] == 6
    for key in ("Has0_acc_2", "Non0_acc_2", "Mult_acc_7", "MAE", "Corr"):
        assert key in doc["metrics"]
    assert math.isfinite(doc["metrics"]["MAE"])
    res = _evaluate(model, labels, cache_dir, "-q", "--split", "all")
    assert res.exit_code == 0 and "Mult_acc_7" in res.stdout and "all (n=6)" in res.stdout


@pytest.mark.shared
@pytest.mark.slow  # six real clips: forced alignment + the text encoder load, ~10 s
def test_real_ravdess_test_clips(shared, tmp_path, cache_dir) -> None:
    root = shared / "data" / "ravdess"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"{root / 'labels.csv'} is absent; skipping the real-clip evaluation")
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    picked = []
    for lab in ("angry", "happy", "sad"):
        picked += [r for r in rows if r["label"] == lab][:2]
    assert len(picked) == 6
    header = list(picked[0])
    out_rows = [[str((root / r["file"]).resolve()) if k == "file" else r[k] for k in header] for r in picked]
    labels = write_csv(tmp_path / "labels.csv", header, out_rows)
    model = make_audio_model(tmp_path / "m", class_names=["angry", "happy", "sad"])
    res = _evaluate(model, labels, cache_dir, "--json", "-q")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["n"] == 6 and doc["n_failed"] == 0 and doc["split"] == "test"
    assert all(math.isfinite(v) for v in doc["metrics"].values())
    assert sum(map(sum, doc["report"]["confusion_matrix"])) == 6
    assert doc["report"]["per_class"]["support"] == [2, 2, 2]


# ---- the other inputs keep working: MMSA pickles and transcript CSVs ---------------------------------------


def _tiny_checkpoint(out: Path, dims, seq_lens, num_classes: int, meta: dict) -> Path:
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = get_preset(
        "mosi_aligned",
        feature_dims=dims,
        seq_lens=seq_lens,
        dst_feature_dim=8,
        nheads=2,
        nlevels=1,
        num_classes=num_classes,
        conv1d_kernel_size=(1, 1, 1),
    )
    save_checkpoint(out, DMDSystem(cfg), meta)
    return out


def test_pickle_split_all_and_classification_report(tmp_path) -> None:
    from make_synthetic_mmsa import write_synthetic_pickle

    data = write_synthetic_pickle(tmp_path / "aligned_50.pkl", n_train=4, n_valid=2, n_test=3)
    meta = {"task": "classification", "class_names": ["Negative", "Neutral", "Positive"]}
    model = _tiny_checkpoint(tmp_path / "m", (16, 5, 7), (12, 12, 12), 3, meta)
    res = runner.invoke(
        app, ["evaluate", "--model", str(model), "--data", str(data), "--split", "all", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "pickle" and doc["split"] == "all" and doc["n"] == 9
    assert "Acc_3" in doc["metrics"] and "uar" in doc["metrics"]
    assert sum(map(sum, doc["report"]["confusion_matrix"])) == 9
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--split", "tset"])
    assert res.exit_code == 2 and "train (4), valid (2), test (3)" in res.stderr


def test_transcript_csv_split_all_and_errors(tmp_path, model_dir) -> None:
    rows = [
        ["v0", i, text, 1.5 if i % 2 else -1.5, "train" if i < 4 else "test"] for i, text in enumerate(TEXTS)
    ]
    labels = write_csv(tmp_path / "label.csv", ["video_id", "clip_id", "text", "label", "mode"], rows)
    meta = {"modalities": ["text"], "task": "regression", "text_features_encoder": "bundled:all-MiniLM-L6-v2"}
    model = _tiny_checkpoint(tmp_path / "text", (384, 4, 5), (12, 12, 12), 1, meta)
    args = ["evaluate", "--model", str(model), "--labels", str(labels)]
    res = runner.invoke(app, [*args, "--split", "all", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "transcripts" and doc["n"] == 6 and "MAE" in doc["metrics"]
    res = runner.invoke(app, [*args, "--split", "dev"])  # an alias of valid, which this file lacks
    assert res.exit_code == 2 and "no items in split 'valid'" in res.stderr and "train (4)" in res.stderr
    # an audio model cannot be scored from transcripts alone
    res = runner.invoke(app, ["evaluate", "--model", str(model_dir), "--labels", str(labels)])
    assert res.exit_code == 2 and "does not read text" in res.stderr
