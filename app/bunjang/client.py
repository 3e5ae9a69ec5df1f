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

Behaviour: one ``httpx.AsyncClient`` per instance (timeouts, connection limits), at most
``max_concurrency`` requests in flight (a semaphore held only while a request is on the wire, never
while backing off), a fresh JWT for every request, transient failures retried by
:mod:`app.bunjang.retry`, an ``EXPIRED_AUTH_TOKEN`` answered by one immediate retry with a new token,
and failures raised as the hierarchy of :mod:`app.bunjang.errors`. Logs carry endpoint, order id, status
and Bunjang's ``errorCode``; never the token, the keys or buyer data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from types import TracebackType
from typing import Self

import httpx
import msgspec
import structlog
from tenacity import RetryCallState

from app import metrics
from app.bunjang import errors
from app.bunjang.auth import TokenMinter
from app.bunjang.retry import parse_retry_after, retrying
from app.bunjang.types import ErrorBody, FetchedOrder, GetOrderResponse, ListedOrder, ListOrdersPage
from app.bunjang.windows import Window, split_windows

log = structlog.get_logger(__name__)

MAX_PAGE_SIZE = 100
EXPIRED_AUTH_TOKEN = "EXPIRED_AUTH_TOKEN"  # noqa: S105 - an error code, not a credential

_GET_ORDER = msgspec.json.Decoder(GetOrderResponse)
_LIST_PAGE = msgspec.json.Decoder(ListOrdersPage)
_ERROR_BODY = msgspec.json.Decoder(ErrorBody)


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
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build a client; nothing is sent until the first call.

        ``secret_key`` is the base64 text Bunjang issued. ``max_attempts`` counts the first request.
        ``transport`` replaces the network (tests); ``clock`` (Unix seconds) stamps ``iat``.
        Raises ``ValueError`` for unusable arguments (empty keys, non-base64 secret, bad URL).
        """
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"Bunjang base URL must be an absolute http(s) URL, got {base_url!r}")
        if max_concurrency < 1 or max_attempts < 1 or timeout_s <= 0:
            raise ValueError("max_concurrency and max_attempts must be >= 1 and timeout_s > 0")
        self._minter = TokenMinter(access_key, secret_key, clock=clock)
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrency)
        self._http = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            headers={"Accept": "application/json", "User-Agent": "bunsync/0.1"},
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"BunjangClient(base_url={str(self._http.base_url)!r})"

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
            decoded = _GET_ORDER.decode(response.content)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise errors.MalformedResponse(
                f"Get Order {order_id} answered a body that does not decode: {exc}",
                status=response.status_code,
                raw=response.content,
            ) from exc
        return FetchedOrder(order=decoded.data, raw=response.content)

    async def list_page(self, window: Window, page: int, size: int = MAX_PAGE_SIZE) -> ListOrdersPage:
        """One List Orders page (``page`` is 0-based, ``size`` at most 100) of one window."""
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
        params = {**window.query(), "page": str(page), "size": str(size)}
        response = await self._call("list_orders", "/api/v1/orders", params, page=page)
        try:
            return _LIST_PAGE.decode(response.content)
        except msgspec.DecodeError as exc:
            raise errors.MalformedResponse(
                f"List Orders page {page} answered a body that does not decode: {exc}",
                status=response.status_code,
                raw=response.content,
            ) from exc

    async def list_window(
        self, window: Window, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[ListedOrder]:
        """Every order of one window (at most 15 days), following ``page`` from 0 until ``totalPages``.

        An order listed again with exactly the same items (id, status, ``statusUpdatedAt``) is yielded
        once; if it comes back changed it is yielded again, so a newer state is never hidden.
        """
        seen: dict[int, int] = {}
        async for order in self._window_pages(window, page_size):
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

    async def _window_pages(self, window: Window, page_size: int) -> AsyncIterator[ListedOrder]:
        page = 0
        while True:
            result = await self.list_page(window, page, page_size)
            for order in result.data:
                yield order
            page += 1
            # totalPages is re-read on every page: orders may enter the window while we page through it.
            if page >= result.total_pages or not result.data:
                log.debug("bunjang.window_listed", start=window.start.isoformat(), pages=page)
                return

    async def _call(
        self, endpoint: str, path: str, params: dict[str, str] | None, **context: int
    ) -> httpx.Response:
        """One logical request: attempts with retries, raising the mapped error when it gives up."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "bunjang.retrying",
                endpoint=endpoint,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                status=getattr(exc, "status", None),
                error_code=getattr(exc, "error_code", None),
                error=type(exc).__name__,
                **context,
            )

        controller = retrying(
            max_attempts=self._max_attempts,
            base_s=self._backoff_base_s,
            max_s=self._max_backoff_s,
            before_sleep=before_sleep,
        )
        return await controller(self._attempt, endpoint, path, params)

    async def _attempt(self, endpoint: str, path: str, params: dict[str, str] | None) -> httpx.Response:
        """One attempt; an expired token is re-minted and re-sent once, within the same attempt."""
        started = time.monotonic()
        response = await self._send(endpoint, path, params)
        if response.status_code == 401 and _error_body(response).error_code == EXPIRED_AUTH_TOKEN:
            log.info("bunjang.token_expired_reminting", endpoint=endpoint)
            response = await self._send(endpoint, path, params)
        log.debug(
            "bunjang.answered",
            endpoint=endpoint,
            status=response.status_code,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )
        if response.is_success:
            return response
        raise _error_for(endpoint, response, self._clock())

    async def _send(self, endpoint: str, path: str, params: dict[str, str] | None) -> httpx.Response:
        async with self._slots:
            # Minted inside the slot, just before sending: a token must not age while waiting for one.
            headers = {"Authorization": f"Bearer {self._minter.mint()}"}
            try:
                response = await self._http.get(path, params=params, headers=headers)
            except httpx.TimeoutException as exc:
                metrics.BUNJANG_REQUESTS.labels(endpoint, "error").inc()
                raise errors.RequestTimeout(f"Bunjang did not answer in time ({type(exc).__name__})") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
                metrics.BUNJANG_REQUESTS.labels(endpoint, "error").inc()
                raise errors.NetworkError(f"cannot reach Bunjang ({type(exc).__name__}: {exc})") from exc
            except httpx.HTTPError as exc:
                metrics.BUNJANG_REQUESTS.labels(endpoint, "error").inc()
                raise errors.ConfigurationError(
                    f"cannot send to Bunjang ({type(exc).__name__}: {exc})"
                ) from exc
            metrics.BUNJANG_REQUESTS.labels(endpoint, str(response.status_code)).inc()
            return response


def _first_sighting(seen: dict[int, int], order: ListedOrder) -> bool:
    """Record ``order``; true unless the same order with the same item states was already seen."""
    # A hash keeps a long backfill's memory small; a collision (≈2**-64) would only hide one re-listing.
    fingerprint = hash(tuple((item.id, item.status, item.status_updated_at) for item in order.order_items))
    if seen.get(order.id) == fingerprint:
        return False
    seen[order.id] = fingerprint
    return True


def _error_body(response: httpx.Response) -> ErrorBody:
    try:
        return _ERROR_BODY.decode(response.content)
    except msgspec.DecodeError:
        return ErrorBody()


def _error_for(endpoint: str, response: httpx.Response, now: float) -> errors.BunjangError:
    """Map a non-2xx answer to the error hierarchy, keeping Bunjang's ``errorCode`` and ``reason``."""
    status = response.status_code
    body = _error_body(response)
    code, reason = body.error_code, body.reason
    if status >= 500 or status in (408, 429):
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
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
