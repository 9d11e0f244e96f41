"""The connection layer of ``dmd serve``: uvicorn's h11 protocol with a time limit on request headers.

uvicorn closes idle keep-alive connections but waits forever for the headers of a request that has begun
to arrive; a client sending them one byte at a time would hold a connection for good. :func:`protocol`
returns a protocol class that closes a connection whose request headers are not complete within
``header_timeout_s`` of the connection opening (or of the previous response). Body reads are timed by
the upload route (:func:`dmd_pipeline.serve.upload.timed_chunks`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class _HeaderTimeoutProtocol(H11Protocol):
    header_timeout_s: float = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # noqa: D102 - asyncio.Protocol
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._disarm_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:  # noqa: D102
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the headers of a request are in
            self._disarm_header_timer()

    def on_response_complete(self) -> None:  # noqa: D102
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the next request's headers get the same time

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol(header_timeout_s: float) -> type[H11Protocol]:
    """An h11 protocol class for ``uvicorn.run(http=...)`` closing connections whose request headers take
    longer than ``header_timeout_s``."""
    return type(
        "HeaderTimeoutProtocol", (_HeaderTimeoutProtocol,), {"header_timeout_s": float(header_timeout_s)}
    )
