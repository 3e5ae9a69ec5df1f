"""The sandbox's Bunjang REST API: Get Order and List Orders, as BUNJANG_API.md documents them.

Each call: optional latency (fault), then the JWT check (401 with the documented codes), then injected
faults (script or rates: 5xx, 429 with ``Retry-After``, forced expiry, slowness), then validation (400
``BAD_REQUEST``) and the answer. Every answer is counted by endpoint and status.

List Orders choices where Bunjang is silent [assumed]: an order matches when one of its items' *current*
``statusUpdatedAt`` lies in the window, both bounds inclusive; orders are sorted by id; ``page``
defaults to 0 and ``size`` to 20; a window longer than 15 days, a start after the end, a date without a
time zone or a size outside 1-100 is a 400.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import formatdate
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import FromPath
from litestar.response import Stream

from app.sandbox import hostile
from app.sandbox.faults import Endpoint
from app.sandbox.service import Sandbox
from app.sandbox.wire import error_body, get_order_body, list_orders_body

MAX_WINDOW = timedelta(days=15)
MAX_SIZE = 100
DEFAULT_SIZE = 20


class ApiAnswer(Exception):
    """A finished non-2xx answer, raised from deep in a handler and turned into the response."""

    def __init__(
        self, status: int, error_code: str, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error_code = error_code
        self.reason = reason
        self.headers = dict(headers or {})


def _json(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=dict(headers or {}))


def _date(sandbox: Sandbox) -> dict[str, str]:
    """The ``Date`` header (real time, shifted by the ``dateOffsetS`` fault): the server sends none."""
    return {"Date": formatdate(time.time() + sandbox.faults.settings.date_offset_s, usegmt=True)}


async def _guard(sandbox: Sandbox, endpoint: Endpoint, request: Request[Any, Any, Any]) -> None:
    """Latency, authentication and injected faults, common to both endpoints."""
    latency = sandbox.faults.settings.api_latency_s
    if latency > 0:
        await asyncio.sleep(latency)
    rejection = sandbox.check_auth(request.headers.get("Authorization"))
    if rejection is not None:
        raise ApiAnswer(401, rejection.error_code, rejection.reason)
    fault = sandbox.faults.api_fault(endpoint)
    if fault is None:
        return
    if fault.kind == "slow":
        await asyncio.sleep(fault.seconds)
    elif fault.kind == "expired":
        raise ApiAnswer(401, "EXPIRED_AUTH_TOKEN", "the token has expired (injected fault)")
    elif fault.kind == "throttle":
        retry_after = str(math.ceil(fault.seconds))
        raise ApiAnswer(
            429, "TOO_MANY_REQUESTS", "rate limit exceeded (injected fault)", {"Retry-After": retry_after}
        )
    else:
        raise ApiAnswer(fault.status, "INTERNAL_ERROR", "internal error (injected fault)")


async def _answer(
    sandbox: Sandbox,
    endpoint: Endpoint,
    request: Request[Any, Any, Any],
    order_id: str | None,
) -> Response[Any]:
    """Run one REST call to its answer, and count it."""
    status, headers = 200, _date(sandbox)
    try:
        await _guard(sandbox, endpoint, request)
        body = _get_order(sandbox, order_id) if order_id is not None else _list_orders(sandbox, request)
    except ApiAnswer as answer:
        status, body = answer.status, error_body(answer.error_code, answer.reason)
        headers.update(answer.headers)
    sandbox.counters.api_call(endpoint, status)
    if status == 200:
        streamed = _hostile_stream(sandbox, order_id, body, headers)
        if streamed is not None:
            return streamed
    return _json(status, body, headers)


def _hostile_stream(
    sandbox: Sandbox, order_id: str | None, body: bytes, headers: dict[str, str]
) -> Stream | None:
    """A dripping or oversize answer, when a fault asks for one."""
    s = sandbox.faults.settings
    oid = int(order_id) if order_id is not None else None
    if oid is not None and oid in s.oversize_orders:
        content = hostile.oversize(body, s.oversize_bytes)
    elif (oid is not None and oid in s.drip_orders) or (oid is None and s.drip_list):
        content = hostile.drip(body, s.drip_interval_s)
    else:
        return None
    return Stream(content=content, status_code=200, media_type=MediaType.JSON, headers=headers)


@get("/api/v1/orders/{order_id:str}")
async def get_order(
    request: Request[Any, Any, Any], order_id: FromPath[str], sandbox: NamedDependency[Sandbox]
) -> Response[Any]:
    """Get Order."""
    return await _answer(sandbox, "get_order", request, order_id)


@get("/api/v1/orders")
async def list_orders(request: Request[Any, Any, Any], sandbox: NamedDependency[Sandbox]) -> Response[Any]:
    """List Orders."""
    return await _answer(sandbox, "list_orders", request, None)


def _get_order(sandbox: Sandbox, raw_id: str) -> bytes:
    if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 18:
        raise ApiAnswer(400, "BAD_REQUEST", "orderId must be a positive integer")
    order_id = int(raw_id)
    order = sandbox.world.get(order_id)
    if order is None or sandbox.faults.is_missing(order_id):
        raise ApiAnswer(404, "RESOURCE_NOT_FOUND", f"order {order_id} not found")
    return hostile.get_order_body(get_order_body(order), order_id, sandbox.faults.settings)


def _list_orders(sandbox: Sandbox, request: Request[Any, Any, Any]) -> bytes:
    query = request.query_params
    start = _parse_date(query.get("statusUpdateStartDate"), "statusUpdateStartDate")
    end = _parse_date(query.get("statusUpdateEndDate"), "statusUpdateEndDate")
    if start > end:
        raise ApiAnswer(400, "BAD_REQUEST", "statusUpdateStartDate is after statusUpdateEndDate")
    if end - start > MAX_WINDOW:
        raise ApiAnswer(400, "BAD_REQUEST", "the date range must not exceed 15 days")
    page = _parse_int(query.get("page"), "page", default=0, low=0, high=1_000_000)
    size = _parse_int(query.get("size"), "size", default=DEFAULT_SIZE, low=1, high=MAX_SIZE)
    matching = sandbox.world.updated_between(start, end)
    total_pages = math.ceil(len(matching) / size)
    body = list_orders_body(matching[page * size : (page + 1) * size], total_pages, len(matching))
    return hostile.list_page_body(body, page, sandbox.faults.settings)


def _parse_date(value: str | None, name: str) -> datetime:
    if not value:
        raise ApiAnswer(400, "BAD_REQUEST", f"{name} is required")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiAnswer(400, "BAD_REQUEST", f"{name} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        raise ApiAnswer(400, "BAD_REQUEST", f"{name} needs a time zone (e.g. 2026-11-01T19:12:00Z)")
    return parsed


def _parse_int(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise ApiAnswer(400, "BAD_REQUEST", f"{name} must be an integer between {low} and {high}")
    return int(value)
