"""``dmd serve``'s WebSocket ``/v1/live``: a browser's MediaRecorder chunks (webm: opus + vp8/vp9) in, one
JSON message per finished utterance out, scored by :class:`dmd_pipeline.live.LiveRunner` (the same code as
``dmd live`` and ``dmd analyze``).

Protocol: connect to ``/v1/live`` (``?video=0`` for sound only); when the server has a token, send it first
as a text message ``{"token": "..."}`` (a browser cannot set the Authorization header on a WebSocket;
other clients may send that header instead); then binary messages, the container's bytes in order; a text
message ``{"type": "end"}`` (or closing) ends the input. The server sends ``{"type": "ready"}``, then
``{"type": "utterance", ...}`` (the ``segments[]`` entry of a result, with ``live``), ``{"type": "status",
"message"}``, and at the end ``{"type": "result", "headline", "duration", "timings"}`` or ``{"type": "error",
"detail"}``, then closes.

Guards, as for the HTTP API: the Host allowlist; a connection whose ``Origin`` is not this server is refused
(cross-site WebSocket hijacking), one without an ``Origin`` must send the bearer token or ``X-DMD-Client``.
Bounds: ``live_sessions`` live sessions at once on the server and one per client address; each at most
``live_max_s`` seconds of stream; at most ``live_max_buffer_bytes`` of input waiting for the decoder, and the
session ends when the scorer cannot keep up (a backlog over 8 utterances).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from dmd_pipeline.serve.deps import API_VERSION, CLIENT_HEADER

router = APIRouter()
_LOAD_LOCK = threading.Lock()


def _origin_problem(ws: WebSocket, token: str | None) -> str | None:
    """Why this connection may come from another site (None: it may not)."""
    host = ws.headers.get("host", "").lower()
    origin = ws.headers.get("origin")
    if origin is not None:
        if origin.lower() not in (f"http://{host}", f"https://{host}"):
            return "refused a connection from another origin (Origin)"
        return None
    auth = ws.headers.get("authorization", "")
    if auth[:7].lower() != "bearer " and not ws.headers.get(CLIENT_HEADER, "").strip():
        return f"send the header {CLIENT_HEADER} (any value) or Authorization: Bearer <token>"
    return None


def _token_ok(expected: str | None, given: str | None) -> bool:
    import hmac

    if expected is None:
        return True
    return bool(given) and hmac.compare_digest(str(given).encode("utf-8"), expected.encode("utf-8"))


def _models(app: Any) -> Any:
    """The live models of the app: loaded (and warmed up) once, on the first session."""
    with _LOAD_LOCK:
        if getattr(app.state, "live_models", None) is None:
            from dmd_pipeline.analysis.registry import load_models

            names = list(app.state.settings.model_names) or None
            app.state.live_models = load_models(names)
        return app.state.live_models


async def _refuse(ws: WebSocket, detail: str, code: int = 1008) -> None:
    await ws.send_json({"type": "error", "detail": detail})
    await ws.close(code=code)


@router.websocket(f"/{API_VERSION}/live")
async def live_socket(ws: WebSocket) -> None:  # noqa: C901 - one protocol, read top to bottom
    """Live analysis of a browser's camera and microphone (see the module docstring for the protocol)."""
    from dmd_pipeline.live import LiveOptions, LiveRunner
    from dmd_pipeline.live.source import Feed, feed_source

    app = ws.app
    settings = app.state.settings
    hosts = settings.allowed_hosts
    if hosts is not None and (ws.url.hostname or "").lower() not in hosts:
        await ws.close(code=1008)
        return
    problem = _origin_problem(ws, settings.token)
    if problem is not None:
        app.state.refused_cross_site += 1
        await ws.close(code=1008, reason=problem[:120])
        return
    await ws.accept()
    auth = ws.headers.get("authorization", "")
    if settings.token is not None and not _token_ok(settings.token, auth[7:].strip() if auth else None):
        try:
            first = json.loads(await asyncio.wait_for(ws.receive_text(), timeout=10.0))
        except (asyncio.TimeoutError, ValueError, KeyError, WebSocketDisconnect, RuntimeError):
            first = {}
        if not _token_ok(settings.token, first.get("token") if isinstance(first, dict) else None):
            await _refuse(ws, 'missing or wrong token (send {"token": ...} first)', 4401)
            return
    client = ws.client.host if ws.client else "?"
    sessions: dict[str, int] = app.state.live_sessions
    with _LOAD_LOCK:
        busy = sum(sessions.values()) >= settings.live_sessions or sessions.get(client, 0) >= 1
        if not busy:
            sessions[client] = sessions.get(client, 0) + 1
    if busy:
        await _refuse(ws, "a live session is already running (one per client; try again when it ends)", 1013)
        return
    try:
        await _session(ws, settings, client, Feed, feed_source, LiveOptions, LiveRunner)
    finally:
        with _LOAD_LOCK:
            sessions[client] -= 1
            if not sessions[client]:
                del sessions[client]


async def _session(ws: WebSocket, settings: Any, client: str, Feed: Any, feed_source: Any,  # noqa: N803
                   LiveOptions: Any, LiveRunner: Any) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def put(msg: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(out.put_nowait, msg)

    feed = Feed(settings.live_max_buffer_bytes)
    src = feed_source(feed, f"websocket:{client}", video=ws.query_params.get("video", "1") != "0")
    models = await asyncio.to_thread(_models, ws.app)
    options = LiveOptions(max_duration_s=settings.live_max_s, stall_s=30.0, retries=0, stop_on_backlog=True)
    runner = await asyncio.to_thread(
        LiveRunner, src, models, options, put, lambda m: put({"type": "status", "message": m})
    )
    if not getattr(ws.app.state, "live_warm", False):
        await asyncio.to_thread(runner.warm_up)
        ws.app.state.live_warm = True
    await ws.send_json({"type": "ready", "max_seconds": settings.live_max_s})

    def run() -> None:
        try:
            res = runner.run()
            if res is None:
                put({"type": "result", "headline": "", "duration": runner.duration, "timings": {}})
            else:
                timings = {k: v for k, v in res.timings.items() if k.startswith("live_")}
                put(
                    {"type": "result", "headline": res.headline, "duration": res.duration, "timings": timings}
                )
        except Exception as exc:  # noqa: BLE001 - said to the client, the server goes on
            put({"type": "error", "detail": str(exc)[:300]})
        finally:
            put(None)  # type: ignore[arg-type]

    worker = threading.Thread(target=run, name="dmd-live-session", daemon=True)
    worker.start()

    async def receive() -> None:
        try:
            while True:
                msg = await ws.receive()
                if msg.get("type") == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data:
                    if not feed.put(data):
                        put({"type": "error", "detail": "too much input waiting for the decoder: stopped"})
                        break
                    continue
                text = msg.get("text") or ""
                if '"end"' in text or '"stop"' in text:
                    feed.close()  # the end of the input: what was sent is still analysed
                    return
        except (WebSocketDisconnect, RuntimeError):
            pass
        runner.stop()

    reader = asyncio.create_task(receive())
    try:
        while True:
            msg = await out.get()
            if msg is None:
                break
            try:
                await ws.send_json(msg)
            except (WebSocketDisconnect, RuntimeError):
                runner.stop()
    finally:
        reader.cancel()
        runner.stop()
        await asyncio.to_thread(worker.join, 30)
        with contextlib.suppress(RuntimeError):
            await ws.close()
