"""The forwarder's HTTP client (app/feed/transport.py) against scripted servers on 127.0.0.1: it keeps
one connection alive, drains short bodies, bounds everything a hostile endpoint can send, and never
follows a redirect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from app.feed.transport import MAX_HEAD, Endpoint, Poster, TransportError

pytestmark = pytest.mark.timeout(30)

Answer = Callable[[int], bytes | None]  # request number -> raw answer (None: close without answering)


class Server:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.requests.append(head + await reader.readexactly(length))
                raw = self.answer(len(self.requests))
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/hook?x=1"
    finally:
        listener.close()


def always(raw: bytes) -> Answer:
    return lambda _: raw


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_posts_back_to_back_over_one_kept_alive_connection() -> None:
    async with serving(always(NO_CONTENT)) as (server, url):
        poster = Poster(url)
        codes = [await poster.post(b'{"n": %d}' % i, {"webhook-id": f"id-{i}"}, 5) for i in range(20)]
        await poster.close()
    assert codes == [204] * 20 and server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /hook?x=1 HTTP/1.1\r\n") and b"\r\nwebhook-id: id-0\r\n" in first
    assert first.endswith(b'Content-Length: 8\r\n\r\n{"n": 0}')


async def test_short_bodies_are_drained_and_the_connection_kept() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 500 Oops\r\ncontent-length: 2\r\n\r\nno",
    ]
    async with serving(lambda n: answers[(n - 1) % 3]) as (server, url):
        poster = Poster(url)
        codes = [await poster.post(b"{}", {}, 5) for _ in range(6)]
        await poster.close()
    assert codes == [200, 202, 500] * 2 and server.connections == 1


async def test_a_long_body_or_connection_close_ends_the_connection_not_the_forwarding() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000,
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        NO_CONTENT,
    ]
    async with serving(lambda n: answers[(n - 1) % 4]) as (server, url):
        poster = Poster(url)
        codes = [await poster.post(b"{}", {}, 5) for _ in range(4)]
        await poster.close()
    assert codes == [200, 204, 200, 204] and server.connections == 4


async def test_an_idle_connection_the_server_dropped_is_reopened_and_the_request_sent_again() -> None:
    async with serving(lambda n: None if n == 2 else NO_CONTENT) as (server, url):
        poster = Poster(url)
        assert await poster.post(b"{}", {"webhook-id": "a"}, 5) == 204
        assert await poster.post(b"{}", {"webhook-id": "b"}, 5) == 204  # 1st try: closed, no answer
        await poster.close()
    assert server.connections == 2 and [b"webhook-id: b" in r for r in server.requests] == [False, True, True]


async def test_redirects_are_statuses_never_followed() -> None:
    async with serving(
        always(b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n")
    ) as (
        server,
        url,
    ):
        poster = Poster(url)
        assert await poster.post(b"{}", {}, 5) == 301
        await poster.close()
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2x4 What\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10),
        b"HTTP/1.1 100 Continue\r\n\r\n" * 10,
    ],
)
async def test_hostile_answers_are_transport_errors_within_bounds(raw: bytes) -> None:
    async with serving(always(raw)) as (_, url):
        poster = Poster(url)
        with pytest.raises(TransportError):
            await poster.post(b"{}", {}, 2)
        await poster.close()


async def test_no_answer_within_the_timeout_is_a_transport_error() -> None:
    async with serving(always(b"HTTP/1.1 2")) as (_, url):
        poster = Poster(url)
        with pytest.raises(TransportError, match=r"no answer within 0\.3 s"):
            await poster.post(b"{}", {}, 0.3)
        await poster.close()


async def test_nothing_listening_and_bad_urls_or_headers_are_refused() -> None:
    poster = Poster("http://127.0.0.1:9/hook")
    with pytest.raises(TransportError):
        await poster.post(b"{}", {}, 2)
    with pytest.raises(ValueError, match="line break"):  # bunsync's own headers: a bug, not the network
        await poster.post(b"{}", {"x": "a\r\nInjected: 1"}, 2)
    for bad in ("ftp://h/x", "http:///x", "http://h/a b", "http://h/\x00"):
        with pytest.raises(ValueError):
            Endpoint.parse(bad)
    assert Endpoint.parse("https://shop.example/hook").host_header == "shop.example"
    assert Endpoint.parse("http://[::1]:8080").host_header == "[::1]:8080"
    assert Endpoint.parse("http://[::1]:8080").target == "/"
