"""``POST /webhooks/bunjang`` as a plain ASGI handler (mounted in the Litestar app by ``app.http``).

It is the hot path of the service, so it skips the framework's per-request machinery (request and
response objects, parameter resolution): measured, that is a third more webhooks per second. In order:
refuse a body over 1 MiB (413) before reading it whole; verify the signature on the raw bytes (401);
decode; store durably with its fetch (``Ingestor``); answer 204, or 503 when storage is unavailable.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import structlog
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from app import signature, webhooks
from app.db import StorageUnavailable
from app.ingest import Ingestor, Outcome

log = structlog.get_logger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024
PROBLEM_MEDIA_TYPE = b"application/problem+json"
RETRY_AFTER_S = b"5"
_SIGNATURE_HEADER = signature.HEADER.lower().encode("latin-1")


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
        if scope.get("method") != "POST":
            await _problem(send, 405, "method-not-allowed", "Method not allowed", "use POST", allow=b"POST")
            return
        headers = dict(scope.get("headers") or ())
        try:
            body = await _read_body(headers, receive)
        except _TooLarge:
            await _problem(
                send,
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
            log.warning("webhook_rejected", reason=exc.reason.value, detail=exc.detail)
            await _problem(send, 401, exc.reason.value, "Webhook signature rejected", exc.detail)
            return
        event = webhooks.to_event(
            body, signed_at=datetime.fromtimestamp(t, UTC), received_at=datetime.fromtimestamp(now, UTC)
        )
        try:
            outcome = await self._ingestor.submit(event)
        except StorageUnavailable as exc:
            log.warning("webhook_unavailable", key=event.idempotency_key, error=str(exc))
            await _problem(
                send,
                503,
                "storage-unavailable",
                "Storage unavailable",
                "the event was not stored; retry later",
                retry_after=RETRY_AFTER_S,
            )
            return
        level = log.warning if outcome is Outcome.CONFLICT else log.info
        level("webhook_" + outcome.value, key=event.idempotency_key, order_id=event.fetch_order_id)
        await _send(send, 204, [], b"")


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
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    retry_after: bytes | None = None,
    allow: bytes | None = None,
) -> None:
    body = problem_body(status, slug, title, detail)
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE), (b"content-length", str(len(body)).encode())]
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
