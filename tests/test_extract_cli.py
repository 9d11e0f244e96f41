"""Label-file readers and the `dmd extract` command end to end (real clips from ../shared/data/clips)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.data.labels import deterministic_splits, read_labels
from dmd_pipeline.errors import DataError

runner = CliRunner()


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------ label readers


def test_mmsa_layout_finds_any_media_extension(tmp_path) -> None:
    (tmp_path / "Raw" / "vidA").mkdir(parents=True)
    (tmp_path / "Raw" / "vidA" / "1.flv").write_bytes(b"x")
    (tmp_path / "Raw" / "vidA" / "2.mp4").write_bytes(b"x")
    _write_csv(
        tmp_path / "label.csv",
        ["video_id", "clip_id", "text", "label", "annotation", "mode"],
        [["vidA", 1, "great film", 2.2, "Positive", "train"], ["vidA", 2, "bad", -1.5, "Negative", "test"]],
    )
    ls = read_labels(tmp_path)
    assert ls.layout == "mmsa" and ls.task == "regression"
    a, b = ls.items
    assert a.media.name == "1.flv" and b.media.name == "2.mp4"
    assert a.id == "vidA$_$1" and a.transcript == "great film" and a.label == 2.2 and a.split == "train"
    assert b.split == "test" and a.start is None


def test_mosi_shared_label_file(shared) -> None:
    ls = read_labels(shared / "data" / "mosi", shared / "data" / "mosi" / "label.csv")
    assert ls.layout == "mosi" and ls.task == "regression" and len(ls.items) == 2197
    assert ls.split_counts() == {"train": 1282, "valid": 229, "test": 686}
    first = ls.items[0]
    assert first.id == "_dI--eQ6qVU$_$1" and first.start == pytest.approx(27.87913832)
    assert first.end > first.start and first.transcript.startswith("but i can safely")
    assert first.media.name == "_dI--eQ6qVU.mp4"  # expected place of the full video (Raw/<video_id>.<ext>)
    assert all(-3.0 <= it.label <= 3.0 for it in ls.items)


def test_mosi_layout_full_videos_with_segment_times(tmp_path) -> None:
    (tmp_path / "Raw").mkdir()
    (tmp_path / "Raw" / "v1.mkv").write_bytes(b"x")
    (tmp_path / "v2.avi").write_bytes(b"x")
    _write_csv(
        tmp_path / "label.csv",
        ["video_id", "clip_id", "text", "label", "mode", "start", "end"],
        [["v1", 1, "a", 1.0, "train", 1.5, 3.0], ["v2", 4, "b", -1.0, "valid", 0.0, 2.0]],
    )
    ls = read_labels(tmp_path, layout="mosi")
    assert [it.media.name for it in ls.items] == ["v1.mkv", "v2.avi"]
    assert (ls.items[0].start, ls.items[0].end) == (1.5, 3.0)


def test_folder_layout_shared_clips(shared_clips) -> None:
    # The file mixes 2 CMU-MOSI scores with 6 CREMA-D emotions: auto keeps the larger, categorical kind.
    ls = read_labels(shared_clips, shared_clips / "labels.csv")
    assert ls.layout == "folder" and ls.task == "classification" and len(ls.items) == 6
    assert ls.class_names == ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    assert sorted(i for i, _ in ls.skipped) == ["0h-zjBukYpk_1", "Sqr0AcuoNnk_12"]
    assert all(it.media.is_file() for it in ls.items)
    assert ls.items[0].transcript == "Don't forget a jacket"
    counts = ls.split_counts()  # no split column -> deterministic 70/15/15 with >= 1 valid and test
    assert counts["valid"] >= 1 and counts["test"] >= 1 and sum(counts.values()) == 6
    assert ls.class_index("anger") == ls.class_names.index("anger") and ls.class_index("nope") == -1
    assert np.isnan(ls.regression_value("anger")) and ls.regression_value("2.0") == 2.0
    reg = read_labels(shared_clips, shared_clips / "labels.csv", task="regression")
    assert reg.task == "regression" and sorted(it.label for it in reg.items) == [-0.4, 2.0]
    assert len(reg.skipped) == 6 and reg.class_names == []


def test_deterministic_split_ignores_row_order() -> None:
    ids = [f"clip{i}" for i in range(20)]
    a = deterministic_splits(ids)
    b = deterministic_splits(list(reversed(ids)))
    assert a == b
    assert sorted(a.values()).count("test") == 3 and sorted(a.values()).count("valid") == 3


def test_folder_layout_numeric_labels_and_split_column(tmp_path) -> None:
    _write_csv(
        tmp_path / "labels.csv",
        ["file", "label", "split"],
        [["a.wav", "0.5", "train"], ["b.wav", "-2", "dev"]],
    )
    ls = read_labels(tmp_path)
    assert ls.task == "regression" and [it.label for it in ls.items] == [0.5, -2.0]
    assert [it.split for it in ls.items] == ["train", "valid"]


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        (["file", "score"], [["a.mp4", "1"]], "missing column.*'label'"),
        (["name", "label"], [["a.mp4", "1"]], "missing column 'file'"),
        (["file", "label", "split"], [["a.mp4", "1", "holdout"]], "unknown split"),
        (["file", "label"], [], "no rows"),
    ],
)
def test_malformed_csv_names_file_and_problem(tmp_path, header, rows, match) -> None:
    path = _write_csv(tmp_path / "mine.csv", header, rows)
    with pytest.raises(DataError, match=match) as info:
        read_labels(tmp_path, path)
    assert "mine.csv" in str(info.value)


def test_mmsa_missing_column(tmp_path) -> None:
    _write_csv(tmp_path / "label.csv", ["video_id", "clip_id", "text"], [["v", "1", "t"]])
    with pytest.raises(DataError, match="'label'"):
        read_labels(tmp_path, layout="mmsa")


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One feature cache for the whole session: each real clip is extracted once."""
    return tmp_path_factory.mktemp("dmd_cache")


@pytest.fixture(scope="session")
def clips_run(shared_clips, cache_dir, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("extract_clips")
    res = runner.invoke(
        app,
        ["extract", str(shared_clips), "--labels", str(shared_clips / "labels.csv"), "--out", str(out),
         "--asr", "none", "--cache-dir", str(cache_dir)],
    )  # fmt: skip
    return out, res


def _link_folder(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dst / n).symlink_to(src / n)
    return dst


@pytest.mark.slow
def test_extract_shared_clips_to_mmsa_pickle(clips_run) -> None:
    from dmd_pipeline.data.mmsa import load_mmsa_pickle, read_sidecar

    out, res = clips_run
    assert res.exit_code == 0, res.output
    pkl = out / "aligned_50.pkl"
    data = load_mmsa_pickle(pkl)
    n = sum(len(data[s]["id"]) for s in ("train", "valid", "test"))
    assert n == 6  # the 6 CREMA-D emotion clips; the 2 numeric MOSI rows are listed as skipped
    tr = data["train"]
    assert tr["text"].shape[1:] == (50, 384) and tr["text_bert"].shape[1:] == (3, 50)
    assert tr["audio"].shape[1] == 50 and tr["vision"].shape[1] == 50
    assert np.isfinite(tr["audio"]).all() and np.isfinite(tr["vision"]).all()
    assert (tr["audio_lengths"] > 2).all() and tr["audio"].any(axis=(1, 2)).all()
    assert tr["vision"][:, :, 0].max() == 1.0  # face_present on real faces
    side = read_sidecar(pkl)["meta"]
    names = side["class_names"]
    assert side["task"] == "classification" and "anger" in names
    labels = {i: c for s in data.values() for i, c in zip(s["id"], s["classification_labels"], strict=True)}
    assert names[labels["1001_DFA_ANG_XX"]] == "anger"
    assert side["feature_spec"]["dims"] == {
        "text": 384,
        "audio": tr["audio"].shape[2],
        "vision": tr["vision"].shape[2],
    }
    assert len(side["feature_spec"]["names"]["vision"]) == tr["vision"].shape[2]
    assert (out / "errors.csv").read_text().strip() == "id,file,stage,reason"
    assert len(list((out / "items").glob("*.npz"))) == 6
    assert {d["id"] for d in side["skipped"]} == {"0h-zjBukYpk_1", "Sqr0AcuoNnk_12"}


@pytest.mark.slow
def test_extracted_pickle_trains_one_epoch(clips_run, tmp_path) -> None:
    out, res = clips_run
    assert res.exit_code == 0, res.output
    run = runner.invoke(
        app,
        ["train", "--data", str(out / "aligned_50.pkl"), "--out", str(tmp_path / "run"), "--epochs", "1",
         "--num-classes", "auto", "--batch-size", "4", "-q"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.slow
def test_rerun_is_free_and_force_reextracts_from_cache(clips_run, shared_clips, cache_dir) -> None:
    out, res = clips_run
    assert res.exit_code == 0, res.output
    again = runner.invoke(
        app,
        ["extract", str(shared_clips), "--labels", str(shared_clips / "labels.csv"), "--out", str(out),
         "--asr", "none", "--cache-dir", str(cache_dir)],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "6 already extracted, 0 to go" in again.output


@pytest.mark.slow
def test_bad_file_is_reported_and_the_rest_finishes(shared_clips, cache_dir, tmp_path) -> None:
    src = _link_folder(shared_clips, tmp_path / "in", ["1001_DFA_ANG_XX.flv", "Sqr0AcuoNnk_12.mp4"])
    (src / "broken.mp4").write_bytes(b"")
    _write_csv(
        src / "labels.csv",
        ["file", "transcript", "label"],
        [["1001_DFA_ANG_XX.flv", "Don't forget a jacket", "anger"], ["broken.mp4", "x", "joy"],
         ["Sqr0AcuoNnk_12.mp4", "and he is one of my favorite actors ever", "neutral"]],
    )  # fmt: skip
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["extract", str(src), "--out", str(out), "--asr", "none", "--cache-dir", str(cache_dir), "-q"]
    )
    assert res.exit_code == 1, res.output
    assert "broken.mp4" in res.output and "already extracted" not in res.output  # -q: errors only
    rows = list(csv.DictReader((out / "errors.csv").read_text().splitlines()))
    assert len(rows) == 1 and rows[0]["file"].endswith("broken.mp4") and rows[0]["stage"] == "probe"
    assert "empty" in rows[0]["reason"]
    from dmd_pipeline.data.mmsa import load_mmsa_pickle

    data = load_mmsa_pickle(out / "aligned_50.pkl")
    ids = [i for s in data.values() for i in s["id"]]
    assert sorted(ids) == ["1001_DFA_ANG_XX", "Sqr0AcuoNnk_12"]


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_duplicating(
    shared_clips, cache_dir, tmp_path, monkeypatch
) -> None:
    from dmd_pipeline.pipeline import Extractor

    names = ["1001_DFA_ANG_XX.flv", "1001_DFA_DIS_XX.flv", "1001_DFA_FEA_XX.flv", "0h-zjBukYpk_1.mp4"]
    src = _link_folder(shared_clips, tmp_path / "in", names)
    _write_csv(src / "labels.csv", ["file", "label"], [[n, str(i * 0.5)] for i, n in enumerate(names)])
    shutil.copy(shared_clips / "labels.csv", tmp_path / "unused.csv")
    real = Extractor.extract_clip
    calls: list[str] = []

    def dying(self, path, *a, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed while working on the third item
        calls.append(Path(path).name)
        return real(self, path, *a, **kw)

    out = tmp_path / "out"
    args = [
        "extract",
        str(src),
        "--out",
        str(out),
        "--asr",
        "none",
        "--cache-dir",
        str(cache_dir),
        "--unaligned",
    ]
    monkeypatch.setattr(Extractor, "extract_clip", dying)
    first = runner.invoke(app, args)
    assert first.exit_code != 0
    assert len(list((out / "items").glob("*.npz"))) == 2 and not (out / "unaligned_50.pkl").exists()

    def counting(self, path, *a, **kw):
        calls.append(Path(path).name)
        return real(self, path, *a, **kw)

    monkeypatch.setattr(Extractor, "extract_clip", counting)
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert len(calls) == 4 and sorted(calls) == sorted(names)  # the resumed run did only the other two
    from dmd_pipeline.data.mmsa import load_mmsa_pickle

    data = load_mmsa_pickle(out / "unaligned_50.pkl")
    ids = [i for s in data.values() for i in s["id"]]
    assert sorted(ids) == sorted(Path(n).stem for n in names)  # each item exactly once
    assert data["train"]["audio"].shape[1:2] == (375,) and data["train"]["vision"].shape[1] == 500
    lens = np.concatenate([data[s]["vision_lengths"] for s in data])
    assert (lens > 10).all() and (lens <= 500).all()
    side = json.loads((out / "unaligned_50.pkl.json").read_text())
    assert side["meta"]["task"] == "regression" and side["meta"]["aligned"] is False


def test_usage_errors_exit_2(tmp_path) -> None:
    res = runner.invoke(app, ["extract", str(tmp_path), "--out", str(tmp_path / "o"), "--layout", "weird"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["extract", str(tmp_path), "--out", str(tmp_path / "o")])  # no label file
    assert res.exit_code == 2 and "label" in res.output
    _write_csv(tmp_path / "labels.csv", ["file", "score"], [["a.mp4", "1"]])
    res = runner.invoke(app, ["extract", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "labels.csv" in res.output and "'label'" in res.output


@pytest.mark.slow
def test_mosi_layout_cuts_segments_from_full_videos(shared_clips, cache_dir, tmp_path) -> None:
    from dmd_pipeline.data.mmsa import load_mmsa_pickle

    (tmp_path / "Raw").mkdir()
    (tmp_path / "Raw" / "longvid.mp4").symlink_to(shared_clips / "0h-zjBukYpk_1.mp4")
    _write_csv(
        tmp_path / "label.csv",
        ["video_id", "clip_id", "text", "label", "annotation", "mode", "start", "end"],
        [["longvid", 1, "now the title of the movie", -0.4, "Negative", "train", 0.0, 1.3],
         ["longvid", 2, "basically says it all", 0.2, "Positive", "test", 1.3, 2.4]],
    )  # fmt: skip
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["extract", str(tmp_path), "--out", str(out), "--asr", "none", "--cache-dir", str(cache_dir)]
    )
    assert res.exit_code == 0, res.output
    assert "mosi layout" in res.output
    data = load_mmsa_pickle(out / "aligned_50.pkl")
    assert data["train"]["id"] == ["longvid$_$1"] and data["test"]["id"] == ["longvid$_$2"]
    assert data["train"]["raw_text"] == ["now the title of the movie"]
    assert data["test"]["regression_labels"][0] == pytest.approx(0.2)
    assert 0 < data["test"]["text_bert"][0, 1].sum() < data["train"]["text_bert"][0, 1].sum()


@pytest.mark.slow
def test_worker_processes_produce_the_same_items(clips_run, shared_clips, cache_dir, tmp_path) -> None:
    from dmd_pipeline.data.extract import item_key, read_item

    out, res = clips_run
    assert res.exit_code == 0, res.output
    names = ["1001_DFA_NEU_XX.flv", "1001_DFA_HAP_XX.flv"]
    src = _link_folder(shared_clips, tmp_path / "in", names)
    given = {
        r["file"]: r["transcript"]
        for r in csv.DictReader((shared_clips / "labels.csv").read_text().splitlines())
    }
    _write_csv(src / "labels.csv", ["file", "label", "transcript"], [[n, "1.0", given[n]] for n in names])
    par = runner.invoke(
        app,
        ["extract", str(src), "--out", str(tmp_path / "out"), "--asr", "none", "--cache-dir", str(cache_dir),
         "--workers", "2"],
    )  # fmt: skip
    assert par.exit_code == 0, par.output
    for n in names:
        stem = Path(n).stem
        mine, meta = read_item(tmp_path / "out" / "items" / f"{item_key(stem)}.npz")
        ref, _ = read_item(out / "items" / f"{item_key(stem)}.npz")
        assert meta["cache_hit"] is True  # the spawned workers read the shared cache
        for k in ("text", "audio", "vision"):
            np.testing.assert_array_equal(mine[k], ref[k])
