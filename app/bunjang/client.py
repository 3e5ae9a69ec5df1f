"""``BunjangClient``: the only code in bunsync that speaks to the Bunjang Open API.

Use it as an async context manager (or call :meth:`BunjangClient.aclose`)::

    async with BunjangClient(base_url, access_key, secret_key) as client:
        fetched = await client.get_order(100)      # FetchedOrder: .order (decoded) and .raw (bytes)
        async for listed in client.list_orders(start, end):
            ...

Return values:

- :meth:`~BunjangClient.get_order` returns a :class:`~app.bunjang.types.FetchedOrder`: ``.order`` is the
  decoded ``data`` (order, seller, delivery, returns) and ``.raw`` the response body exactly as received,
  which the fetcher stores in the event log as "the order as the API returned it".
- :meth:`~BunjangClient.list_orders` yields :class:`~app.bunjang.types.ListedOrder` over any range:
  windows of at most 15 days (:func:`~app.bunjang.windows.split_windows`), every page, duplicates
  removed. :meth:`~BunjangClient.list_window` does the same for one window, so the reconciler can move
  its watermark after each window it has fully processed.

Hostile answers are bounded: every request has a total deadline (``request_deadline_s``: connecting,
sending and the whole body, so a body that drips a byte at a time is cut), every body is read as a
stream up to ``max_body_bytes`` (:class:`~app.bunjang.errors.ResponseTooLarge` beyond), a Get Order
answer must be for the order asked (:class:`~app.bunjang.errors.WrongOrder`), and a List Orders window
is read for at most the pages its first page announced, never more than ``max_pages``
(:class:`~app.bunjang.errors.ListingTooLong`). Decoding is lenient where the caller can cope: one
unreadable field never refuses a whole answer (the projections judge every field, see
``projections/events.py``). Every answer's ``Date`` header measures this host's clock skew
(:attr:`BunjangClient.clock`; Bunjang's tokens live 5 s, so the clock matters).

Behaviour: one :class:`~app.bunjang.transport.Getter` per instance (bunsync's own lean HTTP/1.1 client: a
pool of kept-alive connections, per-step timeouts, the deadline and the body limit; see that module for
why not httpx and what it reads), at most ``max_concurrency`` requests in flight (a semaphore held only
while a request is on the wire, never while backing off), a fresh JWT for every request, transient
failures retried by :mod:`app.bunjang.retry`, an ``EXPIRED_AUTH_TOKEN`` answered by one immediate retry
with a new token, and failures raised as the hierarchy of :mod:`app.bunjang.errors`. Logs carry endpoint,
order id, status and Bunjang's ``errorCode``; never the token, the keys or buyer data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from types import TracebackType
from typing import Self

import msgspec
import structlog

from app.bunjang import errors
from app.bunjang.auth import TokenMinter
from app.bunjang.clock import ClockReading, SkewWatch
from app.bunjang.retry import RetryPolicy, parse_retry_after, with_retries
from app.bunjang.transport import Answer, Getter
from app.bunjang.types import (
    ErrorBody,
    FetchedOrder,
    GetOrderResponse,
    ListedOrder,
    ListOrdersPage,
    OrderIdOnly,
    PageWire,
    listed_entry,
)
from app.bunjang.windows import Window, split_windows
from app.ops import metrics

log = structlog.get_logger(__name__)

MAX_PAGE_SIZE = 100
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_REQUEST_DEADLINE_S = 30.0
#: Pages of one 15-day window at most (100 orders each): 100,000 orders changed in 15 days.
DEFAULT_MAX_PAGES = 1000
EXPIRED_AUTH_TOKEN = "EXPIRED_AUTH_TOKEN"  # noqa: S105 - an error code, not a credential

_GET_ORDER = msgspec.json.Decoder(GetOrderResponse)
_ERROR_BODY = msgspec.json.Decoder(ErrorBody)
_ORDER_ID = msgspec.json.Decoder(OrderIdOnly)
_PAGE_WIRE = msgspec.json.Decoder(PageWire)


class BunjangClient:
    """An async client for Get Order and List Orders (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        access_key: str,
        secret_key: str,
        *,
        max_concurrency: int = 4,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        backoff_base_s: float = 0.5,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        request_deadline_s: float = DEFAULT_REQUEST_DEADLINE_S,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        """Build a client; nothing is sent until the first call.

        ``secret_key`` is the base64 text Bunjang issued. ``max_attempts`` counts the first request.
        ``clock`` (Unix seconds) stamps ``iat``. Proxies are not used (``HTTPS_PROXY`` and friends are
        ignored here; ``serve`` refuses to start when one applies, see ``app/settings.py``).
        ``timeout_s`` bounds each network step; ``request_deadline_s`` the whole request, body included.
        ``max_body_bytes`` caps every body; ``max_pages`` the pages read per List Orders window.
        Raises ``ValueError`` for unusable arguments (empty keys, non-base64 secret, bad URL).
        """
        if max_concurrency < 1 or max_attempts < 1 or timeout_s <= 0:
            raise ValueError("max_concurrency and max_attempts must be >= 1 and timeout_s > 0")
        if max_body_bytes < 1 or request_deadline_s <= 0 or max_pages < 1:
            raise ValueError("max_body_bytes and max_pages must be >= 1 and request_deadline_s > 0")
        self._max_pages = max_pages
        self._skew = SkewWatch()
        self._minter = TokenMinter(access_key, secret_key, clock=clock)
        self._retry = RetryPolicy(max_attempts, backoff_base_s, max_backoff_s)
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrency)
        try:
            self._http = Getter(
                base_url,
                max_connections=max_concurrency,
                timeout_s=timeout_s,
                deadline_s=request_deadline_s,
                max_body_bytes=max_body_bytes,
                headers={"Accept": "application/json", "User-Agent": "bunsync/0.1"},
            )
        except ValueError as exc:
            raise ValueError(
                f"Bunjang base URL must be an absolute http(s) URL, got {base_url!r}: {exc}"
            ) from None
        self._base_url = base_url

    @property
    def clock(self) -> ClockReading | None:
        """The latest clock skew measured from an answer's ``Date`` (``None`` before any)."""
        return self._skew.reading

    def __repr__(self) -> str:
        return f"BunjangClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. The client cannot be used afterwards."""
        await self._http.aclose()

    async def get_order(self, order_id: int) -> FetchedOrder:
        """Get Order: the order with items, seller, delivery and returns, plus the raw body.

        Raises :class:`~app.bunjang.errors.NotFound` (404), :class:`~app.bunjang.errors.Forbidden` (403),
        other :class:`~app.bunjang.errors.BunjangError` subclasses as described in :mod:`app.bunjang.errors`.
        """
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id < 0:
            raise ValueError(f"order_id must be a non-negative int, got {order_id!r}")
        response = await self._call("get_order", f"/api/v1/orders/{order_id}", None, order_id=order_id)
        try:
            answered = _ORDER_ID.decode(response.body).data.order.id
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise errors.MalformedResponse(
                f"Get Order {order_id} answered a body without a readable data.order.id: {exc}",
                status=response.status,
                raw=response.body,
            ) from exc
        if answered != order_id:
            raise errors.WrongOrder(f"Get Order {order_id} answered order {answered}", status=response.status)
        try:
            detail = _GET_ORDER.decode(response.body).data
        except msgspec.DecodeError:
            # One unreadable field (a price out of range, a non-integer id in a part nobody reads)
            # must not lose the answer: it is stored as returned and the projections judge each field.
            detail = None
        return FetchedOrder(order_id=answered, order=detail, raw=response.body)

    async def list_page(self, window: Window, page: int, size: int = MAX_PAGE_SIZE) -> ListOrdersPage:
        """One List Orders page (``page`` is 0-based, ``size`` at most 100) of one window."""
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
        params = {**window.query(), "page": str(page), "size": str(size)}
        response = await self._call("list_orders", "/api/v1/orders", params, page=page)
        try:
            wire = _PAGE_WIRE.decode(response.body)
        except msgspec.DecodeError as exc:
            raise errors.MalformedResponse(
                f"List Orders page {page} answered a body that does not decode: {exc}",
                status=response.status,
                raw=response.body,
            ) from exc
        orders: list[ListedOrder] = []
        for entry in wire.data:
            listed = listed_entry(entry)
            if listed is None:
                # No usable order id: nothing can be recorded for it. Counted and logged, never fatal.
                metrics.API_ANOMALIES.labels("list_entry_unreadable").inc()
                log.warning("bunjang.listed_entry_unreadable", page=page)
                continue
            orders.append(listed)
        return ListOrdersPage(
            total_pages=wire.total_pages, data=tuple(orders), total_elements=wire.total_elements
        )

    async def list_window(
        self,
        window: Window,
        *,
        page_size: int = MAX_PAGE_SIZE,
        on_page: Callable[[], None] | None = None,
    ) -> AsyncIterator[ListedOrder]:
        """Every order of one window (at most 15 days), following ``page`` from 0 until ``totalPages``;
        ``on_page`` is called once per page read.

        An order listed again with exactly the same items (id, status, ``statusUpdatedAt``) is yielded
        once; if it comes back changed it is yielded again, so a newer state is never hidden.
        """
        seen: dict[int, int] = {}
        async for order in self._window_pages(window, page_size, on_page):
            if _first_sighting(seen, order):
                yield order

    async def list_orders(
        self, start: datetime, end: datetime, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[ListedOrder]:
        """Every order with an item status change in ``[start, end]`` (timezone-aware), de-duplicated.

        The range is cut by :func:`~app.bunjang.windows.split_windows`; duplicates across windows and
        pages are removed as in :meth:`list_window`.
        """
        seen: dict[int, int] = {}
        for window in split_windows(start, end):
            async for order in self._window_pages(window, page_size):
                if _first_sighting(seen, order):
                    yield order

    async def _window_pages(
        self, window: Window, page_size: int, on_page: Callable[[], None] | None = None
    ) -> AsyncIterator[ListedOrder]:
        page = 0
        announced: int | None = None
        while True:
            result = await self.list_page(window, page, page_size)
            if on_page is not None:
                on_page()
            if announced is None:
                announced = result.total_pages
                if announced > self._max_pages:
                    raise errors.ListingTooLong(
                        f"List Orders announced {announced} pages for the window starting "
                        f"{window.start.isoformat()}, more than the {self._max_pages} bunsync reads"
                    )
            for order in result.data:
                yield order
            page += 1
            # At most what the first page announced: a page that always says "more" cannot extend a
            # pass for ever. Orders that enter the window while we page are within the next pass's
            # overlap (their statusUpdatedAt is about now). A smaller count on a later page is honoured.
            if page >= min(announced, result.total_pages) or not result.data:
                if result.total_pages > announced:
                    log.info("bunjang.window_pages_capped", announced=announced, later=result.total_pages)
                log.debug("bunjang.window_listed", start=window.start.isoformat(), pages=page)
                return

    async def _call(self, endpoint: str, path: str, params: dict[str, str] | None, **context: int) -> Answer:
        """One logical request: attempts with retries, raising the mapped error when it gives up."""

        def before_sleep(attempt: int, wait_s: float, exc: errors.TransientError) -> None:
            log.warning(
                "bunjang.retrying",
                endpoint=endpoint,
                attempt=attempt,
                wait_s=round(wait_s, 3),
                status=exc.status,
                error_code=exc.error_code,
                error=type(exc).__name__,
                **context,
            )

        return await with_retries(
            lambda: self._attempt(endpoint, path, params), self._retry, before_sleep=before_sleep
        )

    async def _attempt(self, endpoint: str, path: str, params: dict[str, str] | None) -> Answer:
        """One attempt; an expired token is re-minted and re-sent once, within the same attempt."""
        started = time.monotonic()
        response = await self._send(endpoint, path, params)
        if response.status == 401 and _error_body(response).error_code == EXPIRED_AUTH_TOKEN:
            log.info("bunjang.token_expired_reminting", endpoint=endpoint)
            response = await self._send(endpoint, path, params)
        log.debug(
            "bunjang.answered",
            endpoint=endpoint,
            status=response.status,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )
        if 200 <= response.status < 300:
            if response.coded:
                # Asked for identity: a compressed body is not what bunsync stores or limits.
                raise errors.MalformedResponse(
                    f"Bunjang {endpoint} answered with Content-Encoding {response.coded[:40]!r}, "
                    "though only identity was accepted",
                    status=response.status,
                    raw=response.body,
                )
            return response
        raise _error_for(endpoint, response, self._clock())

    async def _send(self, endpoint: str, path: str, params: dict[str, str] | None) -> Answer:
        async with self._slots:
            # Minted inside the slot, just before sending: a token must not age while waiting for one.
            authorization = f"Bearer {self._minter.mint()}"
            sent = self._clock()
            try:
                response = await self._http.get(path, params, authorization)
            except errors.ResponseTooLarge:
                metrics.BUNJANG_REQUESTS.labels(endpoint, "too_large").inc()
                raise
            except errors.BunjangError:
                metrics.BUNJANG_REQUESTS.labels(endpoint, "error").inc()
                raise
            metrics.BUNJANG_REQUESTS.labels(endpoint, str(response.status)).inc()
            self._skew.observe(response.headers.get("date"), sent, self._clock())
            return response


def _first_sighting(seen: dict[int, int], order: ListedOrder) -> bool:
    """Record ``order``; true unless the same order with the same item states was already seen."""
    # A hash keeps a long backfill's memory small; a collision (≈2**-64) would only hide one re-listing.
    fingerprint = hash(tuple((item.id, item.status, item.status_updated_at) for item in order.order_items))
    if seen.get(order.id) == fingerprint:
        return False
    seen[order.id] = fingerprint
    return True


def _error_body(response: Answer) -> ErrorBody:
    if response.coded:
        return ErrorBody()  # a compressed error body: its errorCode cannot be read
    try:
        return _ERROR_BODY.decode(response.body)
    except msgspec.DecodeError:
        return ErrorBody()


def _error_for(endpoint: str, response: Answer, now: float) -> errors.BunjangError:
    """Map a non-2xx answer to the error hierarchy, keeping Bunjang's ``errorCode`` and ``reason``."""
    status = response.status
    body = _error_body(response)
    code, reason = body.error_code, body.reason
    if status >= 500 or status in (408, 429):
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        kind: type[errors.TransientError] = errors.ServerError if status >= 500 else errors.RateLimited
        message = f"Bunjang {endpoint} failed transiently"
        return kind(message, status=status, error_code=code, reason=reason, retry_after=retry_after)
    if status == 401:
        log.error(
            "bunjang.auth_rejected",
            endpoint=endpoint,
            error_code=code,
            hint="check the Bunjang access key and secret key, and this host's clock",
        )
        message = f"Bunjang rejected the credentials ({code or 'no errorCode'})"
        return errors.AuthError(message, status=status, error_code=code, reason=reason)
    permanent: dict[int, type[errors.PermanentError]] = {
        400: errors.BadRequest,
        403: errors.Forbidden,
        404: errors.NotFound,
    }
    kind_p = permanent.get(status, errors.PermanentError)
    return kind_p(f"Bunjang refused {endpoint}", status=status, error_code=code, reason=reason)
