"""The supervised local executor with toy tasks: dead workers, retries, limits, broken set-up, orphans."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import as_completed
from pathlib import Path

import fault_tasks
import pytest
from fault_helpers import FAULT_DIR, alive, cli_env, kill_tree, wait_for

from dmd_pipeline.executor import LocalExecutor, WorkerLost, rss_mb, total_memory_mb


def _run(ex: LocalExecutor, items: list) -> dict:
    futs = {ex.submit(item): i for i, item in enumerate(items)}
    out = {}
    for fu in as_completed(futs, timeout=120):
        try:
            out[futs[fu]] = fu.result()
        except Exception as exc:
            out[futs[fu]] = exc
    return out


def test_a_dead_worker_fails_only_its_item_and_is_retried_on_a_fresh_one(tmp_path: Path) -> None:
    marker = tmp_path / "flaky.marker"
    items = [("ok", 0), ("die", 1), ("ok", 2), ("flaky", str(marker)), ("ok", 3), ("raise", 4), ("ok", 5)]
    with LocalExecutor(fault_tasks.work, 2, initializer=fault_tasks.init, initargs=("t",)) as ex:
        got = _run(ex, items)
        pids = set(ex.worker_pids)
    assert [got[i][0] for i in (0, 2, 4, 6)] == ["ok:0", "ok:2", "ok:3", "ok:5"]
    assert isinstance(got[1], WorkerLost) and got[1].kind == "died"
    assert str(got[1]) == "worker killed by SIGKILL (out of memory?) (also on the retry)"
    assert got[3][0].startswith("flaky:"), got[3]  # killed once, then done on a fresh worker
    assert got[3][1] != int(marker.read_text()), "the retry ran on the worker that died"
    assert isinstance(got[5], ValueError) and str(got[5]) == "bad item 4"  # an exception is not a crash
    # two workers + a fresh worker for each retry (die, flaky); replacements for the ordinary items are
    # started on demand, so one more may or may not have been needed by the time the block ends
    assert 2 + 2 <= len(pids) <= 2 + 3
    wait_for(lambda: not any(alive(p) for p in pids), 10, "every worker to exit after the block")


def test_per_item_time_and_memory_limits(tmp_path: Path) -> None:
    with LocalExecutor(fault_tasks.work, 2, file_timeout=1.0, max_rss_mb=None) as ex:
        got = _run(ex, [("hang", 0), ("ok", 1)])
    assert isinstance(got[0], WorkerLost) and got[0].kind == "timeout"
    assert str(got[0]) == "timed out after 1 s (--file-timeout)"
    assert got[1][0] == "ok:1"

    if total_memory_mb() is None or rss_mb(1) is None:
        pytest.skip("no /proc memory information here")
    limit = 400.0  # an idle toy worker is ~20 MiB; the hog item asks for 1.2 GiB
    with LocalExecutor(fault_tasks.work, 1, max_rss_mb=limit) as ex:
        got = _run(ex, [("hog", 12), ("ok", 2)])
    assert isinstance(got[0], WorkerLost) and got[0].kind == "memory", got[0]
    assert str(got[0]).startswith("worker used ") and "over the --max-rss limit of 400 MiB" in str(got[0])
    assert got[1][0] == "ok:2"  # the next item runs on a fresh worker


def test_a_failing_initializer_fails_every_item_at_once() -> None:
    with LocalExecutor(fault_tasks.work, 2, initializer=fault_tasks.bad_init, initargs=("x",)) as ex:
        got = _run(ex, [("ok", i) for i in range(4)])
        n_started = len(ex.worker_pids)
    assert all(isinstance(v, RuntimeError) and "cannot load the model (x)" in str(v) for v in got.values())
    assert n_started <= 2  # no restart loop


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    """kill -9 of the driver: PR_SET_PDEATHSIG (and the parent watchdog) take the busy workers down."""
    pid_file = tmp_path / "pids"
    proc = subprocess.Popen(
        [sys.executable, str(FAULT_DIR / "fault_tasks.py"), str(pid_file)],
        env=cli_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(pid_file.is_file, 60, "the driver's worker pids", proc)
        pids = [int(p) for p in pid_file.read_text().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        proc.kill()  # the driver only, not its process group
        proc.wait(timeout=10)
        wait_for(lambda: not any(alive(p) for p in pids), 10, "the orphaned workers to exit")
    finally:
        kill_tree(proc)


def test_an_item_s_own_time_limit_replaces_the_file_timeout() -> None:
    # dmd serve gives each job a limit proportional to its media's duration
    with LocalExecutor(fault_tasks.work, 2, file_timeout=None, max_rss_mb=None) as ex:
        hang = ex.submit(("hang", 0), timeout=1.0)
        ok = ex.submit(("ok", 1), timeout=60.0)
        with pytest.raises(WorkerLost) as info:
            hang.result(timeout=60)
        assert ok.result(timeout=60)[0] == "ok:1"
    assert info.value.kind == "timeout" and str(info.value) == "timed out after 1 s (the item's time limit)"
