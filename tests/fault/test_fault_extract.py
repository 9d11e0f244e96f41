"""``dmd extract`` under fire: label files pointing outside the input folder, a locked --out, a byte-identical
copy with its own (malformed) sidecar, stage tags that must survive rich markup."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.data.labels import read_labels
from dmd_pipeline.utils import output_lock

runner = CliRunner()


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_label_paths_outside_the_input_folder_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    for bad in ("../secret.wav", "../../etc/passwd", str(tmp_path / "secret.wav"), "sub/../../secret.wav"):
        _write_csv(src / "labels.csv", ["file", "label"], [["ok.wav", "1"], [bad, "0.5"]])
        res = runner.invoke(app, ["extract", str(src), "--out", str(tmp_path / "out"), "-q"])
        assert res.exit_code == 2, res.output
        assert "is outside the input folder" in res.output and "--allow-outside" in res.output, res.output
        assert "Traceback" not in res.output
        assert read_labels(src, allow_outside=True).items[1].media.name in ("secret.wav", "passwd")
    os.symlink(tmp_path / "secret.wav", src / "linked.wav")  # placed by the folder's owner: followed
    _write_csv(src / "labels.csv", ["file", "label"], [["linked.wav", "1"]])
    assert [it.id for it in read_labels(src, allow_outside=False).items] == ["linked"]


def test_a_second_extract_on_the_same_out_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _write_csv(src / "labels.csv", ["file", "label"], [["a.wav", "1"]])
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out, "dmd extract"):
        res = runner.invoke(app, ["extract", str(src), "--out", str(out), "-q"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {out}: in use by another dmd extract run (pid {os.getpid()}); wait for it to finish or "
        "choose another --out"
    )


def test_a_copy_with_its_own_sidecar_is_not_served_from_the_cache(tmp_path: Path, media) -> None:
    """clip.wav is extracted (and cached) first; copy.wav is byte-identical but its sidecar is malformed:
    the cache must not hand it clip's features, so its sidecar is read and the item fails, with its
    [stage] tag printed (not eaten as rich markup)."""
    src = tmp_path / "in"
    src.mkdir()
    speech = media.speech_wav("I loved every minute of it.").read_bytes()
    (src / "clip.wav").write_bytes(speech)
    (src / "clip.txt").write_text("I loved every minute of it.")
    (src / "copy.wav").write_bytes(speech)
    (src / "copy.json").write_text("{broken", encoding="utf-8")
    _write_csv(src / "labels.csv", ["file", "label", "split"], [["clip.wav", "1", "train"],
                                                             ["copy.wav", "-1", "train"]])  # fmt: skip
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["extract", str(src), "--out", str(out), "--asr", "none", "--cache-dir", str(tmp_path / "c"), "-q"],
    )
    assert res.exit_code == 1, res.output
    assert "[transcript]" in res.output and "copy.json: not valid JSON" in res.output, res.output
    rows = list(csv.DictReader((out / "errors.csv").read_text().splitlines()))
    assert [(r["id"], r["stage"]) for r in rows] == [("copy", "transcript")]
    assert rows[0]["reason"].startswith("copy.json: not valid JSON")
