"""What every route of ``dmd serve`` depends on: the settings, the job store, and who may call.

FastAPI dependencies (:func:`get_store`, :func:`get_settings`, :func:`require_token`,
:func:`require_report_access`) read ``request.app.state``, which :func:`dmd_pipeline.serve.app.create_app`
fills once, so that the routes (:mod:`.routes`) hold no state of their own and a test can build an app over
any store.

Access rules, in one place:

* the API (``/v1/...``) needs ``Authorization: Bearer <token>`` when a token is configured (compared in
  constant time); nothing else unlocks it;
* a report and its images also open with the report cookie: an HttpOnly, SameSite=Strict cookie that the
  page gets by trading the token (``POST /v1/session``) and whose value is an HMAC of the token under a
  per-start secret, so it never reveals the token, unlocks nothing but report files and dies with a restart;
* a state-changing request (POST, PUT, PATCH, DELETE) is refused (403) when the browser says it comes from
  another site (``Sec-Fetch-Site: cross-site|same-site``, or an ``Origin`` that is not this server), and it
  must carry either the bearer token or the header :data:`CLIENT_HEADER`: both are headers a page elsewhere
  cannot send without a CORS preflight, which this server never grants. With or without a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from dmd_pipeline.serve.jobs import JobStore

API_VERSION = "v1"
#: The header a state-changing request sends when it carries no bearer token (any non-empty value).
CLIENT_HEADER = "X-DMD-Client"
#: The cookie that opens reports: its value is :meth:`ServeSettings.report_key`, never the token.
REPORT_COOKIE = "dmd_report"
REPORT_COOKIE_PATH = f"/{API_VERSION}/analyses/"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiError(Exception):
    """An error answer: ``status`` and a client-safe ``detail``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.detail, self.headers = status, detail, headers or {}
        super().__init__(detail)


@dataclass(frozen=True)
class ServeSettings:
    """How the server answers: the token, the limits on the wire and on uploads, the models shown.

    ``allowed_hosts``: host names the ``Host`` header may carry (None: any). ``read_timeout_s``: the longest
    wait for a piece of a request body; ``min_upload_bytes_s``: the slowest average upload rate accepted
    once ``rate_grace_s`` have passed; ``max_uploads_per_client``: uploads one client address may have
    arriving at once."""

    token: str | None = None
    max_upload_bytes: int = 500 << 20
    model_names: tuple[str, ...] = ()
    allowed_hosts: frozenset[str] | None = None
    read_timeout_s: float = 30.0
    min_upload_bytes_s: float = 16 << 10
    rate_grace_s: float = 10.0
    max_uploads_per_client: int = 8
    live_sessions: int = 1  # live sessions (/v1/live) at once on the server (and one per client address)
    live_max_s: float = 600.0  # seconds of stream one live session may last
    live_max_buffer_bytes: int = 8 << 20  # input a live session may have waiting for its decoder
    cookie_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __repr__(self) -> str:  # never print the token
        return (
            f"ServeSettings(token={'set' if self.token else None}, max_upload_bytes={self.max_upload_bytes})"
        )

    def report_key(self) -> str | None:
        """The report cookie's value: an HMAC of the token under this start's secret (None without a token)."""
        if self.token is None:
            return None
        return hmac.new(self.cookie_secret, self.token.encode("utf-8"), hashlib.sha256).hexdigest()


def get_store(request: Request) -> JobStore:
    """The job store of the app (dependency)."""
    return request.app.state.store


def get_settings(request: Request) -> ServeSettings:
    """The settings of the app (dependency)."""
    return request.app.state.settings


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    h = request.headers.get("authorization", "")
    return h[7:].strip() if h[:7].lower() == "bearer " else None


def _same(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _unauthorized() -> ApiError:
    return ApiError(
        401, "missing or wrong token (send Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"}
    )


def require_token(request: Request) -> None:
    """Dependency of every API route: the bearer token, when one is configured."""
    settings = get_settings(request)
    if not _same(settings.token, bearer(request)):
        raise _unauthorized()


def require_report_access(request: Request) -> None:
    """Dependency of the report routes: the bearer token, or the report cookie derived from it."""
    settings = get_settings(request)
    if settings.token is None or _same(settings.token, bearer(request)):
        return
    cookie = request.cookies.get(REPORT_COOKIE)
    if not _same(settings.report_key(), cookie):
        raise _unauthorized()


def request_origin(request: Request) -> str:
    """``scheme://host[:port]`` of this server as the request addressed it."""
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def csrf_problem(request: Request) -> str | None:
    """Why a state-changing request may come from another site (None: it may not, or it is safe)."""
    if request.method not in _UNSAFE_METHODS:
        return None
    site = request.headers.get("sec-fetch-site", "").lower()
    if site in ("cross-site", "same-site"):
        return f"refused a {site} request (Sec-Fetch-Site)"
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != request_origin(request):
        return "refused a request from another origin (Origin)"
    if bearer(request) is None and not request.headers.get(CLIENT_HEADER, "").strip():
        return (
            f"send the header {CLIENT_HEADER} (any value) or Authorization: Bearer <token> with this request"
        )
    return None
