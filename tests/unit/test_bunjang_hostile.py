"""The client bounds what a hostile Bunjang can make it do: body size, request time, pages, wrong order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.bunjang import errors
from tests.fixtures.bunjang import client_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORDER = {"data": {"order": {"id": 7, "orderItems": [{"id": 70, "status": "SHIP_READY"}]}}}


async def test_a_body_over_the_limit_is_refused_without_reading_it_whole() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"data": "'
        while True:
            sent += 65536
            yield b"x" * 65536

    async with client_for(lambda r: httpx.Response(200, content=endless()), max_body_bytes=100_000) as client:
        with pytest.raises(errors.ResponseTooLarge):
            await client.get_order(7)
    assert sent < 300_000  # it stopped reading at the limit
    declared = httpx.Response(200, content=b"{}", headers={"Content-Length": "999999999"})
    async with client_for(lambda r: declared, max_body_bytes=100_000) as client:
        with pytest.raises(errors.ResponseTooLarge):
            await client.get_order(7)


async def test_a_dripping_body_is_cut_at_the_total_deadline() -> None:
    async def drip() -> AsyncIterator[bytes]:
        for byte in json.dumps(ORDER).encode():
            yield bytes([byte])
            await asyncio.sleep(0.05)  # every read is quick: only a total deadline stops this

    client = client_for(lambda r: httpx.Response(200, content=drip()), request_deadline_s=0.5, max_attempts=1)
    async with client:
        started = time.monotonic()
        with pytest.raises(errors.RequestTimeout):
            await client.get_order(7)
    assert time.monotonic() - started < 2


async def test_an_answer_for_another_order_is_refused_and_a_bad_unrelated_field_is_not() -> None:
    async with client_for(lambda r: httpx.Response(200, json=ORDER)) as client:
        with pytest.raises(errors.WrongOrder):
            await client.get_order(8)
        fetched = await client.get_order(7)
        assert fetched.order_id == 7 and fetched.order is not None
    odd = json.loads(json.dumps(ORDER))
    odd["data"]["order"]["orderItems"][0]["returnRequestId"] = "not a number"
    odd["data"]["seller"] = {"id": 2**70}
    async with client_for(lambda r: httpx.Response(200, json=odd)) as client:
        fetched = await client.get_order(7)
    assert fetched.order is None and fetched.raw == httpx.Response(200, json=odd).content


async def test_pages_are_capped_by_the_first_announcement_and_a_hard_maximum() -> None:
    asked: list[int] = []

    def endless(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        asked.append(page)
        entry = {"id": 100 + page, "orderItems": [{"id": 1000 + page, "status": "A"}]}
        return httpx.Response(200, json={"data": [entry], "totalPages": page + 2})

    async with client_for(endless) as client:
        listed = [o.id async for o in client.list_orders(T0, T0 + timedelta(days=1))]
    assert asked == [0, 1] and listed == [100, 101]

    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": 1}], "totalPages": 10**9})

    async with client_for(huge, max_pages=50) as client:
        with pytest.raises(errors.ListingTooLong):
            [o async for o in client.list_orders(T0, T0 + timedelta(days=1))]


async def test_the_clock_skew_is_measured_from_the_date_header() -> None:
    ahead = time.time() + 30

    def answer(request: httpx.Request) -> httpx.Response:
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ahead))
        return httpx.Response(200, json=ORDER, headers={"Date": date})

    async with client_for(answer) as client:
        assert client.clock is None
        await client.get_order(7)
    assert client.clock is not None and -31.5 < client.clock.skew_s < -29
