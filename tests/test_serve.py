"""``dmd serve`` through a real uvicorn server on 127.0.0.1 (a subprocess on a free port, httpx client).

Covers: a real clip uploaded, the server killed mid-job and restarted, the job completing with a
schema-valid result; the report and its timeline image; auth on/off; an oversize upload stopped while it
streams (413) with the server's memory flat; a non-media upload (422); path traversal in file names,
report paths and ids; a full queue (429 + Retry-After); the core import path not importing fastapi.
Jobs use the text model and given transcripts (``asr none``) to stay cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from media_factory import MediaFactory, session_factory

from dmd_pipeline.utils import REPO_ROOT

try:
    import fastapi  # noqa: F401
    import httpx
    import python_multipart  # noqa: F401
    import uvicorn  # noqa: F401

    HAVE_SERVE = True
except ImportError:  # the serve extra is optional
    HAVE_SERVE = False

requires_serve = pytest.mark.skipif(
    not HAVE_SERVE, reason="fastapi/uvicorn/httpx/python-multipart not installed (pip install '.[serve]')"
)
pytestmark = [pytest.mark.serve]

MODEL = "mosi-text-minilm"
TEXT = "I really liked this movie. The acting was great."
TOKEN = "test-token-0123456789abcdef"
CLIENT_HEADER = "X-DMD-Client"  # what a non-browser client sends with a POST/DELETE when it has no token


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``dmd serve`` in a subprocess on 127.0.0.1; :meth:`stop` (in a finally) always ends it."""

    def __init__(self, data_dir: Path, *args: str, token: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.token = token
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"{self.data_dir.name}-server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "dmd_pipeline.cli.app",
            "serve",
            "--port",
            str(self.port),
            "--model",
            MODEL,
        ]
        cmd += ["--data-dir", str(self.data_dir), *self.args]
        if self.token is not None:
            tf = self.data_dir.parent / f"token-{self.port}.txt"
            tf.write_text(self.token + "\n")
            tf.chmod(0o600)  # a token file others can read is refused
            cmd += ["--token-file", str(tf)]
        env = {k: v for k, v in os.environ.items() if k != "DMD_MODEL"}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NO_PROXY="127.0.0.1,localhost")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dmd serve exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dmd serve did not answer in {timeout} s: {self.log.read_text()[-2000:]}")

    def client(self, token: str | None = None) -> httpx.Client:
        t = token if token is not None else self.token
        headers = {"Authorization": f"Bearer {t}"} if t else {CLIENT_HEADER: "tests"}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        """SIGKILL, like a crash (the workers die with it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down and stops its workers), then SIGKILL whatever of the group is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def upload(client: Any, path: Path, name: str | None = None, **fields: str) -> Any:
    """POST a clip; returns the response."""
    with open(path, "rb") as fh:
        return client.post("/v1/analyses", files={"file": (name or path.name, fh)}, data=fields)


def wait_done(client: Any, job_id: str, timeout: float = 150.0) -> dict[str, Any]:
    """Poll a job until it is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/analyses/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def pick_clip(media: MediaFactory) -> Path:
    """A real clip of ../shared when present, else a generated one (face + speech)."""
    from dmd_pipeline.utils import shared_dir

    sd = shared_dir()
    clips = sorted((sd / "data" / "clips").glob("*.mp4")) if sd is not None else []
    return clips[0] if clips else media.face_video(duration=2.5)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory, media: MediaFactory) -> Iterator[dict[str, Any]]:
    """A job accepted by a server that is then killed mid-job; a second server on the same data dir."""
    if not HAVE_SERVE:
        pytest.skip("fastapi/uvicorn/httpx/python-multipart not installed (pip install '.[serve]')")
    root = tmp_path_factory.mktemp("serve")
    data = root / "data"
    clip = pick_clip(media)
    args = ("--max-upload-mb", "2", "--max-queue", "1", "--workers", "1")
    first = Server(data, *args)
    second = Server(data, *args)
    try:
        first.start()
        with first.client() as c:
            r = upload(c, clip, asr="none", transcript=TEXT)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = time.monotonic() + 30  # let a worker take it (it loads the model first)
            while (
                time.monotonic() < deadline and c.get(f"/v1/analyses/{job_id}").json()["status"] == "queued"
            ):
                time.sleep(0.2)
        first.kill()
        state = json.loads((data / "jobs" / job_id / "job.json").read_text())
        assert state["status"] in ("queued", "running")
        second.start()
        yield {"server": second, "id": job_id, "clip": clip, "state_at_kill": state["status"], "data": data}
    finally:
        first.stop()
        second.stop()


@pytest.fixture(scope="module")
def done_job(restarted: dict[str, Any]) -> dict[str, Any]:
    with restarted["server"].client() as c:
        return wait_done(c, restarted["id"])


def test_core_import_path_does_not_import_fastapi() -> None:
    code = (
        "import sys; import dmd_pipeline, dmd_pipeline.cli.app, dmd_pipeline.serve.jobs; "
        "bad = [m for m in ('fastapi', 'uvicorn', 'starlette', 'httpx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


@requires_serve
def test_job_survives_restart_and_result_validates(
    restarted: dict[str, Any], done_job: dict[str, Any]
) -> None:
    import jsonschema

    from dmd_pipeline.analysis.result import load_schema

    job = done_job
    assert job["status"] == "done", job
    assert job["attempts"] == 2  # run again after the restart
    doc = job["result"]
    jsonschema.validate(doc, load_schema())
    assert doc["schema_version"] == "1.5" and doc["headline"] == job["headline"]
    assert doc["file"] == restarted["clip"].name
    assert doc["models"][0]["name"] == MODEL
    text = json.dumps(job)
    assert str(restarted["data"]) not in text and "/tmp/" not in text  # no server paths
    assert str(REPO_ROOT) not in text and doc["model"]["path"] == MODEL
    with restarted["server"].client() as c:
        listed = c.get("/v1/analyses").json()["jobs"]
        assert [j["id"] for j in listed].count(job["id"]) == 1 and "result" not in listed[0]
        rep = c.get(job["links"]["report"])
        assert rep.status_code == 200 and rep.headers["content-type"].startswith("text/html")
        assert "<base href=" in rep.text and str(restarted["data"]) not in rep.text
        png = c.get(job["links"]["timeline"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.get("/v1/models").json()["models"][0]["name"] == MODEL
        assert c.get("/healthz").json()["status"] == "ok"
        assert "paths" in c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 404  # no Swagger UI (it would pull a CDN)
        page = c.get("/")
        assert page.status_code == 200 and "/v1/analyses" in page.text and "https://" not in page.text


@requires_serve
def test_a_photo_upload_gives_the_face_channel(
    restarted: dict[str, Any], done_job: dict[str, Any], media: MediaFactory
) -> None:
    """A still image is analysed as ``dmd analyze photo.png`` does: the face channel only, same schema."""
    import jsonschema

    from dmd_pipeline.analysis.result import load_schema

    with restarted["server"].client() as c:
        r = upload(c, media.astronaut_png(), name="photo.png")
        assert r.status_code == 202, r.text
        assert r.json()["media"]["duration"] == 0.0
        job = wait_done(c, r.json()["id"])
        assert job["status"] == "done", job
        doc = job["result"]
        jsonschema.validate(doc, load_schema())
        assert doc["file"] == "photo.png" and doc["duration"] == 0.0
        assert [m["role"] for m in doc["models"]] == ["expression"]  # no voice, no words: a photo has neither
        face = doc["face"]
        assert face["n_frames"] == 1 and face["visible_fraction"] == 1.0 and face["label"] is not None
        assert abs(sum(face["probabilities"].values()) - 1.0) < 1e-3
        assert doc["segments"][0]["face"] == face and doc["headline"].endswith(
            f"face: {face['label']} {face['probability']:.2f}"
        )
        assert c.get(job["links"]["report"]).status_code == 200
        assert "timeline" not in job["links"]  # a photo is one moment: nothing over time
        assert c.delete(f"/v1/analyses/{job['id']}").status_code == 200


@requires_serve
def test_non_media_upload_is_422(restarted: dict[str, Any], media: MediaFactory) -> None:
    srv = restarted["server"]
    with srv.client() as c:
        r = upload(c, media.text_as_mp4(), asr="none")
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert "not a media file" in detail and "/" not in detail.split(":", 1)[0]
        assert str(restarted["data"]) not in detail and "Traceback" not in r.text
        empty = c.post("/v1/analyses", files={"file": ("e.mp4", b"")})
        assert empty.status_code == 422
        assert c.post("/v1/analyses", data={"asr": "none"}).status_code in (400, 415)
        bad_asr = upload(c, restarted["clip"], asr="bogus")
        assert bad_asr.status_code == 422 and "asr" in bad_asr.json()["detail"]
        bad_language = upload(c, restarted["clip"], asr="none", language="klingon")
        assert bad_language.status_code == 422 and "unknown language 'klingon'" in bad_language.json()["detail"]
        bad_model = upload(c, restarted["clip"], asr="none", asr_model="large")
        assert bad_model.status_code == 422
        assert "unknown speech-recognition model 'large'" in bad_model.json()["detail"]
        assert "'base'" in bad_model.json()["detail"] and "'tiny.en'" in bad_model.json()["detail"]
    assert list((restarted["data"] / "incoming").iterdir()) == []  # nothing left behind


def _raw_post(port: int, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request on a raw socket, chunk by chunk, until the server answers; (response, bytes sent)."""
    import select

    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        for chunk in body_chunks:
            r, _, _ = select.select([s], [], [], 0)
            if r:
                break
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        s.settimeout(30)
        resp = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while True:  # the head, then the body up to its Content-Length
                head, sep, body = resp.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if sep and m and len(body) >= int(m.group(1)):
                    break
                part = s.recv(65536)
                if not part:
                    break
                resp += part
    return resp, sent


@requires_serve
def test_oversize_upload_is_rejected_early_with_flat_memory(restarted: dict[str, Any]) -> None:
    srv = restarted["server"]
    port = srv.port
    boundary = "XbOuNdArYx"
    part_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    req = f"POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{CLIENT_HEADER}: tests\r\n"
    ctype = f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
    rss0 = srv.rss_mb()
    # 1) a declared Content-Length over the limit: refused before any of the body is read
    resp, sent = _raw_post(port, (req + ctype + "Content-Length: 104857600\r\n\r\n").encode(), iter(()))
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    # 2) chunked (no length): the server counts bytes as they arrive and stops at the limit (2 MB)
    chunk = os.urandom(256 << 10)

    def chunks() -> Iterator[bytes]:
        yield b"%x\r\n%s\r\n" % (len(part_head), part_head)
        for _ in range(160):  # up to 40 MB
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)

    resp, sent = _raw_post(port, (req + ctype + "Transfer-Encoding: chunked\r\n\r\n").encode(), chunks())
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b"limit" in resp
    assert sent < 16 << 20, f"the server read {sent / 2**20:.1f} MB before refusing"  # 2 MB + socket buffers
    assert srv.rss_mb() - rss0 < 25, "server memory grew with the refused upload"
    assert list((restarted["data"] / "incoming").iterdir()) == []


@requires_serve
def test_path_traversal_is_refused(
    restarted: dict[str, Any], done_job: dict[str, Any], tmp_path: Path
) -> None:
    srv, job_id, data = restarted["server"], done_job["id"], restarted["data"]
    base = f"/v1/analyses/{job_id}/report/"
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    assets = data / "jobs" / job_id / "result_files"
    (assets / "link.png").symlink_to(secret)
    with httpx.Client(base_url=srv.url, timeout=30, headers={CLIENT_HEADER: "tests"}) as c:
        assert c.get(base + "result_files/timeline.png").status_code == 200
        # no token on loopback: a foreign Host header (DNS rebinding) is refused
        assert c.get(f"/v1/analyses/{job_id}", headers={"Host": "attacker.example"}).status_code == 421
        assert c.get("/healthz", headers={"Host": f"localhost:{srv.port}"}).status_code == 200
        for bad in (
            "job.json",
            "result.json",
            "result_files/../job.json",
            "result_files/%2e%2e/job.json",
            "result_files/..%2f..%2f..%2fjob.json",
            "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "%2Fetc%2Fpasswd",
            "result_files/%5c..%5cjob.json",
            "result_files/link.png",
            "result_files/nope.png",
        ):
            r = c.get(base + bad)
            assert r.status_code == 404, (bad, r.status_code, r.text[:100])
            assert b"secret" not in r.content and b"root:" not in r.content
        for bad_id in ("..", "..%2f..%2fjobs", "%2e%2e", "x", job_id[:-1] + "!", "a" * 200):
            for suffix in ("", "/report"):
                r = c.get(f"/v1/analyses/{bad_id}{suffix}")
                assert r.status_code == 404, (bad_id, suffix, r.status_code)
            assert c.delete(f"/v1/analyses/{bad_id}").status_code in (404, 405)
        # the report folder itself a symlink (to a copy elsewhere): refused like a symlinked file
        aside = tmp_path / "elsewhere"
        assets.rename(aside)
        assets.symlink_to(aside)
        try:
            assert c.get(base + "result_files/timeline.png").status_code == 404
        finally:
            assets.unlink()
            aside.rename(assets)
        assert c.get(base + "result_files/timeline.png").status_code == 200
        # a hostile client file name is display-only: the upload lands under a random name, and control
        # and bidi characters (a right-to-left override) are dropped from the name shown
        r = upload(c, restarted["clip"], name="../../../evil\u202e<script>.mp4", asr="none", transcript=TEXT)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["filename"] == "evil<script>.mp4"
        stored = [p.name for p in (data / "jobs" / job["id"]).iterdir()]
        assert any(n.startswith("upload-") and n.endswith(".mp4") for n in stored), stored
        assert not list(data.parent.rglob("evil*"))
        assert c.delete(f"/v1/analyses/{job['id']}").json()["deleted"] is True
        assert c.get(f"/v1/analyses/{job['id']}").status_code == 404
        assert not (data / "jobs" / job["id"]).exists()


@requires_serve
def test_full_queue_answers_429(restarted: dict[str, Any], done_job: dict[str, Any]) -> None:
    srv = restarted["server"]  # --workers 1 --max-queue 1: two jobs pending at most
    with srv.client() as c:
        deadline = time.monotonic() + 60  # the job deleted by the previous test may still be running
        while time.monotonic() < deadline:
            counts = c.get("/healthz").json()["jobs"]
            if counts["queued"] + counts["running"] + counts["draining"] == 0:
                break
            time.sleep(0.3)
        ids = []
        for _ in range(2):
            r = upload(c, restarted["clip"], asr="none", transcript=TEXT)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        r = upload(c, restarted["clip"], asr="none", transcript=TEXT)
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1 and "queue is full" in r.json()["detail"]
        assert c.get(f"/v1/analyses/{ids[1]}").json()["progress"]["queue_position"] in (1, 2)
        assert c.delete(f"/v1/analyses/{ids[1]}").status_code == 200  # a queued job: cancelled at once
        r = upload(c, restarted["clip"], asr="none", transcript=TEXT)  # room again
        assert r.status_code == 202, r.text
        for jid in (ids[0], r.json()["id"]):
            assert c.delete(f"/v1/analyses/{jid}").status_code == 200


@requires_serve
def test_auth_and_bind_rules(tmp_path: Path, media: MediaFactory) -> None:
    srv = Server(tmp_path / "data", token=TOKEN)
    try:
        srv.start()
        with httpx.Client(base_url=srv.url, timeout=30, headers={CLIENT_HEADER: "tests"}) as anon:
            for method, path in (("GET", "/v1/analyses"), ("GET", "/v1/models"), ("POST", "/v1/analyses"),
                                 ("GET", "/v1/analyses/" + "a" * 24), ("DELETE", "/v1/analyses/" + "a" * 24)):  # fmt: skip
                r = anon.request(method, path)
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.headers.get("www-authenticate") == "Bearer"
            assert anon.get("/v1/analyses", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert anon.get("/v1/analyses", headers={"Authorization": TOKEN}).status_code == 401
            assert (
                anon.get("/v1/analyses", headers={"Cookie": f"dmd_token={TOKEN}"}).status_code == 401
            )  # API: header only
            r = upload(anon, media.speech_wav(TEXT))
            assert r.status_code == 401
            assert anon.get("/healthz").status_code == 200
            assert "TOKEN_REQUIRED = true" in anon.get("/").text
        with srv.client() as c:
            assert c.get("/v1/analyses").json() == {"jobs": []}
            assert c.get("/v1/models").status_code == 200
            assert c.get("/v1/analyses/" + "a" * 24).status_code == 404
    finally:
        srv.stop()
    assert list((tmp_path / "data" / "jobs").iterdir()) == []
    # a non-loopback address needs a token (or --insecure); checked before anything binds
    cmd = [
        sys.executable,
        "-m",
        "dmd_pipeline.cli.app",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
    ]
    p = subprocess.run(cmd + ["--data-dir", str(tmp_path / "d2")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--insecure" in p.stderr
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    short.chmod(0o600)
    p = subprocess.run(cmd + ["--token-file", str(short)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "shorter than 16" in p.stderr
    # a token file every user can read is refused (the token would not be a secret)
    open_file = tmp_path / "open.txt"
    open_file.write_text(TOKEN + "\n")
    open_file.chmod(0o644)
    p = subprocess.run(cmd + ["--token-file", str(open_file)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "readable by every user" in p.stderr and "chmod 600" in p.stderr


def test_job_store_expires_finished_jobs_and_keeps_others(tmp_path: Path) -> None:
    from dataclasses import asdict

    from dmd_pipeline.serve.jobs import Job, JobStore, new_job_id

    jobs = tmp_path / "jobs"
    now = time.time()
    made = {}
    for name, status, finished in (
        ("old", "done", now - 7200),
        ("fresh", "failed", now - 60),
        ("new", "done", now),
    ):
        jid = new_job_id()
        (jobs / jid).mkdir(parents=True)
        (jobs / jid / "job.json").write_text(json.dumps(asdict(Job(jid, "a.mp4", "upload-x.mp4", 1, status=status,
                                                                   created=finished - 5, finished=finished))))  # fmt: skip
        made[name] = jid
    (jobs / new_job_id()).mkdir()  # a folder without job.json (an upload a killed server never registered)
    (jobs / "not-a-job").mkdir()
    store = JobStore(tmp_path, ttl_hours=1)
    try:
        store.start()
        assert store.get(made["old"]) is None and not (jobs / made["old"]).exists()
        assert {j.id for j in store.list()} == {made["fresh"], made["new"]}
        assert store.get("../" + made["new"]) is None
    finally:
        store.close()
    assert sorted(p.name for p in jobs.iterdir()) == sorted([made["fresh"], made["new"], "not-a-job"])
