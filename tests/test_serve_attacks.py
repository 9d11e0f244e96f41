"""``dmd serve`` attacked: cross-site requests, stalled and trickling clients, playlist uploads, multipart
bombs, the report cookie, a full disk, corrupt job files, internal errors, file modes, odd names.

Servers run as in ``test_serve.py`` (a real uvicorn subprocess on 127.0.0.1); the disk-full, 500 and
corrupt-file cases run the app or the job store in-process. The browser's view of cross-site requests is
in ``test_serve_browser.py``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from media_factory import MediaFactory, session_factory
from test_serve import CLIENT_HEADER, HAVE_SERVE, TEXT, TOKEN, Server, upload

pytestmark = [
    pytest.mark.serve,
    pytest.mark.skipif(not HAVE_SERVE, reason="fastapi/uvicorn/httpx not installed (pip install '.[serve]')"),
]
TRICKS = ("hls_absolute", "hls_relative_live", "hls_file_url", "hls_subfile", "hls_data_url", "ffconcat")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No token (the loopback default); short wire limits; one job at a time and no waiting room."""
    root = tmp_path_factory.mktemp("attacks")
    args = ("--workers", "1", "--max-queue", "0", "--read-timeout", "3", "--max-uploads-per-client", "2",
            "--max-upload-mb", "5")  # fmt: skip
    srv = Server(root / "data", *args)
    try:
        yield srv.start()
    finally:
        srv.stop()


def _multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "bNdRy") -> bytes:
    out = []
    for name, filename, data in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


def _head(port: int, length: int, extra: str = "", boundary: str = "bNdRy") -> bytes:
    return (
        f"POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{CLIENT_HEADER}: tests\r\n{extra}"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _answer(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            part = s.recv(65536)
            if not part:
                break
            data += part
    return data


def _stalled(port: int, source: str) -> socket.socket:
    """A connection from ``source`` (another loopback address) that sends its headers and 100 bytes of a
    1 MB body, then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(_head(port, 1 << 20) + b"--bNdRy\r\n" + b"x" * 90)
    return s


def test_cross_site_requests_are_refused(server: Server, media: MediaFactory) -> None:
    import httpx

    clip = media.speech_wav(TEXT)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        files = {"file": ("a.wav", clip.read_bytes())}
        for headers in (
            {"Origin": "http://evil.example", CLIENT_HEADER: "x"},
            {"Origin": "null", CLIENT_HEADER: "x"},
            {"Sec-Fetch-Site": "cross-site", CLIENT_HEADER: "x"},
            {"Sec-Fetch-Site": "same-site", CLIENT_HEADER: "x"},
            {},  # a plain form post: no custom header, no token
        ):
            r = c.post("/v1/analyses", files=files, headers=headers)
            assert r.status_code == 403, (headers, r.status_code, r.text)
            assert c.delete("/v1/analyses/" + "a" * 24, headers=headers).status_code == 403
        # the page's own requests pass: same origin, custom header
        same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin", CLIENT_HEADER: "page"}
        assert c.delete("/v1/analyses/" + "a" * 24, headers=same).status_code == 404
        assert c.get("/v1/analyses", headers={"Origin": "http://evil.example"}).status_code == 200  # a read
        assert c.get("/v1/analyses").json()["jobs"] == []


@pytest.mark.parametrize("trick", TRICKS)
def test_playlist_uploads_are_refused(server: Server, media: MediaFactory, trick: str) -> None:
    path = media.playlist_tricks()[trick]
    with server.client() as c:
        t0 = time.monotonic()
        r = upload(c, path, name="upload.mp4", asr="none", transcript=TEXT)
        assert r.status_code == 422, r.text
        assert "playlist or a list of other files" in r.json()["detail"]
        assert time.monotonic() - t0 < 15  # a live playlist no longer waits for more segments
        assert c.get("/v1/analyses").json()["jobs"] == []


def test_stalled_uploads_hold_no_queue_slot_and_time_out(server: Server, media: MediaFactory) -> None:
    import httpx

    port = server.port
    socks = [_stalled(port, "127.0.0.2") for _ in range(2)]
    try:
        time.sleep(0.5)
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get("/healthz").json()["uploads_in_progress"] == 2
            third = _stalled(port, "127.0.0.2")  # over the per-client bound: refused at once
            assert _answer(third, 10).startswith(b"HTTP/1.1 429")
            third.close()
        # another client still gets in, although the queue holds one job at most (--max-queue 0)
        with server.client() as c:
            r = upload(c, media.speech_wav(TEXT), asr="none", transcript=TEXT)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
        answers = [_answer(s, 15) for s in socks]  # --read-timeout 3
        assert all(a.startswith(b"HTTP/1.1 408") and b"stalled" in a for a in answers), answers
        with server.client() as c:
            assert c.get("/healthz").json()["uploads_in_progress"] == 0
            assert c.delete(f"/v1/analyses/{job_id}").status_code == 200
    finally:
        for s in socks:
            s.close()
    assert list((server.data_dir / "incoming").iterdir()) == []


def _idle(server: Server, timeout: float = 150.0) -> None:
    """Wait until no job is pending (a deleted running job holds its worker until it ends)."""
    with server.client() as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = c.get("/healthz").json()["jobs"]
            if n["queued"] + n["running"] + n["draining"] == 0:
                return
            time.sleep(0.3)
    raise AssertionError("the server did not become idle")


def test_slow_headers_and_trickling_bodies_are_cut_off(server: Server) -> None:
    port = server.port
    _idle(server)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # headers that never end
        s.sendall(b"POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        s.settimeout(15)
        assert s.recv(100) == b""  # closed by the server
    assert time.monotonic() - t0 < 10
    # 10 bytes a second: under the read timeout, but under the minimum rate once the grace time is over
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_head(port, 1 << 20) + b"--bNdRy\r\n")
        t0 = time.monotonic()
        s.setblocking(False)
        got = b""
        while time.monotonic() - t0 < 30 and not got:
            with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                s.send(b"x" * 10)
            time.sleep(1)
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 408") and b"too slow" in got, got
        assert 9 < time.monotonic() - t0 < 20


def test_multipart_bombs_are_refused_cheaply(server: Server) -> None:
    port = server.port
    many = _multipart([(f"f{i}", None, b"") for i in range(60_000)])  # ~2.7 MB of empty fields
    pads = b"".join(b"X-Pad-%d: %s\r\n" % (k, b"p" * 3000) for k in range(4))  # 12 KB of headers a part
    padded = _multipart([(f"f{i}", None, b"") for i in range(5)]).replace(
        b"\r\n\r\n", b"\r\n" + pads + b"\r\n"
    )
    cases = {  # what -> (body, status, words of the answer)
        "parts": (many, 413, b"too many form fields"),
        "names": (_multipart([(f"{i}" + "n" * 3000, None, b"") for i in range(10)]), 413, b"part headers"),
        "headers": (padded, 413, b"part headers"),
        "one huge name": (_multipart([("n" * (2 << 20), None, b"")]), 400, b"header size"),
    }  # fmt: skip
    for what, (body, status, words) in cases.items():
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(_head(port, len(body)))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(body)
            got = _answer(s, 10)
        assert got.startswith(b"HTTP/1.1 %d" % status) and words in got, (what, got[-300:])
        assert time.monotonic() - t0 < 5, what
    assert server.rss_mb() < 200


def test_the_report_cookie_is_httponly_derived_and_opens_only_reports(tmp_path: Path) -> None:
    import httpx

    srv = Server(tmp_path / "data", token=TOKEN)
    try:
        srv.start()
        with srv.client() as c:
            r = c.post("/v1/session")
            assert r.status_code == 204
            cookie = r.headers["set-cookie"]
            low = cookie.lower()
            assert "httponly" in low and "samesite=strict" in low and "path=/v1/analyses/" in low
            assert TOKEN not in cookie
            value = r.cookies["dmd_report"]
        report = "/v1/analyses/" + "a" * 24 + "/report"
        with httpx.Client(base_url=srv.url, timeout=30) as anon:
            assert (
                anon.get(report, headers={"Cookie": f"dmd_report={value}"}).status_code == 404
            )  # let in: no such job
            assert (
                anon.get(
                    report + "/result_files/x.png", headers={"Cookie": f"dmd_report={value}"}
                ).status_code
                == 404
            )
            assert anon.get(report, headers={"Cookie": "dmd_report=" + "f" * 64}).status_code == 401
            assert anon.get(report, headers={"Cookie": f"dmd_report={TOKEN}"}).status_code == 401
            assert (
                anon.get(report, headers={"Cookie": f"dmd_token={TOKEN}"}).status_code == 401
            )  # the old cookie
            assert (
                anon.get("/v1/analyses", headers={"Cookie": f"dmd_report={value}"}).status_code == 401
            )  # not the API
            assert anon.post("/v1/session", headers={CLIENT_HEADER: "x"}).status_code == 401
    finally:
        srv.stop()


def test_server_files_are_private(server: Server, media: MediaFactory) -> None:
    _idle(server)
    with server.client() as c:
        r = upload(c, media.speech_wav(TEXT), asr="none", transcript=TEXT)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 150
        while c.get(f"/v1/analyses/{job_id}").json()["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert c.get(f"/v1/analyses/{job_id}").json()["status"] == "done"
    data = server.data_dir
    paths = [data, *data.rglob("*")]
    assert any(p.name == "result.json" for p in paths) and any(p.name.startswith("upload-") for p in paths)
    for p in paths:
        mode = p.stat().st_mode & 0o777
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    with server.client() as c:
        assert c.delete(f"/v1/analyses/{job_id}").status_code == 200


# ---- in-process ---------------------------------------------------------------------------------------
def _app(tmp_path: Path, store: Any = None) -> Any:
    from dmd_pipeline.serve.app import create_app
    from dmd_pipeline.serve.jobs import JobStore

    store = store or JobStore(tmp_path / "data", model=["mosi-text-minilm"])
    store.incoming_dir.mkdir(parents=True)
    store.jobs_dir.mkdir(parents=True)
    return create_app(store)


def test_a_full_disk_answers_507(
    tmp_path: Path, media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from dmd_pipeline.serve import upload as upload_mod

    # the upload is written to /dev/full: the kernel answers ENOSPC, as on a full disk
    monkeypatch.setattr(upload_mod, "create_private", lambda path: open("/dev/full", "wb"))  # noqa: SIM115
    client = TestClient(_app(tmp_path), raise_server_exceptions=False)  # no lifespan: no workers needed
    r = client.post("/v1/analyses", files={"file": ("a.wav", media.speech_wav(TEXT).read_bytes())},
                    headers={CLIENT_HEADER: "x"})  # fmt: skip
    assert r.status_code == 507 and "disk is full" in r.json()["detail"], r.text
    assert list((tmp_path / "data" / "incoming").iterdir()) == []


def test_a_full_disk_while_writing_a_result_leaves_a_consistent_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import Future

    from dmd_pipeline.analysis.batch import FileOutcome
    from dmd_pipeline.serve import jobs as jobs_mod
    from dmd_pipeline.serve.jobs import Job, JobStore, new_job_id

    store = JobStore(tmp_path / "data")
    job = Job(new_job_id(), "a.wav", "upload-1.wav", 10, status="running", started=time.time())
    (store.jobs_dir / job.id).mkdir(parents=True)
    store._jobs[job.id] = job

    def full(path: Path, text: str) -> None:
        if Path(path).name == "result.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        Path(path).write_text(text)

    monkeypatch.setattr(jobs_mod, "atomic_write_text", full)
    oc = FileOutcome("x", "result", "ok", headline="words: positive")
    oc.outputs = {"result.csv": "a\n", "result.json": json.dumps({"file": "x"})}
    oc.blobs = {"result.html": b"<html><head></head></html>", "result_files/timeline.png": b"png"}
    fut: Future = Future()
    fut.set_result(oc)
    store._finish(job.id, fut)
    state = json.loads((store.jobs_dir / job.id / "job.json").read_text())
    assert state["status"] == "failed" and state["error"]["reason"] == "the server's disk is full", state
    left = {p.name for p in (store.jobs_dir / job.id).iterdir()}
    assert not left & {"result.json", "result.html", "result_files"}, left


def test_internal_errors_are_logged_with_their_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from dmd_pipeline.serve.jobs import JobStore

    class Broken(JobStore):
        def list(self, limit: int = 50) -> list:
            raise RuntimeError("the job index is broken")

    client = TestClient(_app(tmp_path, Broken(tmp_path / "data")), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="dmd_pipeline.serve"):
        r = client.get("/v1/analyses")
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert "Traceback" not in r.text and "broken" not in r.text
    rec = [x for x in caplog.records if x.name == "dmd_pipeline.serve"]
    assert rec and rec[0].exc_info and "the job index is broken" in str(rec[0].exc_info[1])
    assert "GET /v1/analyses" in rec[0].getMessage()


def test_a_corrupt_job_file_is_moved_aside_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dmd_pipeline.serve.jobs import JobStore, new_job_id

    jid = new_job_id()
    d = tmp_path / "jobs" / jid
    d.mkdir(parents=True)
    (d / "job.json").write_text('{"id": "truncated')
    (d / "upload-1.mp4").write_bytes(b"the only copy of the upload")
    store = JobStore(tmp_path, model=["mosi-text-minilm"])
    try:
        with caplog.at_level(logging.WARNING, logger="dmd_pipeline.serve"):
            store.start()
        assert store.get(jid) is None and not d.exists()
        moved = list((tmp_path / "corrupt").iterdir())
        assert len(moved) == 1 and moved[0].name.startswith(jid)
        assert (moved[0] / "upload-1.mp4").read_bytes() == b"the only copy of the upload"
        assert any(jid in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_display_names_lose_control_and_bidi_characters() -> None:
    from dmd_pipeline.serve.upload import safe_filename

    assert safe_filename("invoice\u202egnp.exe") == "invoicegnp.exe"
    assert safe_filename("a\u2066b\u200fc\x00d\ne\u2028f.mp4") == "abcdef.mp4"
    assert safe_filename("C:\\x\\..\\clip é 名前.mp4") == "clip é 名前.mp4"
    assert safe_filename("\u202e\u202e") == "upload"


def test_start_line_brackets_ipv6_and_insecure_warns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from dmd_pipeline.cli.app import app

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    mask = os.umask(0o022)
    try:
        runner = CliRunner()
        r = runner.invoke(app, ["serve", "--host", "::1", "--port", "8123", "--data-dir", str(tmp_path / "a"),
                                "--model", "mosi-text-minilm"])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "http://[::1]:8123/" in r.output and "WARNING" not in r.output
        assert calls[-1]["host"] == "::1"
        r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--insecure", "--data-dir", str(tmp_path / "b"),
                                "--model", "mosi-text-minilm"])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "WARNING: --insecure" in r.output and "WITHOUT A TOKEN" in r.output
        assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700
    finally:
        os.umask(mask)


def test_a_still_image_upload_is_refused_without_the_face_channel(
    tmp_path: Path, media: MediaFactory
) -> None:
    """A photo is read by the face channel only (accepted by default: test_serve); with --no-face it has no
    answer to give, so the upload is refused at once, saying why."""
    srv = Server(tmp_path / "data", "--no-face")
    try:
        srv.start()
        with srv.client() as c:
            r = upload(c, media.astronaut_png(), name="photo.png")
            detail = r.json()["detail"]
            assert r.status_code == 422 and "still image" in detail and "--no-face" in detail, r.text
    finally:
        srv.stop()


def test_a_job_may_run_in_proportion_to_its_duration(tmp_path: Path) -> None:
    from dmd_pipeline.executor import DEFAULT_FILE_TIMEOUT_S
    from dmd_pipeline.serve.jobs import JOB_BASE_S, Job, JobStore

    store = JobStore(tmp_path, time_factor=10)
    assert store.time_limit(Job("a" * 24, "a.mp4", "u.mp4", 1, duration=30.0)) == JOB_BASE_S + 300
    assert store.time_limit(Job("a" * 24, "a.mp4", "u.mp4", 1)) == DEFAULT_FILE_TIMEOUT_S  # older job.json
    capped = JobStore(tmp_path, time_factor=10, file_timeout=200)
    assert capped.time_limit(Job("a" * 24, "a.mp4", "u.mp4", 1, duration=3600.0)) == 200


def test_an_upload_without_a_duration_is_refused(server: Server, tmp_path: Path) -> None:
    import struct

    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)  # a wav header and no samples
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 0))
    with server.client() as c:
        r = upload(c, empty)
        assert r.status_code == 422 and "has no duration" in r.json()["detail"], r.text
