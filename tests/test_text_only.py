"""Text-only training from a label CSV, the checkpoint's bundled-encoder handling, and the bundled model."""

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
from dmd_pipeline.data.text_only import (
    build_text_only_splits,
    predict_texts,
    read_label_csv,
    tokenize_utterances,
)
from dmd_pipeline.errors import DataError, ModelFileError
from dmd_pipeline.model_files import TEXT_ENCODER_SHA256, text_encoder_dir
from dmd_pipeline.models.checkpoint import (
    BUNDLED_TEXT_ENCODER,
    TEXT_MODEL_PREFIX,
    load_checkpoint,
    resolve_text_encoder,
)

torch.set_num_threads(1)
runner = CliRunner()
METRIC_KEYS = (
    "Has0_acc_2",
    "Has0_F1_score",
    "Non0_acc_2",
    "Non0_F1_score",
    "Mult_acc_5",
    "Mult_acc_7",
    "MAE",
    "Corr",
)
BUNDLED = Path(__file__).resolve().parent.parent / "dmd_pipeline" / "assets" / "models" / "mosi-text-minilm"
TINY = ["--set", "dst_feature_dim=8", "--set", "nheads=2", "--set", "nlevels=1"]
TINY += [
    "--set",
    "conv1d_kernel_size=[3,3,3]",
    "--set",
    "seq_lens=[12,12,12]",
    "--set",
    "feature_dims=[384,4,5]",
]
POSITIVE = [
    "i loved it",
    "it was a great great movie",
    "really fun and wonderful film",
    "the best one i have seen",
]
NEGATIVE = [
    "i hated it",
    "it was a terrible boring movie",
    "really bad and awful film",
    "the worst one i have seen",
]


def _write_csv(path: Path, n_per_split: dict[str, int]) -> Path:
    rows, k = [], 0
    for mode, n in n_per_split.items():
        for i in range(n):
            pos = i % 2 == 0
            text = (POSITIVE if pos else NEGATIVE)[(i // 2) % 4]
            label = (2.0 + 0.2 * (i % 3)) if pos else -(2.0 + 0.2 * (i % 3))
            rows.append(
                {"video_id": f"v{k // 5}", "clip_id": k % 5, "text": text, "label": label, "mode": mode}
            )
            k += 1
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["video_id", "clip_id", "text", "label", "mode"])
        w.writeheader()
        w.writerows(rows)
    return path


def _no_abs_paths(obj, where="config.json"):
    if isinstance(obj, dict):
        for v in obj.values():
            _no_abs_paths(v, where)
    elif isinstance(obj, list):
        for v in obj:
            _no_abs_paths(v, where)
    elif isinstance(obj, str):
        assert not obj.startswith("/") and ":\\" not in obj and "/work/" not in obj, f"{where}: {obj!r}"


# ---- label CSV reading and tokenisation -------------------------------------------------------------
def test_read_label_csv_groups_and_errors(tmp_path):
    p = _write_csv(tmp_path / "l.csv", {"train": 4, "valid": 2, "test": 2})
    rows = read_label_csv(p)
    assert {k: len(v) for k, v in rows.items()} == {"train": 4, "valid": 2, "test": 2}
    assert rows["train"][0]["id"] == "v0$_$0" and rows["train"][1]["label"] < 0
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,clip_id,text,label\nv,1,hi,1\n")
    with pytest.raises(DataError, match=r"bad\.csv.*lacks column.*mode"):
        read_label_csv(bad)
    bad.write_text("video_id,clip_id,text,label,mode\nv,1,hi,abc,train\n")
    with pytest.raises(DataError, match="line 2: label 'abc' is not a number"):
        read_label_csv(bad)
    bad.write_text("video_id,clip_id,text,label,mode\nv,1,hi,1,dev\n")
    with pytest.raises(DataError, match="mode 'dev'"):
        read_label_csv(bad)
    with pytest.raises(DataError, match="not found"):
        read_label_csv(tmp_path / "missing.csv")


@pytest.mark.slow  # loads MiniLM + tokenizer (~5 s cold)
def test_tokens_match_text_encoder_and_splits_layout():
    from transformers import AutoTokenizer

    from dmd_pipeline.extractors.text import TextEncoder

    folder = text_encoder_dir()
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    texts = ["i dont know if fans of the comic would like it", "wow"]
    enc = TextEncoder()
    for max_len in (50, 6):  # 6: truncated, [SEP] re-attached
        ours = tokenize_utterances(tok, texts, max_len)
        for i, t in enumerate(texts):
            np.testing.assert_array_equal(ours[i], enc.encode(t.split(), max_len=max_len).text_bert)
    rows = {
        "train": [{"id": "a", "text": texts[0], "label": 1.0}, {"id": "b", "text": texts[1], "label": -1.0}]
    }
    split = build_text_only_splits(rows, folder, (12, 10, 8), (4, 5), text_features=True)["train"]
    assert split["text_bert"].shape == (2, 3, 12) and split["text"].shape == (2, 12, 384)
    assert split["audio"].shape == (2, 10, 4) and split["vision"].shape == (2, 8, 5)
    assert not split["audio"].any() and not split["vision"].any()
    assert np.all(split["text"][1, 3:] == 0) and np.abs(split["text"][1, :3]).sum() > 0  # [CLS] wow [SEP]


def test_bundled_encoder_reference_resolves():
    assert resolve_text_encoder(BUNDLED_TEXT_ENCODER) == text_encoder_dir()
    with pytest.raises(ModelFileError, match="unknown bundled text encoder"):
        resolve_text_encoder("bundled:bert-large")


# ---- CLI: train on a label CSV, evaluate ------------------------------------------------------------
@pytest.mark.slow  # a tiny DMD on frozen MiniLM features, 2 epochs + evaluate: ~10 s
def test_train_labels_frozen_features_then_evaluate(tmp_path):
    labels = _write_csv(tmp_path / "label.csv", {"train": 16, "valid": 4, "test": 6})
    out = tmp_path / "run"
    args = ["train", "--labels", str(labels), "--out", str(out), "--text-input", "features", "--epochs", "2"]
    args += ["--batch-size", "8", "--update-epochs", "1", "--device", "cpu", "--seed", "3", "--quiet", *TINY]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["modalities"] == ["text"] and meta["text_features_encoder"] == BUNDLED_TEXT_ENCODER
    assert meta["config"]["feature_dims"] == [384, 4, 5] and meta["config"]["use_bert"] is False
    assert meta["training_data"]["kind"] == "label-csv" and meta["training_time"]["seconds"] > 0
    res = runner.invoke(app, ["evaluate", "--model", str(out), "--labels", str(labels), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["split"] == "test" and payload["n"] == 6
    assert all(payload["metrics"][k] is not None for k in METRIC_KEYS)
    assert payload["metrics"]["MAE"] == pytest.approx(meta["metrics"]["test"]["MAE"], rel=1e-5)
    res = runner.invoke(app, ["evaluate", "--model", str(out), "--labels", str(labels), "--split", "valid"])
    assert res.exit_code == 0 and "valid (n=4)" in res.output
    for key in METRIC_KEYS:
        assert key in res.output
    res = runner.invoke(app, ["train", "--labels", str(labels), "--data", "x.pkl", "--out", str(out)])
    assert res.exit_code == 2 and "exactly one of" in res.output


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-d BertModel with the bundled MiniLM's tokenizer, saved as a local folder."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    src = text_encoder_dir()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, folder / name)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(cfg).save_pretrained(str(folder))
    return folder


@pytest.mark.slow  # tiny BERT inside a tiny DMD, top layer fine-tuned: ~8 s
def test_train_labels_finetune_top_layer_stores_only_that_layer(tmp_path, tiny_bert):
    from safetensors.torch import load_file

    labels = _write_csv(tmp_path / "label.csv", {"train": 16, "valid": 4, "test": 4})
    out = tmp_path / "run"
    args = ["train", "--labels", str(labels), "--out", str(out), "--text-encoder", str(tiny_bert)]
    args += ["--finetune-layers", "1", "--weights-dtype", "float16", "--set", "keep_dead_layers=false"]
    args += [
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--update-epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        *TINY,
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["use_bert"] is True and meta["config"]["feature_dims"] == [32, 4, 5]
    assert meta["text_encoder_base"]["finetune_layers"] == 1 and meta["weights_dtype"] == "float16"
    stored = load_file(str(out / "model.safetensors"))
    enc_keys = [k for k in stored if k.startswith(TEXT_MODEL_PREFIX)]
    assert enc_keys and all(k.startswith(TEXT_MODEL_PREFIX + "encoder.layer.1.") for k in enc_keys)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert not any(k.startswith("model.proj_cosine") for k in stored)
    system, _ = load_checkpoint(out)
    trainable = {
        n for n, p in system.named_parameters() if p.requires_grad and n.startswith(TEXT_MODEL_PREFIX)
    }
    assert trainable and all(".layer.1." in n for n in trainable)
    res = runner.invoke(app, ["evaluate", "--model", str(out), "--labels", str(labels), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] == 4
    # a different base encoder is refused (its sha256 differs from the recorded one)
    meta["text_encoder_base"]["sha256"] = "0" * 64
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="not the base this model was fine-tuned from"):
        load_checkpoint(out)


# ---- the bundled model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled():
    if not (BUNDLED / "model.safetensors").is_file():
        pytest.skip(f"no bundled model at {BUNDLED}")
    return load_checkpoint(BUNDLED)


def test_bundled_model_config_is_portable_and_checked(bundled):
    system, _ = bundled
    meta = json.loads((BUNDLED / "config.json").read_text())
    _no_abs_paths(meta)
    assert meta["modalities"] == ["text"] and meta["name"] == "mosi-text-minilm"
    if meta["config"]["use_bert"]:  # encoder inside: bundled symbolically, only fine-tuned layers stored
        assert meta["config"]["text_encoder"] == BUNDLED_TEXT_ENCODER
        assert meta["text_encoder_base"]["sha256"] == TEXT_ENCODER_SHA256["model.safetensors"]
    else:  # frozen features of the bundled encoder
        assert meta["text_features_encoder"] == BUNDLED_TEXT_ENCODER
        assert meta["config"]["feature_dims"][0] == 384
    assert not any(k.startswith("model.proj_cosine") for k in system.state_dict())
    from dmd_pipeline.utils import sha256_file

    assert sha256_file(BUNDLED / "model.safetensors") == meta["weights_sha256"]
    assert (BUNDLED / "model.safetensors").stat().st_size < 20 * 2**20
    for key in METRIC_KEYS:
        assert key in meta["metrics"]["test"] and key in meta["metrics"]["valid"]


def test_bundled_model_detects_corrupt_weights(tmp_path):
    if not (BUNDLED / "model.safetensors").is_file():
        pytest.skip(f"no bundled model at {BUNDLED}")
    copy = tmp_path / "m"
    shutil.copytree(BUNDLED, copy)
    meta = json.loads((copy / "config.json").read_text())
    meta["weights_sha256"] = "1" * 64
    (copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="recorded in config.json"):
        load_checkpoint(copy)


def test_bundled_model_ranks_sentiment(bundled):
    system, meta = bundled
    scores = predict_texts(system, meta, POSITIVE + NEGATIVE)[:, 0]
    pos, neg = scores[: len(POSITIVE)], scores[len(POSITIVE) :]
    assert pos.min() > neg.max(), scores
    assert pos.mean() > 0.5 and neg.mean() < -0.5


@pytest.mark.slow  # the whole CMU-MOSI test split (686 transcripts) through MiniLM + DMD: ~10 s
def test_bundled_model_by_name_reproduces_its_card_on_real_test_split(bundled, shared):
    label_csv = shared / "data" / "mosi" / "label.csv"
    res = runner.invoke(
        app, ["evaluate", "--model", "mosi-text-minilm", "--labels", str(label_csv), "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["n"] == 686 and payload["split"] == "test"
    m = payload["metrics"]
    assert m["Non0_acc_2"] > 0.75 and m["MAE"] < 1.0 and m["Corr"] > 0.6, m
    recorded = json.loads((BUNDLED / "config.json").read_text())["metrics"]["test"]
    for key in METRIC_KEYS:  # the model card's numbers are what `dmd evaluate` measures
        assert m[key] == pytest.approx(recorded[key], abs=2e-3), key
