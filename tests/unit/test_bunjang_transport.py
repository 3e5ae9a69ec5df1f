"""Client behaviours that need a scripted Bunjang: paging races, concurrency, malformed answers.

These use a scripted HTTP server on 127.0.0.1 as the remote API (the only thing faked; its handlers take
an ``httpx.Request`` and return an ``httpx.Response``), for answers the sandbox does
not produce on purpose: a page that repeats an order, a body that is not JSON.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import jwt
import msgspec
import pytest

from app.bunjang import errors
from app.bunjang.client import BunjangClient
from tests.fixtures.bunjang import SECRET, T0, client_for


def listed(order_id: int, status: str, at: str) -> dict[str, object]:
    return {"id": order_id, "orderItems": [{"id": order_id * 10, "status": status, "statusUpdatedAt": at}]}


async def test_an_order_repeated_across_pages_is_yielded_once_unless_it_changed() -> None:
    pages = {
        "0": [
            listed(1, "SHIP_READY", "2026-01-01T00:00:00Z"),
            listed(2, "SHIP_READY", "2026-01-01T00:00:01Z"),
        ],
        "1": [
            listed(2, "SHIP_READY", "2026-01-01T00:00:01Z"),
            listed(3, "IN_TRANSIT", "2026-01-01T00:00:02Z"),
        ],
        "2": [listed(1, "IN_TRANSIT", "2026-01-01T00:00:03Z")],  # changed while we paged: a newer state
    }
    seen_queries: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_queries.append(dict(request.url.params))
        body = {"data": pages[request.url.params["page"]], "totalPages": 3, "totalElements": 5}
        return httpx.Response(200, json=body)

    async with client_for(handler) as client:
        orders = [o async for o in client.list_orders(T0, T0 + timedelta(days=1))]

    assert [(o.id, o.order_items[0].status) for o in orders] == [
        (1, "SHIP_READY"),
        (2, "SHIP_READY"),
        (3, "IN_TRANSIT"),
        (1, "IN_TRANSIT"),
    ]
    assert [q["page"] for q in seen_queries] == ["0", "1", "2"]
    assert {q["size"] for q in seen_queries} == {"100"}
    assert seen_queries[0]["statusUpdateStartDate"] == "2026-01-01T00:00:00Z"
    assert seen_queries[0]["statusUpdateEndDate"] == "2026-01-02T00:00:00Z"


async def test_an_empty_result_is_one_request() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"data": [], "totalPages": 0, "totalElements": 0})

    async with client_for(handler) as client:
        assert [o async for o in client.list_orders(T0, T0 + timedelta(hours=1))] == []
    assert len(calls) == 1


async def test_concurrency_is_limited() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        order_id = int(request.url.path.rsplit("/", 1)[1])
        return httpx.Response(200, json={"data": {"order": {"id": order_id}}})

    async with client_for(handler, max_concurrency=3) as client:  # type: ignore[arg-type]
        results = await asyncio.gather(*(client.get_order(i) for i in range(12)))

    assert [r.order.order.id for r in results] == list(range(12))
    assert peak == 3


async def test_every_request_carries_a_fresh_bearer_token() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(request.headers["Authorization"].removeprefix("Bearer "))
        return httpx.Response(503, json={"errorCode": "INTERNAL_ERROR", "reason": "busy"})

    async with client_for(handler, max_attempts=3) as client:
        with pytest.raises(errors.ServerError) as caught:
            await client.get_order(7)

    assert caught.value.reason == "busy"
    assert len(set(tokens)) == 3
    nonces = {jwt.decode(t, options={"verify_signature": False})["nonce"] for t in tokens}
    assert len(nonces) == 3


async def test_a_body_that_does_not_decode_is_malformed_and_keeps_the_raw_bytes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>maintenance</html>")

    async with client_for(handler) as client:
        with pytest.raises(errors.MalformedResponse) as caught:
            await client.get_order(1)

    assert caught.value.raw == b"<html>maintenance</html>"


async def test_raw_is_the_exact_body() -> None:
    body = b'{"data":{"order":{"id":5,"futureField":{"x":1}},"seller":null}}'

    async with client_for(lambda _: httpx.Response(200, content=body)) as client:
        fetched = await client.get_order(5)

    assert fetched.raw == body
    assert fetched.order.seller is None


@pytest.mark.parametrize(
    ("status", "payload", "kind", "code"),
    [
        (401, {"errorCode": "MISSING_IAT_CLAIM", "reason": "x"}, errors.AuthError, "MISSING_IAT_CLAIM"),
        (401, None, errors.AuthError, None),
        (
            403,
            {"errorCode": "NOT_ENOUGH_PERMISSION", "reason": "x"},
            errors.Forbidden,
            "NOT_ENOUGH_PERMISSION",
        ),
        (400, {"errorCode": "BAD_REQUEST", "reason": "x"}, errors.BadRequest, "BAD_REQUEST"),
        (409, None, errors.PermanentError, None),
    ],
)
async def test_non_transient_errors_are_raised_at_once(
    status: int, payload: dict[str, str] | None, kind: type[errors.BunjangError], code: str | None
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, content=msgspec.json.encode(payload) if payload else b"oops")

    async with client_for(handler) as client:
        with pytest.raises(kind) as caught:
            await client.get_order(1)

    assert type(caught.value) is kind
    assert caught.value.error_code == code and caught.value.status == status
    assert calls == 1


async def test_retry_after_as_an_http_date() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers={"Retry-After": "Thu, 01 Jan 2026 00:00:01 GMT"})
        return httpx.Response(200, json={"data": {"order": {"id": 1}}})

    fixed_now = T0.timestamp() + 0.5  # the date is 0.5 s after this client's "now"
    async with client_for(handler, clock=lambda: fixed_now) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.get_order(1)
        assert 0.45 <= loop.time() - started < 1.5
    assert calls == 2


def test_unusable_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="base URL"):
        BunjangClient("openapi.bunjang.co.kr", "key", SECRET)
    with pytest.raises(ValueError, match="base64"):
        BunjangClient("https://openapi.bunjang.co.kr", "key", "%%%")
    with pytest.raises(ValueError, match="access key"):
        BunjangClient("https://openapi.bunjang.co.kr", " ", SECRET)
