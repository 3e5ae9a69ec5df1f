"""The operator listener's application (Litestar): health with details, ``/status``, ``/metrics``.

It listens on ``BUNSYNC_ADMIN_HOST:BUNSYNC_ADMIN_PORT`` (loopback by default) and is built to grow:
later routes (the console, ``/api/orders/{id}``, ``/feed``) are passed as ``extra_handlers`` and are
protected like the rest by ONE guard, :func:`operator_guard`. When ``BUNSYNC_ADMIN_TOKEN`` is set,
every route needs ``Authorization: Bearer <token>`` (compared in constant time) unless its handler is
marked public (``opt=PUBLIC``: only ``/health/*`` here); otherwise the answer is 401 problem+json.
The console's sign-in form sets a session cookie that :func:`authenticated` also accepts; a browser
asking for a page without either is sent to the form.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect
from litestar.types import ControllerRouterHandler

from app.console.auth import SESSION_COOKIE, session_valid
from app.http.webhook_app import (
    Services,
    http_exception_handler,
    readiness,
    storage_unavailable,
    unexpected,
    with_request_id,
)
from app.ops import scrape, status
from app.store import migrations
from app.store.db import StorageUnavailable

OPERATOR_LISTENER = "operator"
#: ``opt`` of a handler anyone who can reach the operator listener may call (no token).
PUBLIC: dict[str, Any] = {"public": True}
_BEARER = "bearer "


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def authenticated(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant-time comparison), or
    the console's sign-in session cookie (:mod:`app.console.auth`)."""
    header = connection.headers.get("authorization", "")
    if header[: len(_BEARER)].lower() != _BEARER:
        return session_valid(connection.cookies.get(SESSION_COOKIE), token)
    given = header[len(_BEARER) :].strip().encode("latin-1")  # the header's bytes, as sent
    return hmac.compare_digest(given, token.encode("utf-8"))


def _sign_in_redirect(fallback: Any) -> Any:
    """401 on a console page a browser asked for: to the sign-in form; anything else: problem+json."""

    def handle(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 401 and request.method == "GET" and wants_html:
            return Redirect("/sign-in", status_code=303)
        result: Response[Any] = fallback(request, exc)
        return result

    return handle


def operator_guard(token: str | None) -> Any:
    """The Litestar guard of every operator route: none without a token, else bearer auth for every
    handler not marked :data:`PUBLIC`."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if token is None or handler.opt.get("public") or authenticated(connection, token):
            return
        raise NotAuthorizedException(headers={"WWW-Authenticate": 'Bearer realm="bunsync"'})

    return guard


def _json(content: bytes, status_code: int = 200) -> Response[bytes]:
    return Response(content=content, status_code=status_code, media_type="application/json")


def create_admin_app(services: Services, extra_handlers: Sequence[ControllerRouterHandler] = ()) -> Litestar:
    """The operator listener's application; ``extra_handlers`` are added to its routes (and guarded)."""
    pool = services.pool

    @get("/health/live", sync_to_thread=False, opt=PUBLIC)
    def live() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "live"}

    @get("/health/ready", opt=PUBLIC)
    async def ready() -> Response[Any]:
        """200 with the schema version, or 503 with why not."""
        problem = await readiness(pool)
        if problem is None:
            return Response({"status": "ready", "schema_version": migrations.latest_version()})
        return Response({"status": "not ready", "detail": problem}, status_code=503)

    @get("/metrics")
    async def metrics_exposition() -> Response[bytes]:
        """Prometheus text: this process's counters, and the database-wide gauges read now."""
        return Response(content=await scrape.render(pool), status_code=200, media_type=scrape.MEDIA_TYPE)

    @get("/status")
    async def status_report() -> Response[bytes]:
        """The sync health snapshot (same JSON as ``bunsync status --json``); 503 when unreachable."""
        try:
            snapshot = await status.collect(pool)
        except StorageUnavailable as exc:
            return _json(status.encode_unreachable(str(exc)), 503)
        verdict, reasons = status.assess(snapshot)
        return _json(status.encode_json(snapshot, verdict, reasons))

    return Litestar(
        route_handlers=[live, ready, metrics_exposition, status_report, *extra_handlers],
        guards=[operator_guard(services.settings.admin_token)],
        middleware=[with_request_id],
        exception_handlers={
            HTTPException: _sign_in_redirect(http_exception_handler(OPERATOR_LISTENER, services.refusals)),
            StorageUnavailable: storage_unavailable,
            Exception: unexpected,
        },
        openapi_config=None,
        logging_config=None,  # bunsync configures logging itself (app.logs)
        debug=False,
    )
