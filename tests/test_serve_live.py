"""``dmd serve``'s WebSocket ``/v1/live`` (in process, Starlette's test client): the guards (another origin,
no client header, a wrong token, a second session of the same client) and a real clip sent as webm chunks
(VP8 + Opus, as a browser's MediaRecorder makes them) that comes back as one message per utterance, in
order, then the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from media_factory import joined_ravdess_clips
from test_serve import HAVE_SERVE, TOKEN

pytestmark = [
    pytest.mark.serve,
    pytest.mark.skipif(not HAVE_SERVE, reason="fastapi/uvicorn/httpx not installed (pip install '.[serve]')"),
]


def _app(tmp_path: Path, token: str | None = None) -> Any:
    from dmd_pipeline.serve.app import create_app
    from dmd_pipeline.serve.deps import ServeSettings
    from dmd_pipeline.serve.jobs import JobStore

    store = JobStore(tmp_path / "data", model=["mosi-text-minilm"])
    store.incoming_dir.mkdir(parents=True)
    store.jobs_dir.mkdir(parents=True)
    return create_app(store, ServeSettings(token=token))


def _closed_with(client: Any, headers: dict[str, str]) -> int:
    from starlette.websockets import WebSocketDisconnect

    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/v1/live", headers=headers) as ws,
    ):
        ws.receive_json()
    return info.value.code


def test_live_socket_guards(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = _app(tmp_path, token=TOKEN)
    client = TestClient(app)  # no lifespan: no workers needed
    assert _closed_with(client, {"origin": "http://evil.example"}) == 1008  # cross-site WebSocket hijacking
    assert _closed_with(client, {}) == 1008  # no Origin: neither a token nor X-DMD-Client
    assert app.state.refused_cross_site == 2
    with client.websocket_connect("/v1/live", headers={"origin": "http://testserver"}) as ws:
        ws.send_json({"token": "wrong"})
        msg = ws.receive_json()
    assert msg["type"] == "error" and "token" in msg["detail"]
    app.state.live_sessions["testclient"] = 1  # this client already has a live session running
    with client.websocket_connect("/v1/live", headers={"authorization": f"Bearer {TOKEN}"}) as ws:
        msg = ws.receive_json()
    assert msg["type"] == "error" and "already running" in msg["detail"]


@pytest.fixture(scope="module")
def webm_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return joined_ravdess_clips(
        tmp_path_factory.mktemp("live-ws") / "three.webm",
        "-s 320x180 -c:v libvpx -deadline realtime -b:v 300k -c:a libopus -f webm",
    )


def test_live_socket_scores_webm_chunks(tmp_path: Path, webm_clip: Path) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(_app(tmp_path))
    data = webm_clip.read_bytes()
    msgs: list[dict] = []
    with client.websocket_connect("/v1/live", headers={"X-DMD-Client": "test"}) as ws:
        first = ws.receive_json()
        assert first["type"] == "ready", first
        for i in range(0, len(data), 16 << 10):  # MediaRecorder-sized chunks, in order
            ws.send_bytes(data[i : i + (16 << 10)])
        ws.send_json({"type": "end"})
        while True:
            msg = ws.receive_json()
            msgs.append(msg)
            if msg["type"] in ("result", "error"):
                break
    utts = [m for m in msgs if m["type"] == "utterance"]
    assert msgs[-1]["type"] == "result", msgs[-1]
    assert len(utts) == 3 and [u["index"] for u in utts] == [0, 1, 2]
    assert all(a["end"] <= b["start"] for a, b in zip(utts, utts[1:], strict=False))
    assert all(u["text"].strip() and len(u["predictions"]) >= 2 for u in utts)
    assert msgs[-1]["headline"] and msgs[-1]["timings"]["live_utterances"] == 3
    assert client.app.state.live_sessions == {}  # the session is over and counted out
