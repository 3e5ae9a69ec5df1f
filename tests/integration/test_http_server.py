"""The guarded HTTP protocol in process, over loopback sockets: what each cap answers, that ordinary
keep-alive and modest pipelining still work, and that each refusal is counted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from app.http.refusals import RefusalLog
from app.http.server import Limits, build_server

LIMITS = Limits(
    listener="test",
    header_timeout_s=0.5,
    body_timeout_s=0.5,
    write_timeout_s=0.5,
    keep_alive_s=0.5,
    max_connections=4,
    max_body_bytes=4096,
    max_header_bytes=2048,
    max_headers=8,
    max_pipelined=2,
)


async def _app(scope: dict[str, object], receive: Callable[..., object], send: Callable[..., object]) -> None:
    while (await receive()).get("more_body"):  # type: ignore[operator, attr-defined]
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


class Counting(RefusalLog):
    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    def refused(self, listener: str, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, Counting]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refusals = Counting()
    server, _ = build_server(_app, "127.0.0.1", port, LIMITS, refusals, graceful_s=1)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    yield port, refusals
    server.should_exit = True
    await task


async def exchange(port: int, data: bytes, wait_s: float = 3.0) -> tuple[bytes, bool]:
    """Send ``data``; return what came back within ``wait_s`` and whether the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    closed = False
    try:
        async with asyncio.timeout(wait_s):
            while chunk := await reader.read(65536):
                got += chunk
            closed = True
    except ConnectionError:
        closed = True  # reset by the server: closed too
    except TimeoutError:
        pass  # still open
    writer.transport.abort()
    return got, closed


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_keep_alive_and_modest_pipelining_work(served: tuple[int, Counting]) -> None:
    port, refusals = served
    got, closed = await exchange(port, GET * 3)
    assert got.count(b"HTTP/1.1 200") == 3
    assert closed  # then the idle connection is closed after keep_alive_s
    assert refusals.reasons == []


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(9)) + b"\r\n",
            431,
            "too_many_headers",
        ),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 10_000, 431, "headers_too_large"),
        (b"\x16\x03\x01 not http\r\n\r\n", 400, "bad_request"),
    ],
)
async def test_a_request_over_a_cap_is_answered_problem_json_and_closed(
    served: tuple[int, Counting], request_bytes: bytes, status: int, reason: str
) -> None:
    port, refusals = served
    got, closed = await exchange(port, request_bytes)
    assert got.startswith(b"HTTP/1.1 %d" % status)
    assert b"content-type: application/problem+json" in got
    assert b"urn:bunsync:problem:" + reason.replace("_", "-").encode() in got
    assert closed and refusals.reasons == [reason]


BIG_POST = b"POST / HTTP/1.1\r\nContent-Length: 8192\r\n\r\n" + b"a" * 8192


async def test_a_body_over_the_cap_cuts_the_request_reading_it(served: tuple[int, Counting]) -> None:
    port, refusals = served
    got, closed = await exchange(port, BIG_POST)
    assert closed and got == b""
    # Pipelined behind a request being answered: that one is answered, then the connection closed.
    got, closed = await exchange(port, GET + BIG_POST)
    assert got.count(b"HTTP/1.1 ") == got.count(b"HTTP/1.1 200") == 1 and closed
    assert refusals.reasons == ["body_too_large"] * 2


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"GET / HTTP/1.1\r\nX-Slow", "header_timeout"),
        (b"", "header_timeout"),
        (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", "body_timeout"),
    ],
)
async def test_a_slow_connection_is_cut_at_its_deadline(
    served: tuple[int, Counting], request_bytes: bytes, reason: str
) -> None:
    port, refusals = served
    loop = asyncio.get_running_loop()
    start = loop.time()
    got, closed = await exchange(port, request_bytes)
    assert closed and got == b""
    assert 0.4 < loop.time() - start < 1.5
    assert refusals.reasons == [reason]


async def test_too_many_pipelined_requests_close_the_connection(served: tuple[int, Counting]) -> None:
    port, refusals = served
    got, closed = await exchange(port, GET * 50)
    assert 1 <= got.count(b"HTTP/1.1 200") <= 1 + LIMITS.max_pipelined
    assert closed and refusals.reasons == ["pipeline_overflow"]


async def test_at_the_connection_cap_the_oldest_idle_connection_makes_room(
    served: tuple[int, Counting],
) -> None:
    port, refusals = served
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(LIMITS.max_connections)]
    got, _ = await exchange(port, GET, wait_s=0.3)
    assert got.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(idle[0][0].read(), 1) == b""  # the oldest was evicted
    assert refusals.reasons == ["connection_evicted"]
    for _, writer in idle:
        writer.transport.abort()
