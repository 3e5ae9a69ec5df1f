"""``POST /webhooks/bunjang`` as a plain ASGI handler (mounted by ``app.http.webhook_app``).

It is the hot path of the service, so it skips the framework's per-request machinery (request and
response objects, parameter resolution): measured, that is a third more webhooks per second. In order,
cheap refusals first: a declared body over 1 MiB (413) and a signature header that is missing,
malformed or stale (401) are refused before the body is read; then the body is read (413 past 1 MiB)
and the signature verified on the raw bytes (401); decode; store durably with its fetch
(``Ingestor``); answer 204, or 503 when storage is unavailable.

Refusals close the connection (``Connection: close``: a sender that is refused has nothing more to say
on it) and are not logged one by one: they are counted (``bunsync_webhooks_total``) and summarised by
:class:`app.http.refusals.RefusalLog`, since anyone can cause them at any rate.

Every answer carries an ``X-Request-Id`` (the caller's, if sane, else a new one) that the request's log
lines carry as ``request_id``; every outcome is counted (``app.ops.metrics``), and the time to answer the
deliveries that reached storage goes into the ingest latency histogram.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import structlog
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from app.http.refusals import RefusalLog
from app.logs import REQUEST_ID_HEADER, request_id
from app.ops import metrics, rates
from app.store.db import StorageUnavailable
from app.webhook import payloads, signature
from app.webhook.ingest import Ingestor, Outcome

log = structlog.get_logger(__name__)

MAX_WEBHOOK_BODY = 1024 * 1024
# Bodies up to this size are read by any number of requests at once (Bunjang's are about 1 KB); past it
# a request needs one of LARGE_BODY_SLOTS, else it is answered 503 (Bunjang retries). So forged
# signatures on many connections holding 1 MiB bodies cannot make the process hold more than
# LARGE_BODY_SLOTS MiB of them, while real deliveries (small) are never held up.
SMALL_BODY = 64 * 1024
LARGE_BODY_SLOTS = 16
PROBLEM_MEDIA_TYPE = b"application/problem+json"
RETRY_AFTER_S = b"5"
_SIGNATURE_HEADER = signature.HEADER.lower().encode("latin-1")
_LISTENER = "webhook"  # the label of this endpoint's refusals in the summary log
_COUNTERS = {
    Outcome.ACCEPTED: metrics.WEBHOOK_ACCEPTED,
    Outcome.DUPLICATE: metrics.WEBHOOK_DUPLICATE,
    Outcome.CONFLICT: metrics.WEBHOOK_CONFLICT,
    Outcome.UNRECOGNIZED: metrics.WEBHOOK_UNRECOGNIZED,
}
# Bound at import, so every refusal reason has a series from the start (app.ops.metrics knows no reasons).
REJECTED = {r: metrics.WEBHOOKS.labels("rejected", r.value) for r in signature.Rejection}


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


class _Disconnected(Exception):
    pass


class _NoLargeBodySlot(Exception):
    pass


class _SendFailed(Exception):
    """Sending the answer failed: no other answer can be sent."""


class LargeBodies:
    """How many requests may hold a body larger than :data:`SMALL_BODY` at once."""

    def __init__(self, slots: int = LARGE_BODY_SLOTS) -> None:
        self.free = slots

    def take(self) -> None:
        """Take a slot; raise :class:`_NoLargeBodySlot` if none is free."""
        if self.free <= 0:
            raise _NoLargeBodySlot
        self.free -= 1

    def give_back(self) -> None:
        self.free += 1


class WebhookEndpoint:
    """The webhook receiver: an ASGI callable bound to the secrets, the ingestor and the refusal log."""

    def __init__(
        self, secrets: tuple[str, ...], tolerance_s: int, ingestor: Ingestor, refusals: RefusalLog
    ) -> None:
        self._secrets = secrets
        self._tolerance_s = tolerance_s
        self._ingestor = ingestor
        self._refusals = refusals
        self._large_bodies = LargeBodies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = time.perf_counter()
        headers = dict(scope.get("headers") or ())
        rid = request_id(headers.get(REQUEST_ID_HEADER))
        rid_bytes = rid.encode("ascii")
        tokens = bind_contextvars(request_id=rid)
        try:
            await self._handle(scope, receive, send, headers, rid_bytes, received)
        except _SendFailed:
            raise  # an answer may be half-written: the server logs it and closes the connection
        except Exception as exc:
            # A bug: answered here as the framework's handler would (the route may be served without it).
            log.error(
                "http_unexpected_error",
                path=scope.get("path"),
                error=type(exc).__name__,
                exc_info=exc,
                action="a bug in bunsync: report it with this log line",
            )
            await _problem(send, rid_bytes, 500, "internal-error", "Internal error", "see the bunsync logs")
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
        admitted = await self._admit(scope, receive, send, headers, rid)
        if admitted is None:
            return
        body, t, now = admitted
        event = payloads.to_event(
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
            metrics.WEBHOOK_ERROR.inc()  # answered 500 by __call__, which logs it at ERROR
            raise
        _COUNTERS[outcome].inc()
        level = log.warning if outcome is Outcome.CONFLICT else log.info
        level("webhook_" + outcome.value, key=event.idempotency_key, order_id=event.fetch_order_id)
        await _send(send, 204, [(REQUEST_ID_HEADER, rid)], b"")
        metrics.INGEST_SECONDS.observe(time.perf_counter() - received)

    async def _admit(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], rid: bytes
    ) -> tuple[bytes, int, float] | None:
        """The body, the signature's ``t`` and now, for a validly signed delivery; else answer the
        refusal (cheapest checks first, before the body is read) and return ``None``."""
        if scope.get("method") != "POST":
            metrics.WEBHOOK_METHOD_NOT_ALLOWED.inc()
            rates.REJECTED_WEBHOOKS.add()
            self._refusals.note(_LISTENER, "method-not-allowed")
            await _problem(
                send, rid, 405, "method-not-allowed", "Method not allowed", "use POST", allow=b"POST"
            )
            return None
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
            await self._too_large(send, rid)
            return None
        now = time.time()
        raw_header = headers.get(_SIGNATURE_HEADER)
        try:
            parsed = signature.check_header(
                raw_header.decode("latin-1") if raw_header is not None else None, now, self._tolerance_s
            )
            body = await _read_body(receive, headers, self._large_bodies)
            return body, signature.verify_body(parsed, body, self._secrets), now
        except signature.SignatureError as exc:
            await self._rejected(send, rid, exc)
        except _TooLarge:
            await self._too_large(send, rid)
        except _NoLargeBodySlot:
            metrics.WEBHOOK_BUSY.inc()
            self._refusals.note(_LISTENER, "large-bodies-busy")
            await _problem(
                send,
                rid,
                503,
                "busy",
                "Busy",
                f"too many bodies over {SMALL_BODY} bytes in flight; retry later",
                retry_after=RETRY_AFTER_S,
                close=True,
            )
        except _Disconnected:
            pass  # the sender hung up (or was cut by a deadline) before its body was in: no answer
        return None

    async def _rejected(self, send: Send, rid: bytes, exc: signature.SignatureError) -> None:
        REJECTED[exc.reason].inc()
        rates.REJECTED_WEBHOOKS.add()
        self._refusals.note(_LISTENER, exc.reason.value)
        await _problem(send, rid, 401, exc.reason.value, "Webhook signature rejected", exc.detail)

    async def _too_large(self, send: Send, rid: bytes) -> None:
        metrics.WEBHOOK_TOO_LARGE.inc()
        self._refusals.note(_LISTENER, "body-too-large")
        await _problem(
            send,
            rid,
            413,
            "body-too-large",
            "Request body too large",
            f"the limit is {MAX_WEBHOOK_BODY} bytes",
        )


async def _read_body(receive: Receive, headers: dict[bytes, bytes], large: LargeBodies) -> bytes:
    """The whole body (at most :data:`MAX_WEBHOOK_BODY`); past :data:`SMALL_BODY` (declared or read)
    only while holding a large-body slot."""
    declared = headers.get(b"content-length")
    holding = False
    if declared is not None and declared.isdigit() and int(declared) > SMALL_BODY:
        large.take()
        holding = True
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_WEBHOOK_BODY:
                raise _TooLarge
            if size > SMALL_BODY and not holding:
                large.take()
                holding = True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    finally:
        if holding:
            large.give_back()


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
    close: bool | None = None,
) -> None:
    body = problem_body(status, slug, title, detail)
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER, rid),
    ]
    if close if close is not None else status < 500:
        headers.append((b"connection", b"close"))  # a refused sender has nothing more to say here
    if retry_after is not None:
        headers.append((b"retry-after", retry_after))
    if allow is not None:
        headers.append((b"allow", allow))
    await _send(send, status, headers, body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    try:
        await send(start)
        await send(end)
    except Exception as exc:
        raise _SendFailed from exc
