"""``dmd analyze --workers 2`` under fire: workers killed (by us or by themselves), memory hogs, a killed
driver (no orphans), a second run on the same --out (locked)."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

from fault_helpers import (
    CRASHY_CLI,
    alive,
    no_temp_files,
    silent_folder,
    start_cli,
    wait_for,
    worker_pids,
)

from dmd_pipeline.analysis.result import validate_result


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _status(out: Path) -> dict[str, str]:
    return {Path(r["file"]).name: r["status"] for r in _rows(out / "summary.csv")}


def test_crashing_and_hogging_files_fail_alone(tmp_path: Path, media, tiny_model, procs) -> None:
    """A file whose worker always dies is retried once on a fresh worker, then recorded; one that goes over
    --max-rss fails with the reason; every other file is analysed. (A worker that dies once and succeeds on
    the retry: test_a_worker_killed_from_outside_loses_no_file and the executor tests.)"""
    src = tmp_path / "in"
    good = [f"clip{i}.wav" for i in range(3)]
    silent_folder(media, src, [*good, "hog.wav", "poison.wav"])
    out = tmp_path / "out"
    args = ["analyze", str(src), "--model", str(tiny_model), "--out", str(out), "--asr", "none"]
    proc = start_cli([*args, "--workers", "2", "--max-rss", "2500", "-q"], script=CRASHY_CLI)
    procs.append(proc)
    output, _ = proc.communicate(timeout=150)
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    errors = {Path(r["file"]).name: r for r in _rows(out / "errors.csv")}
    assert set(errors) == {"poison.wav", "hog.wav"}, errors
    assert errors["poison.wav"]["stage"] == "worker"
    assert errors["poison.wav"]["reason"] == "worker killed by SIGKILL (out of memory?) (also on the retry)"
    assert errors["hog.wav"]["stage"] == "worker"
    assert errors["hog.wav"]["reason"].startswith("worker used ")
    assert errors["hog.wav"]["reason"].endswith("over the --max-rss limit of 2500 MiB")
    status = _status(out)
    assert status == {**dict.fromkeys(good, "ok"), "poison.wav": "failed", "hog.wav": "failed"}
    for name in good:
        assert validate_result(json.loads((out / name.replace(".wav", ".json")).read_text())) == []
    assert not (out / "poison.json").exists() and not (out / "hog.json").exists()
    assert not no_temp_files(out)


def test_a_worker_killed_from_outside_loses_no_file(tmp_path: Path, media, tiny_model, procs) -> None:
    """kill -9 of one worker mid-batch: its file is redone on a fresh worker; all files succeed."""
    src = tmp_path / "in"
    names = [f"clip{i}.wav" for i in range(8)]
    silent_folder(media, src, names)
    out = tmp_path / "out"
    proc = start_cli(
        [
            "analyze",
            str(src),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--asr",
            "none",
            "--workers",
            "2",
        ]
    )
    procs.append(proc)
    wait_for(lambda: list(out.glob("clip*.json")), 120, "a first result", proc)
    victims = wait_for(lambda: worker_pids(proc.pid), 10, "a live worker", proc)
    os.kill(victims[0], signal.SIGKILL)
    output, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, output
    assert _rows(out / "errors.csv") == []
    assert _status(out) == dict.fromkeys(names, "ok")
    assert not alive(victims[0]) and not no_temp_files(out)


def test_killed_driver_leaves_no_orphans_and_its_lock_goes_with_it(
    tmp_path: Path, media, tiny_model, procs
) -> None:
    """While a run holds --out, a second run refuses (exit 2, one line). kill -9 of the first run's main
    process: its workers (both busy) exit on their own, no temp file stays, and --out is usable again."""
    src = tmp_path / "in"
    silent_folder(media, src, ["a0.wav", "hang1.wav", "hang2.wav"])
    out = tmp_path / "out"
    base = ["analyze", "--model", str(tiny_model), "--out", str(out), "--asr", "none"]
    first = start_cli([*base[:1], str(src), *base[1:], "--workers", "2"], script=CRASHY_CLI)
    procs.append(first)
    wait_for(lambda: (out / "a0.json").is_file(), 120, "the first result", first)
    workers = wait_for(lambda: worker_pids(first.pid) if len(worker_pids(first.pid)) == 2 else None, 20,
                       "two workers", first)  # fmt: skip

    second = start_cli([*base[:1], str(src / "a0.wav"), *base[1:]])
    procs.append(second)
    output, _ = second.communicate(timeout=60)
    assert second.returncode == 2, output
    assert f"in use by another dmd analyze run (pid {first.pid})" in output and "Traceback" not in output

    first.kill()  # the main process only
    first.wait(timeout=10)
    wait_for(lambda: not any(alive(p) for p in workers), 15, "the orphaned workers to exit")
    assert not no_temp_files(out)

    third = start_cli([*base[:1], str(src / "a0.wav"), *base[1:], "-q"])
    procs.append(third)
    output, _ = third.communicate(timeout=60)
    assert third.returncode == 0, output  # the lock died with its holder; a0 is already done


def test_file_timeout_through_the_cli(tmp_path: Path, media, tiny_model, procs) -> None:
    """--file-timeout alone puts even one worker under supervision: a hanging file fails with the reason."""
    src = tmp_path / "in"
    silent_folder(media, src, ["hang.wav"])
    out = tmp_path / "out"
    args = ["analyze", str(src), "--model", str(tiny_model), "--out", str(out), "--asr", "none"]
    proc = start_cli([*args, "--file-timeout", "3", "-q"], script=CRASHY_CLI)
    procs.append(proc)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    assert [(Path(r["file"]).name, r["stage"], r["reason"]) for r in _rows(out / "errors.csv")] == [
        ("hang.wav", "worker", "timed out after 3 s (--file-timeout)")
    ]
