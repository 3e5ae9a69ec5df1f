"""The webhook listener's application (Litestar), and what both listeners' applications share.

The webhook listener faces the internet, so it serves only ``POST /webhooks/bunjang``,
``GET /health/live`` and ``GET /health/ready``; every other path is 404, and no answer reveals
internals (no database error text, versions, paths or counts). ``/status`` and ``/metrics`` are on the
operator listener (``app.http.operator_app``).

Every error answer is ``application/problem+json`` (RFC 9457) with a stable ``type``:
``urn:bunsync:problem:<slug>``. The webhook route never answers 2xx unless the event is durable, and
answers 503 (which Bunjang retries) rather than 500 when storage is unavailable. Every answer carries an
``X-Request-Id`` (the caller's, if sane, else a new one); the request's log lines carry it as
``request_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from litestar import Litestar, Request, Response, asgi, get
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from app.http.refusals import RefusalLog
from app.logs import REQUEST_ID_HEADER, request_id
from app.settings import Settings
from app.store import migrations
from app.store.db import StorageUnavailable, guard
from app.webhook.endpoint import MAX_WEBHOOK_BODY, PROBLEM_MEDIA_TYPE, WebhookEndpoint, problem_body
from app.webhook.ingest import Ingestor

log = structlog.get_logger(__name__)

_RETRY_AFTER_S = "5"
WEBHOOK_LISTENER = "webhook"
WEBHOOK_PATH = "/webhooks/bunjang"


def problem(status: int, slug: str, title: str, detail: str | None = None, **headers: str) -> Response[Any]:
    """An ``application/problem+json`` response whose ``type`` is ``urn:bunsync:problem:<slug>``."""
    return Response(
        content=problem_body(status, slug, title, detail),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE.decode(),
        headers=headers or None,
    )


@dataclass(frozen=True, slots=True)
class Services:
    """What the HTTP handlers need, built once by ``bunsync serve`` and passed in explicitly."""

    settings: Settings
    pool: asyncpg.Pool
    refusals: RefusalLog


_SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
}
_TITLE_BY_STATUS = {400: "Bad request", 401: "Unauthorized", 404: "Not found", 405: "Method not allowed"}


def http_exception_handler(listener: str, refusals: RefusalLog) -> Any:
    """The framework's 4xx as problem+json, counted as refusals of ``listener`` (never logged one by
    one). Only a fixed title per status is shown: the framework's own detail may name internals."""

    def handle(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        slug = _SLUG_BY_STATUS.get(exc.status_code, "http-error")
        refusals.refused(listener, slug.replace("-", "_"))
        if exc.status_code == 413:
            return problem(413, slug, "Request body too large", f"the limit is {MAX_WEBHOOK_BODY} bytes")
        title = _TITLE_BY_STATUS.get(exc.status_code, "HTTP error")
        return problem(exc.status_code, slug, title, None, **(exc.headers or {}))

    return handle


def storage_unavailable(_: Request[Any, Any, Any], exc: StorageUnavailable) -> Response[Any]:
    """503 with ``Retry-After``; the cause goes to the log, never into the answer."""
    log.warning("storage_unavailable", error=str(exc))
    return problem(
        503,
        "storage-unavailable",
        "Storage unavailable",
        "the database cannot be reached; retry later",
        **{"Retry-After": _RETRY_AFTER_S},
    )


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """500 without details (they are in the ERROR line, with what to do)."""
    log.error(
        "http_unexpected_error",
        path=request.url.path,
        error=type(exc).__name__,
        exc_info=exc,
        action="a bug in bunsync: report it with this log line",
    )
    return problem(500, "internal-error", "Internal error", "see the bunsync logs")


def with_request_id(app: ASGIApp) -> ASGIApp:
    """Middleware for the framework's routes: bind a request id to the request's log lines and return
    it in ``X-Request-Id`` (the webhook route does the same itself, more cheaply)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id(dict(scope["headers"]).get(REQUEST_ID_HEADER))
        header = (REQUEST_ID_HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        tokens = bind_contextvars(request_id=rid)
        try:
            await app(scope, receive, send_with_id)
        finally:
            reset_contextvars(**tokens)

    return middleware


async def readiness(pool: asyncpg.Pool) -> str | None:
    """``None`` when the database answers and its schema is the one this code expects, else why not
    (for the operator listener only: it may name the driver's error)."""

    async def schema_version() -> int:
        async with pool.acquire() as conn:
            return await migrations.current_version(conn)

    try:
        version = await guard(schema_version())
    except StorageUnavailable as exc:
        return f"database unavailable: {exc}"
    expected = migrations.latest_version()
    if version != expected:
        return f"schema version {version}, expected {expected}"
    return None


def create_app(services: Services, ingestor: Ingestor) -> ASGIApp:
    """The webhook listener's application, bound to ``services`` and the process's ingestor.

    It is the Litestar application of :func:`litestar_app`, except that a request for exactly
    :data:`WEBHOOK_PATH` goes straight to the endpoint, which the Litestar route would call anyway:
    the router, its exception middleware and its send wrapper cost about a tenth of the process's CPU
    under a webhook flood, and the endpoint needs none of them (it answers every outcome itself, even
    its own bugs, as the framework's handlers would). Any other path, including variants the router
    would map to the same route, is the framework's.
    """
    settings = services.settings
    endpoint = WebhookEndpoint(
        settings.webhook_secrets, settings.signature_tolerance_s, ingestor, services.refusals
    )
    app = litestar_app(services, endpoint)

    async def listener(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["path"] == WEBHOOK_PATH:
            await endpoint(scope, receive, send)
        else:
            await app(scope, receive, send)

    return listener


def litestar_app(services: Services, endpoint: WebhookEndpoint) -> Litestar:
    """The webhook listener's routes, handlers and error answers (see the module docstring)."""
    pool = services.pool

    @asgi(WEBHOOK_PATH, is_static=False)
    async def receive_webhook(scope: Scope, receive: Receive, send: Send) -> None:
        """Verify, store durably (and enqueue a fetch), then answer 204 (see app.webhook.endpoint)."""
        await endpoint(scope, receive, send)

    @get("/health/live", sync_to_thread=False, middleware=[with_request_id])
    def live() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "live"}

    @get("/health/ready", middleware=[with_request_id])
    async def ready() -> Response[Any]:
        """200 ``{"status": "ready"}`` or 503 ``{"status": "not ready"}``: nothing more, to anyone."""
        if await readiness(pool) is None:
            return Response(content={"status": "ready"}, status_code=200)
        return Response(content={"status": "not ready"}, status_code=503)

    return Litestar(
        route_handlers=[receive_webhook, live, ready],
        exception_handlers={
            HTTPException: http_exception_handler(WEBHOOK_LISTENER, services.refusals),
            StorageUnavailable: storage_unavailable,
            Exception: unexpected,
        },
        openapi_config=None,
        logging_config=None,  # bunsync configures logging itself (app.logs)
        debug=False,
    )
