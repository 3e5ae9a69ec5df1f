"""``POST /webhooks/bunjang`` as a plain ASGI handler (mounted in the Litestar app by ``app.http``).

It is the hot path of the service, so it skips the framework's per-request machinery (request and
response objects, parameter resolution): measured, that is a third more webhooks per second. In order:
refuse a body over 1 MiB (413) before reading it whole; verify the signature on the raw bytes (401);
decode; store durably with its fetch (``Ingestor``); answer 204, or 503 when storage is unavailable.

Every answer carries an ``X-Request-Id`` (the caller's, if sane, else a new one) that the request's log
lines carry as ``request_id``; every outcome is counted (``app.metrics``), and the time to answer the
deliveries that reached storage goes into the ingest latency histogram.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import structlog
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from app import metrics, signature, webhooks
from app.db import StorageUnavailable
from app.ingest import Ingestor, Outcome
from app.logs import REQUEST_ID_HEADER, request_id

log = structlog.get_logger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024
PROBLEM_MEDIA_TYPE = b"application/problem+json"
RETRY_AFTER_S = b"5"
_SIGNATURE_HEADER = signature.HEADER.lower().encode("latin-1")
_COUNTERS = {
    Outcome.ACCEPTED: metrics.WEBHOOK_ACCEPTED,
    Outcome.DUPLICATE: metrics.WEBHOOK_DUPLICATE,
    Outcome.CONFLICT: metrics.WEBHOOK_CONFLICT,
    Outcome.UNRECOGNIZED: metrics.WEBHOOK_UNRECOGNIZED,
}


class Problem(msgspec.Struct, frozen=True):
    """An RFC 9457 problem details body; ``type`` is ``urn:bunsync:problem:<slug>``."""

    type: str
    title: str
    status: int
    detail: str | None = None


def problem_body(status: int, slug: str, title: str, detail: str | None = None) -> bytes:
    """The JSON of a problem whose type is ``urn:bunsync:problem:<slug>``."""
    return msgspec.json.encode(
        Problem(type=f"urn:bunsync:problem:{slug}", title=title, status=status, detail=detail)
    )


class _TooLarge(Exception):
    pass


class WebhookEndpoint:
    """The webhook receiver: an ASGI callable bound to the secrets and the ingestor."""

    def __init__(self, secrets: tuple[str, ...], tolerance_s: int, ingestor: Ingestor) -> None:
        self._secrets = secrets
        self._tolerance_s = tolerance_s
        self._ingestor = ingestor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = time.perf_counter()
        headers = dict(scope.get("headers") or ())
        rid = request_id(headers.get(REQUEST_ID_HEADER))
        tokens = bind_contextvars(request_id=rid)
        try:
            await self._handle(scope, receive, send, headers, rid.encode("ascii"), received)
        finally:
            reset_contextvars(**tokens)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        rid: bytes,
        received: float,
    ) -> None:
        if scope.get("method") != "POST":
            metrics.WEBHOOK_METHOD_NOT_ALLOWED.inc()
            await _problem(
                send, rid, 405, "method-not-allowed", "Method not allowed", "use POST", allow=b"POST"
            )
            return
        try:
            body = await _read_body(headers, receive)
        except _TooLarge:
            metrics.WEBHOOK_TOO_LARGE.inc()
            log.warning("webhook_too_large", limit=MAX_WEBHOOK_BODY)
            await _problem(
                send,
                rid,
                413,
                "body-too-large",
                "Request body too large",
                f"the limit is {MAX_WEBHOOK_BODY} bytes",
            )
            return
        now = time.time()
        raw_header = headers.get(_SIGNATURE_HEADER)
        try:
            t = signature.verify(
                raw_header.decode("latin-1") if raw_header is not None else None,
                body,
                self._secrets,
                now,
                self._tolerance_s,
            )
        except signature.SignatureError as exc:
            metrics.WEBHOOK_REJECTED[exc.reason].inc()
            log.warning("webhook_rejected", reason=exc.reason.value, detail=exc.detail)
            await _problem(send, rid, 401, exc.reason.value, "Webhook signature rejected", exc.detail)
            return
        event = webhooks.to_event(
            body, signed_at=datetime.fromtimestamp(t, UTC), received_at=datetime.fromtimestamp(now, UTC)
        )
        try:
            outcome = await self._ingestor.submit(event)
        except StorageUnavailable as exc:
            metrics.WEBHOOK_UNAVAILABLE.inc()
            log.warning("webhook_unavailable", key=event.idempotency_key, error=str(exc))
            await _problem(
                send,
                rid,
                503,
                "storage-unavailable",
                "Storage unavailable",
                "the event was not stored; retry later",
                retry_after=RETRY_AFTER_S,
            )
            metrics.INGEST_SECONDS.observe(time.perf_counter() - received)
            return
        except Exception:
            metrics.WEBHOOK_ERROR.inc()  # answered 500 by the framework, which logs it at ERROR
            raise
        _COUNTERS[outcome].inc()
        level = log.warning if outcome is Outcome.CONFLICT else log.info
        level("webhook_" + outcome.value, key=event.idempotency_key, order_id=event.fetch_order_id)
        await _send(send, 204, [(REQUEST_ID_HEADER, rid)], b"")
        metrics.INGEST_SECONDS.observe(time.perf_counter() - received)


async def _read_body(headers: dict[bytes, bytes], receive: Receive) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; what we have is answered (or not) as usual
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_WEBHOOK_BODY:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _problem(
    send: Send,
    rid: bytes,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    retry_after: bytes | None = None,
    allow: bytes | None = None,
) -> None:
    body = problem_body(status, slug, title, detail)
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER, rid),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after))
    if allow is not None:
        headers.append((b"allow", allow))
    await _send(send, status, headers, body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
