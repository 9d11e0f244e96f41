"""``--engine ray``: the Ray executor and ``dmd analyze --engine ray`` on a real local Ray cluster.

One Ray instance (2 CPUs, no dashboard, a 100 MiB object store) is started in this process for the
module; the ``dmd analyze`` drivers run as subprocesses that join it with ``--address`` (as on a real
cluster), and this process finds their actors by name to kill one. The import test and the option checks
need no Ray. Real clips come from ``../shared/data/clips`` (skipped with a reason when absent).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from media_factory import MediaFactory, session_factory
from typer.testing import CliRunner

from dmd_pipeline.analysis.result import validate_result
from dmd_pipeline.cli.app import app
from dmd_pipeline.utils import REPO_ROOT

CLIPS = ("0h-zjBukYpk_1.mp4", "1001_DFA_ANG_XX.flv", "Sqr0AcuoNnk_12.mp4")  # short (2.2-2.5 s)


# ---- helpers ------------------------------------------------------------------------------------------------
def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _start(args: list[str]) -> subprocess.Popen:
    """``dmd ARGS`` as a subprocess (its own session), stdout+stderr captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "dmd_pipeline.cli.app", *args],
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _dmd(args: list[str], timeout: float = 150) -> tuple[int, str]:
    proc = _start(args)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out


def _wait_for(
    cond: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended ({proc.returncode}) before {what}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _temps(out: Path) -> list[Path]:
    return list(out.rglob(".*.tmp"))


def _floats_differ(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Paths where two result documents differ: floats by more than 1e-6, anything else at all (the
    run's timings and creation time excepted)."""
    if path in ("/timings", "/created_at"):
        return
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            yield f"{path}: keys {sorted(set(a) ^ set(b))}"
            return
        for k in a:
            yield from _floats_differ(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} vs {len(b)} items"
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _floats_differ(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-6):
            yield f"{path}: {a!r} vs {b!r}"
    elif a != b:
        yield f"{path}: {a!r} vs {b!r}"


def _tiny_model(out: Path) -> Path:
    """An untrained, small text-only DMD checkpoint (cheap to load in every actor)."""
    import torch

    from dmd_pipeline.config import get_preset
    from dmd_pipeline.models import DMDSystem
    from dmd_pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = get_preset("mosi_aligned", feature_dims=(384, 25, 66), dst_feature_dim=12, nheads=2, nlevels=1)
    save_checkpoint(out, DMDSystem(cfg), {"modalities": ["text"], "task": "regression"})
    return out


# ---- no Ray needed ----------------------------------------------------------------------------------------
def test_the_core_never_imports_ray() -> None:
    """``import dmd_pipeline.cli.app`` and the analysis/extract/executor modules leave Ray unimported."""
    code = (
        "import sys\n"
        "import dmd_pipeline, dmd_pipeline.cli.app, dmd_pipeline.analysis.batch, dmd_pipeline.analysis.analyze\n"
        "import dmd_pipeline.cli.extract, dmd_pipeline.cli.engine, dmd_pipeline.executor\n"
        "import dmd_pipeline.ray_executor\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=REPO_ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_engine_options_of_the_other_engine_are_usage_errors(tmp_path: Path, monkeypatch) -> None:
    """Ray options with the local engine, -j with Ray, and Ray missing: exit 2 with a clear line."""
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")  # never read: the options are checked first
    runner = CliRunner()
    args = ["analyze", str(clip), "--out", str(tmp_path / "out")]
    r = runner.invoke(app, [*args, "--actors", "2"])
    assert r.exit_code == 2 and "--actors apply to --engine ray" in r.output, r.output
    r = runner.invoke(app, [*args, "--engine", "ray", "-j", "2"])
    assert r.exit_code == 2 and "with --engine ray give --actors N" in r.output, r.output
    r = runner.invoke(app, [*args, "--engine", "ray", "--device", "cuda"])
    if "not installed" not in r.output:  # Ray present: cuda needs GPUs reserved per actor
        assert r.exit_code == 2 and "needs --gpus-per-actor > 0" in r.output, r.output
    import dmd_pipeline.ray_executor as rx

    monkeypatch.setattr(rx, "ray_available", lambda: False)
    for cmd in (args, ["extract", str(tmp_path), "--out", str(tmp_path / "feats")]):
        r = runner.invoke(app, [*cmd, "--engine", "ray"])
        assert r.exit_code == 2, r.output
        assert "pip install 'dmd-pipeline[cluster]'" in r.output, r.output


def test_a_worker_renders_the_report_but_the_driver_writes_it(tmp_path: Path, media, tiny_model) -> None:
    """Worker mode (both engines): the HTML report comes back as files in the outcome; nothing is written
    into --out until the driver commits them (an actor on another node has no --out)."""
    from dmd_pipeline.analysis.batch import BatchOptions, commit_outputs, process_file
    from dmd_pipeline.analysis.registry import load_models

    clip = media.silence(1.0)
    out = tmp_path / "out"
    opts = BatchOptions(out_dir=out, model=str(tiny_model), asr="none", report=True)
    oc = process_file(clip, "c", opts, load_models(str(tiny_model)), write=False)
    assert oc.status == "ok", oc.reason
    assert not out.exists()
    assert "c.html" in oc.blobs and any(k.startswith("c_files/") for k in oc.blobs), sorted(oc.blobs)
    commit_outputs(out, oc)
    assert (out / "c.html").is_file() and (out / "c.json").is_file() and not oc.blobs and not oc.outputs
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} >= {"c.html", "c.json"}


# ---- one Ray instance for the module ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray instance (2 CPUs, no dashboard, small object store); yields its address for
    ``--address``. Skips when Ray is not installed."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'dmd-pipeline[cluster]')")
    if not os.path.isdir("/dev/shm"):
        pytest.skip("/dev/shm is absent: Ray's object store needs it")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        log_to_driver=False,
        logging_level="warning",
        namespace="dmd_pipeline_tests",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("models") / "tiny_ray")


@pytest.fixture(scope="module")
def real_runs(ray_cluster: str, shared_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three real clips and one file that fails in the worker (an empty wav: no usable modality),
    analysed once locally (-j 1) and once with ``--engine ray --actors 2``."""
    src = tmp_path_factory.mktemp("real_in")
    for name in CLIPS:
        shutil.copy(shared_clips / name, src / name)
    (src / "empty.wav").write_bytes(_empty_wav())
    base = tmp_path_factory.mktemp("real_out")
    runs: dict[str, Any] = {"src": src}
    t0 = time.monotonic()  # the reference: the local engine, in this process (-j 1)
    r = CliRunner().invoke(app, ["analyze", str(src), "--out", str(base / "local"), "-q"])
    runs["local"] = {"out": base / "local", "rc": r.exit_code, "output": r.output, "s": time.monotonic() - t0}
    t0 = time.monotonic()
    out, ray_args = base / "ray", ["--engine", "ray", "--actors", "2", "--address", ray_cluster]
    rc, output = _dmd(["analyze", str(src), "--out", str(out), *ray_args])
    runs["ray"] = {"out": out, "rc": rc, "output": output, "s": time.monotonic() - t0}
    return runs


def _empty_wav() -> bytes:
    """A valid wav header with no samples: ffprobe accepts it, the analysis (in the worker) fails."""
    import struct

    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    return b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 0)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.shared
def test_ray_engine_matches_the_local_engine(real_runs: dict) -> None:
    """Same JSON (every score within 1e-6), same summary.csv and errors.csv as the local path."""
    local, ray_run = real_runs["local"], real_runs["ray"]
    assert local["rc"] == 1 and ray_run["rc"] == 1, ray_run["output"][-3000:]  # empty.wav fails in both
    assert "Traceback" not in ray_run["output"], ray_run["output"][-3000:]
    names = sorted(p.name for p in local["out"].glob("*.json"))
    assert (
        names
        == sorted(p.name for p in ray_run["out"].glob("*.json"))
        == sorted(Path(c).stem + ".json" for c in CLIPS)
    )
    for name in names:
        a = json.loads((local["out"] / name).read_text(encoding="utf-8"))
        b = json.loads((ray_run["out"] / name).read_text(encoding="utf-8"))
        assert validate_result(b) == []
        assert list(_floats_differ(a, b)) == [], name
    for table in ("summary.csv", "errors.csv"):
        assert _rows(local["out"] / table) == _rows(ray_run["out"] / table), table
    assert not _temps(ray_run["out"])


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.shared
def test_a_deterministic_failure_is_recorded_once(real_runs: dict) -> None:
    """The file that fails inside the actor is one errors.csv row and one ✗ line, not retried."""
    ray_run = real_runs["ray"]
    errors = _rows(ray_run["out"] / "errors.csv")
    assert [(Path(r["file"]).name, r["stage"]) for r in errors] == [("empty.wav", "analyze")], errors
    assert "no usable modality" in errors[0]["reason"]
    assert ray_run["output"].count("✗ empty.wav") == 1, ray_run["output"][-3000:]
    status = {Path(r["file"]).name: r["status"] for r in _rows(ray_run["out"] / "summary.csv")}
    assert status == {**dict.fromkeys(CLIPS, "ok"), "empty.wav": "failed"}


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.shared
def test_a_rerun_redoes_nothing(real_runs: dict, ray_cluster: str) -> None:
    """Resume: the finished files are kept as they are (no actor even starts); summary.csv is intact."""
    out = real_runs["ray"]["out"]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    summary = _rows(out / "summary.csv")
    files = [str(real_runs["src"] / c) for c in CLIPS]
    rc, output = _dmd(["analyze", *files, "--out", str(out), "--engine", "ray", "--address", ray_cluster])
    assert rc == 0, output[-3000:]
    assert "3 file(s), 0 to analyse, 3 already done" in output, output[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == before
    assert _rows(out / "summary.csv")[:3] == summary[:3]


# ---- faults (cheap media: 1 s silent wavs and a tiny text-only model) ---------------------------------------
def _silent_folder(media: MediaFactory, folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    data = media.silence(1.0).read_bytes()
    names = [f"clip{i:02d}.wav" for i in range(n)]
    for name in names:
        (folder / name).write_bytes(data)
    return names


def _run_actors(driver_pid: int) -> list[str]:
    """Names of the live actors of the ``dmd`` driver with this pid (``dmd-<pid>-<tag>-<n>``)."""
    import ray

    from dmd_pipeline.ray_executor import NAMESPACE

    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == NAMESPACE and a["name"].startswith(f"dmd-{driver_pid}-")
    )


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_actor_loses_no_file(
    ray_cluster: str, media: MediaFactory, tiny_model: Path, tmp_path: Path
):
    """kill -9 of a busy actor's process: its file is redone on a fresh actor; every file is done once."""
    import ray

    from dmd_pipeline.ray_executor import NAMESPACE

    src, out = tmp_path / "in", tmp_path / "out"
    names = _silent_folder(media, src, 10)
    args = ["analyze", str(src), "--model", str(tiny_model), "--out", str(out), "--asr", "none"]
    proc = _start([*args, "--engine", "ray", "--actors", "2", "--address", ray_cluster])
    try:
        actor = _wait_for(lambda: _run_actors(proc.pid), 90, "an actor of the run", proc)[0]
        pid = ray.get(ray.get_actor(actor, namespace=NAMESPACE).pid.remote(), timeout=90)  # ready: it works
        n_done = len(list(out.glob("clip*.json")))
        os.kill(pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert n_done < len(names), "the run ended before the kill"
    assert proc.returncode == 0, output[-3000:]
    assert _rows(out / "errors.csv") == []
    status = {Path(r["file"]).name: r["status"] for r in _rows(out / "summary.csv")}
    assert status == dict.fromkeys(names, "ok")
    for name in names:  # one line per file: none lost, none done twice
        assert output.count(f"✓ {name} (") == 1, (name, output[-3000:])
    assert output.count("✓ ") == len(names)
    assert not _temps(out)
    _wait_for(lambda: not _run_actors(proc.pid), 30, "the actors of the finished run to go")


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_of_the_driver_then_resume(
    ray_cluster: str, media: MediaFactory, tiny_model: Path, tmp_path: Path
) -> None:
    """SIGTERM mid-run stops like Ctrl-C: actors gone, no half-written file, lock released; a re-run
    keeps what was finished and does the rest."""
    src, out = tmp_path / "in", tmp_path / "out"
    names = _silent_folder(media, src, 10)
    args = ["analyze", str(src), "--model", str(tiny_model), "--out", str(out), "--asr", "none"]
    ray_args = ["--engine", "ray", "--actors", "2", "--address", ray_cluster]
    proc = _start([*args, *ray_args])
    try:
        _wait_for(lambda: list(out.glob("clip*.json")), 90, "a first result", proc)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "Traceback" not in output, output[-3000:]  # as on Ctrl-C
    done = sorted(p.name for p in out.glob("clip*.json"))
    assert 0 < len(done) < len(names), output[-3000:]
    for name in done:
        assert validate_result(json.loads((out / name).read_text(encoding="utf-8"))) == []
    assert not _temps(out)
    _wait_for(lambda: not _run_actors(proc.pid), 30, "the actors of the stopped run to go")
    rc, output = _dmd([*args, *ray_args])
    assert rc == 0, output[-3000:]
    assert f"{len(names) - len(done)} to analyse, {len(done)} already done" in output, output[-3000:]
    assert output.count("✓ ") == len(names)
    status = {Path(r["file"]).name: r["status"] for r in _rows(out / "summary.csv")}
    assert status == dict.fromkeys(names, "ok")


# ---- the executor itself ----------------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_ray_executor_contract(ray_cluster: str, tmp_path: Path) -> None:
    """submit -> Future: a raising item fails once with its own exception (not retried), an item whose
    actor always dies fails with WorkerLost after one retry, a flaky one succeeds on the retry, and
    --gpus-per-actor on a cluster without GPUs is a ClusterError at once."""
    import ray_tasks
    from ray import cloudpickle

    from dmd_pipeline.executor import WorkerLost
    from dmd_pipeline.ray_executor import ClusterError, RayExecutor, RayOptions

    cloudpickle.register_pickle_by_value(ray_tasks)  # the actors cannot import the tests folder
    log = tmp_path / "calls.log"
    with RayExecutor(ray_tasks.work, 2, initializer=ray_tasks.init, initargs=(str(log),)) as ex:
        items = [("ok", i) for i in range(4)] + [("raise", 0), ("die", 0), ("flaky", str(tmp_path / "m"))]
        futs = [ex.submit(it) for it in items]
        for f in futs:
            f.exception(timeout=120)
    assert [f.result()[0] for f in futs[:4]] == [f"ok:{i}" for i in range(4)]
    assert isinstance(futs[4].exception(), ValueError) and "bad item 0" in str(futs[4].exception())
    lost = futs[5].exception()
    assert isinstance(lost, WorkerLost) and lost.reason.endswith("(also on the retry)"), lost
    assert futs[6].result()[0].startswith("flaky:")
    calls = log.read_text().split()
    assert calls.count("raise:0") == 1 and calls.count("die:0") == 2 and calls.count("ok:0") == 1
    with pytest.raises(ClusterError, match="has no GPU"):
        RayExecutor(ray_tasks.work, 1, options=RayOptions(gpus_per_actor=1))


@pytest.mark.ray
@pytest.mark.slow
def test_extract_on_ray(ray_cluster: str, media: MediaFactory, tmp_path: Path) -> None:
    """``dmd extract --engine ray``: the items run on an actor and this driver writes the item files,
    the pickle and errors.csv as the local path does (a bad item is one errors.csv row)."""
    src = tmp_path / "in"
    names = _silent_folder(media, src, 2)
    (src / "bad.wav").write_bytes(b"")  # fails in the actor (ffprobe cannot read it)
    (src / "labels.csv").write_text(
        "file,label\n" + "".join(f"{n},{i}.5\n" for i, n in enumerate([*names, "bad.wav"]))
    )
    out = tmp_path / "feats"
    args = ["extract", str(src), "--out", str(out), "--asr", "none", "--no-cache", "-q"]
    r = CliRunner().invoke(app, [*args, "--engine", "ray", "--actors", "1"])  # joins this process's Ray
    assert r.exit_code == 1, r.output  # bad.wav fails
    assert (out / "aligned_50.pkl").is_file() and len(list((out / "items").glob("*.npz"))) == 2
    assert [Path(e["file"]).name for e in _rows(out / "errors.csv")] == ["bad.wav"]
    assert not _temps(out)
