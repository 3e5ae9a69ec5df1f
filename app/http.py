"""bunsync's HTTP surface (Litestar): the webhook receiver, the health endpoints and the metrics.

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
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from app import metrics, migrations, status
from app.db import StorageUnavailable, guard
from app.ingest import Ingestor
from app.logs import REQUEST_ID_HEADER, request_id
from app.settings import Settings
from app.webhook_endpoint import MAX_WEBHOOK_BODY, PROBLEM_MEDIA_TYPE, WebhookEndpoint, problem_body

log = structlog.get_logger(__name__)

_RETRY_AFTER_S = "5"


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
    ingestor: Ingestor


_SLUG_BY_STATUS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
}


def _http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    slug = _SLUG_BY_STATUS.get(exc.status_code, "http-error")
    if exc.status_code == 413:
        return problem(413, slug, "Request body too large", f"the limit is {MAX_WEBHOOK_BODY} bytes")
    return problem(exc.status_code, slug, exc.detail or "HTTP error")


def _storage_unavailable(_: Request[Any, Any, Any], exc: StorageUnavailable) -> Response[Any]:
    log.warning("storage_unavailable", error=str(exc))
    return problem(
        503,
        "storage-unavailable",
        "Storage unavailable",
        "the database cannot be reached; retry later",
        **{"Retry-After": _RETRY_AFTER_S},
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
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


def create_app(services: Services) -> Litestar:
    """The Litestar application, bound to ``services``."""
    pool = services.pool
    endpoint = WebhookEndpoint(
        services.settings.webhook_secrets, services.settings.signature_tolerance_s, services.ingestor
    )

    @asgi("/webhooks/bunjang", is_static=False)
    async def receive_webhook(scope: Scope, receive: Receive, send: Send) -> None:
        """Verify, store durably (and enqueue a fetch), then answer 204 (see app.webhook_endpoint)."""
        await endpoint(scope, receive, send)

    @get("/health/live", sync_to_thread=False, middleware=[with_request_id])
    def live() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "live"}

    @get("/health/ready", middleware=[with_request_id])
    async def ready() -> Response[Any]:
        """200 when the database answers and its schema is the one this code expects."""

        async def schema_version() -> int:
            async with pool.acquire() as conn:
                return await migrations.current_version(conn)

        try:
            version = await guard(schema_version())
        except StorageUnavailable as exc:
            return problem(503, "not-ready", "Not ready", f"database unavailable: {exc}")
        expected = migrations.latest_version()
        if version != expected:
            return problem(503, "not-ready", "Not ready", f"schema version {version}, expected {expected}")
        return Response(content={"status": "ready", "schema_version": version}, status_code=200)

    @get("/metrics", middleware=[with_request_id])
    async def metrics_exposition() -> Response[bytes]:
        """Prometheus text: this process's counters, and the database-wide gauges read now."""
        return Response(content=await metrics.render(pool), status_code=200, media_type=metrics.MEDIA_TYPE)

    @get("/status", middleware=[with_request_id])
    async def status_report() -> Response[Any]:
        """The sync health snapshot (same JSON as ``bunsync status --json``); 503 when unreachable."""
        try:
            snapshot = await status.collect(pool)
        except StorageUnavailable as exc:
            return Response(
                content=status.encode_unreachable(str(exc)), status_code=503, media_type="application/json"
            )
        verdict, reasons = status.assess(snapshot)
        return Response(
            content=status.encode_json(snapshot, verdict, reasons),
            status_code=200,
            media_type="application/json",
        )

    return Litestar(
        route_handlers=[receive_webhook, live, ready, status_report, metrics_exposition],
        exception_handlers={
            HTTPException: _http_exception,
            StorageUnavailable: _storage_unavailable,
            Exception: _unexpected,
        },
        openapi_config=None,
        logging_config=None,  # bunsync configures logging itself (app.logs)
        debug=False,
    )
