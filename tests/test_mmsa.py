"""MMSA pickle reading (restricted unpickler), writing, and the datasets built from the splits."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from make_synthetic_mmsa import (
    ALIGNED_LENS,
    DIMS,
    UNALIGNED_LENS,
    make_splits,
    tiny_config,
    write_synthetic_pickle,
)

from dmd_pipeline.data.datasets import (
    dataset_from_arrays,
    dataset_from_split,
    fit_config_to_data,
    infer_num_classes,
    load_data_source,
)
from dmd_pipeline.data.mmsa import load_mmsa_pickle, restricted_loads, save_mmsa_pickle, sidecar_path
from dmd_pipeline.errors import ConfigError, DataError


@pytest.mark.parametrize("aligned", [True, False])
def test_load_synthetic_layout_and_neg_inf(tmp_path, aligned):
    path = write_synthetic_pickle(tmp_path / "data.pkl", aligned=aligned)
    raw = pickle.loads(path.read_bytes())  # our own trusted fixture: check it really holds -inf
    assert sum(int(np.isneginf(raw[s]["audio"]).sum()) for s in raw) > 0
    splits = load_mmsa_pickle(path)
    assert set(splits) == {"train", "valid", "test"}
    lens = ALIGNED_LENS if aligned else UNALIGNED_LENS
    for name, split in splits.items():
        n = len(split["regression_labels"])
        assert split["text"].shape == (n, lens[0], DIMS[0])
        assert split["audio"].shape == (n, lens[1], DIMS[1])
        assert split["vision"].shape == (n, lens[2], DIMS[2])
        assert split["text_bert"].shape == (n, 3, lens[0])
        for key in ("text", "audio", "vision"):
            assert split[key].dtype == np.float32
            assert np.isfinite(split[key]).all(), f"{name}/{key} still has non-finite values"
        # -inf became exactly 0 where it was, everything else untouched
        bad = np.isneginf(raw[name]["audio"])
        assert np.all(split["audio"][bad] == 0)
        np.testing.assert_array_equal(split["audio"][~bad], raw[name]["audio"][~bad])
        assert list(split["id"]) == list(raw[name]["id"])


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    splits = make_splits(4, 2, 2)
    splits["train"]["raw_text"] = _Evil(str(marker))
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(splits, protocol=4))
    with pytest.raises(DataError) as err:
        load_mmsa_pickle(path)
    msg = str(err.value)
    assert str(path) in msg and "system" in msg  # names the file and the class asked for
    assert not marker.exists()


@pytest.mark.parametrize("payload", [(eval, ("1+1",)), (os.getcwd, ()), (pickle.loads, (b"N.",))])
def test_other_globals_refused(payload):
    class Obj:
        def __reduce__(self):
            return payload

    with pytest.raises(DataError, match="refusing to unpickle"):
        restricted_loads(pickle.dumps({"x": Obj()}, protocol=2), "x.pkl")


def test_numpy_pickles_of_all_protocols_load():
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.array(["x", "y"], dtype=object)}
    obj["n"], obj["l"], obj["b"] = np.int64(3), [np.float32(1.5), 2], b"\x00\xff"
    for proto in (2, 3, 4, 5):
        got = restricted_loads(pickle.dumps(obj, protocol=proto))
        np.testing.assert_array_equal(got["a"], obj["a"])
        assert list(got["s"]) == ["x", "y"] and got["n"] == 3 and got["b"] == b"\x00\xff"


def test_corrupt_and_malformed_files(tmp_path):
    path = write_synthetic_pickle(tmp_path / "d.pkl")
    trunc = tmp_path / "trunc.pkl"
    trunc.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="trunc.pkl"):
        load_mmsa_pickle(trunc)
    splits = make_splits(4, 2, 2)
    del splits["valid"]
    bad = tmp_path / "nosplit.pkl"
    bad.write_bytes(pickle.dumps(splits))
    with pytest.raises(DataError, match="missing split"):
        load_mmsa_pickle(bad)
    splits = make_splits(4, 2, 2)
    splits["test"]["audio"] = splits["test"]["audio"][:1]
    bad.write_bytes(pickle.dumps(splits))
    with pytest.raises(DataError, match="'audio' has 1 rows"):
        load_mmsa_pickle(bad)
    with pytest.raises(DataError, match="not found"):
        load_mmsa_pickle(tmp_path / "missing.pkl")


def test_save_roundtrip_and_sidecar(tmp_path):
    splits = make_splits(6, 3, 3, aligned=False)
    path = tmp_path / "out" / "unaligned_50.pkl"
    save_mmsa_pickle(path, splits, meta={"extractor": "test"})
    back = load_mmsa_pickle(path)
    for name in splits:
        for key in ("text", "text_bert", "vision", "regression_labels"):
            np.testing.assert_array_equal(back[name][key], splits[name][key])
        assert list(back[name]["raw_text"]) == list(splits[name]["raw_text"])
    side = json.loads(sidecar_path(path).read_text())
    assert side["feature_dims"] == list(DIMS) and side["seq_lens"] == list(UNALIGNED_LENS)
    assert side["splits"]["train"]["n"] == 6 and side["meta"] == {"extractor": "test"}
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temp file


def test_save_refuses_arbitrary_objects(tmp_path):
    splits = make_splits(4, 2, 2)
    splits["train"]["id"] = [object()] * 4
    with pytest.raises(DataError, match="cannot save a object"):
        save_mmsa_pickle(tmp_path / "x.pkl", splits)
    assert not (tmp_path / "x.pkl").exists()


def test_dataset_items_and_text_choice(tmp_path):
    splits = load_mmsa_pickle(write_synthetic_pickle(tmp_path / "d.pkl"))
    cfg = tiny_config()
    ds = dataset_from_split(cfg, splits["train"], "train")
    text, audio, vision, label = ds[0]
    assert text.shape == (ALIGNED_LENS[0], DIMS[0]) and text.dtype == torch.float32
    assert audio.shape == (ALIGNED_LENS[1], DIMS[1]) and vision.shape == (ALIGNED_LENS[2], DIMS[2])
    assert label.shape == (1,) and float(label) == pytest.approx(
        float(splits["train"]["regression_labels"][0])
    )
    bert = dataset_from_split(tiny_config(use_bert=True, text_encoder="unused"), splits["train"], "train")
    assert bert[0][0].shape == (3, ALIGNED_LENS[0]) and bert[0][0].dtype == torch.int64
    assert int(bert[0][0][0, 0]) == 101
    n_cls = infer_num_classes(splits)
    assert n_cls == 3
    cls = dataset_from_split(tiny_config(num_classes=3), splits["valid"], "valid")
    assert cls[0][3].dtype == torch.int64 and cls[0][3].shape == ()


def test_dims_mismatch_is_a_config_error(tmp_path):
    splits = load_mmsa_pickle(write_synthetic_pickle(tmp_path / "d.pkl"))
    with pytest.raises(ConfigError, match=r"audio shape .* != \(seq_len 12, dim 74\)"):
        dataset_from_split(tiny_config(feature_dims=(16, 74, 7)), splits["train"], "train")
    with pytest.raises(ConfigError, match="seq_len 50"):
        dataset_from_split(tiny_config(seq_lens=(50, 12, 12)), splits["train"], "train")
    with pytest.raises(ConfigError, match="class labels span"):
        dataset_from_split(tiny_config(num_classes=2), splits["train"], "train")


def test_fit_config_to_data_and_arrays(tmp_path):
    source = load_data_source(write_synthetic_pickle(tmp_path / "d.pkl", aligned=False))
    from dmd_pipeline.config import get_preset

    cfg, notes = fit_config_to_data(get_preset("mosei_unaligned"), source.splits)
    assert cfg.feature_dims == DIMS and cfg.seq_lens == UNALIGNED_LENS
    assert any("feature_dims" in n for n in notes) and any("seq_lens" in n for n in notes)
    assert len(source.sha256) == 64 and source.kind == "mmsa"
    n = 5
    ds = dataset_from_arrays(
        cfg,
        np.zeros((n, *cfg.seq_lens[:1], cfg.feature_dims[0])),
        np.zeros((n, cfg.seq_lens[1], cfg.feature_dims[1])),
        np.zeros((n, cfg.seq_lens[2], cfg.feature_dims[2])),
        np.linspace(-3, 3, n),
    )
    assert len(ds) == n and ds[4][3].item() == pytest.approx(3.0)
