"""The Bunjang client's own HTTP/1.1 (app/bunjang/transport.py) against real servers on 127.0.0.1:
connections kept and reused, an idle connection the server dropped, body framings, and every bound a
hostile server can test (head size, step timeout, status line, codings)."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from app.bunjang import errors
from app.bunjang.client import BunjangClient
from app.bunjang.windows import split_windows
from tests.fixtures.bunjang import SECRET, T0, RawServer, ScriptedServer, client_for, raw_client_for

pytestmark = pytest.mark.timeout(30)
ORDER = json.dumps(
    {"data": {"order": {"id": 7, "orderItems": [{"id": 70, "status": "SHIP_READY"}]}}}
).encode()


def ok(request: httpx.Request) -> httpx.Response:
    order_id = int(request.url.path.rsplit("/", 1)[1])
    return httpx.Response(200, json={"data": {"order": {"id": order_id}}})


def answering(*answers: bytes, then_close: bool = False) -> RawServer:
    """A server that reads each request and writes the next of ``answers`` as raw bytes."""
    queue = list(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(queue.pop(0))
            await writer.drain()
            if then_close:
                return

    return RawServer(handle)


def response_200(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_one_connection_is_kept_and_reused_and_the_pool_holds_at_most_max_concurrency() -> None:
    async with client_for(ok, max_concurrency=3) as client:
        for order_id in range(5):
            assert (await client.get_order(order_id)).order_id == order_id
        assert (client.server.connections, client.server.requests) == (1, 5)
        await asyncio.gather(*(client.get_order(i) for i in range(30)))
        assert client.server.connections <= 3


async def test_an_idle_connection_the_server_dropped_is_reopened_and_the_get_sent_once_more() -> None:
    requests = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            await reader.readuntil(b"\r\n\r\n")
            requests += 1
            if requests == 2:
                return  # read the second GET, then closed without a byte: as an idle timeout races
            writer.write(response_200(ORDER))
            await writer.drain()

    async with raw_client_for(RawServer(handle), max_attempts=1) as client:
        await client.get_order(7)
        await client.get_order(7)  # one attempt: the re-send is the transport's, not a retry
        assert (client.server.connections, requests) == (2, 3)


async def test_a_fresh_connection_closed_without_an_answer_is_a_network_error() -> None:
    async with raw_client_for(answering(b"", then_close=True), max_attempts=1) as client:
        with pytest.raises(errors.NetworkError, match="without an answer"):
            await client.get_order(7)
        assert client.server.connections == 1


async def test_a_chunked_body_with_extensions_and_trailers_is_read_whole_and_the_connection_kept() -> None:
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (ORDER[:5], ORDER[5:]))
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\nX-Sum: 1\r\n\r\n"
    async with raw_client_for(answering(answer, answer)) as client:
        assert (await client.get_order(7)).raw == ORDER
        assert (await client.get_order(7)).raw == ORDER
        assert client.server.connections == 1


@pytest.mark.parametrize("size_line", [b"0x10", b"-1", b"1_0", b"", b"123456789"])
async def test_a_bad_chunk_size_is_a_network_error(size_line: bytes) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n" + ORDER
    async with raw_client_for(answering(answer), max_attempts=1) as client:
        with pytest.raises(errors.NetworkError, match="chunk"):
            await client.get_order(7)


async def test_an_http_1_0_body_runs_until_close_and_is_capped() -> None:
    async with raw_client_for(answering(b"HTTP/1.0 200 OK\r\n\r\n" + ORDER, then_close=True)) as client:
        assert (await client.get_order(7)).raw == ORDER
    endless = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 300_000  # no length at all: until close, capped
    async with raw_client_for(answering(endless), max_body_bytes=100_000) as client:
        with pytest.raises(errors.ResponseTooLarge):
            await client.get_order(7)


async def test_connection_close_is_honoured() -> None:
    def closing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=ORDER, headers={"Connection": "close"})

    async with client_for(closing) as client:
        for _ in range(3):
            await client.get_order(7)
        assert (client.server.connections, client.server.requests) == (3, 3)


async def test_a_silent_server_is_a_timeout_after_one_step() -> None:
    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{")
        await asyncio.sleep(30)  # then nothing

    async with raw_client_for(RawServer(stalled), timeout_s=0.3, max_attempts=1) as client:
        started = time.monotonic()
        with pytest.raises(errors.RequestTimeout, match="did not answer in time"):
            await client.get_order(7)
        assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"".join(b"HTTP/1.1 100 Continue\r\n\r\n" for _ in range(10)),
    ],
    ids=["http2", "garbage", "status", "header", "length", "lengths", "coding", "head-size", "1xx"],
)
async def test_a_malformed_answer_is_a_network_error(answer: bytes) -> None:
    async with raw_client_for(answering(answer), max_attempts=1) as client:
        with pytest.raises(errors.NetworkError) as caught:
            await client.get_order(7)
    assert type(caught.value) is errors.NetworkError


async def test_informational_answers_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + response_200(ORDER)
    async with raw_client_for(answering(answer)) as client:
        assert (await client.get_order(7)).raw == ORDER


async def test_identity_is_asked_and_a_compressed_body_is_refused_with_the_bytes_received() -> None:
    seen: list[httpx.Headers] = []
    packed = gzip.compress(ORDER)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, content=packed, headers={"Content-Encoding": "gzip"})

    async with client_for(handler, max_attempts=1) as client:
        with pytest.raises(errors.MalformedResponse, match="gzip") as caught:
            await client.get_order(7)
    assert caught.value.raw == packed
    assert seen[0]["Accept-Encoding"] == "identity"
    assert seen[0]["Accept"] == "application/json" and seen[0]["User-Agent"].startswith("bunsync/")
    assert seen[0]["Authorization"].startswith("Bearer ey")


async def test_a_compressed_error_body_keeps_its_status_and_is_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        body = gzip.compress(b'{"errorCode": "INTERNAL_ERROR"}')
        return httpx.Response(503, content=body, headers={"Content-Encoding": "gzip"})

    async with client_for(handler, max_attempts=2) as client:
        with pytest.raises(errors.ServerError) as caught:
            await client.get_order(7)
    assert caught.value.status == 503 and caught.value.error_code is None and calls == 2


async def test_the_base_url_path_and_the_query_are_sent() -> None:
    targets: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        targets.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"data": [], "totalPages": 0})

    server = ScriptedServer(handler)
    try:
        async with BunjangClient(server.url + "/gateway/", "key", SECRET) as client:
            await client.list_page(split_windows(T0, T0.replace(day=2))[0], 3, 50)
    finally:
        await server.aclose()
    path, _, query = targets[0].partition("?")
    assert path == "/gateway/api/v1/orders"
    assert dict(httpx.QueryParams(query)) == {
        "statusUpdateStartDate": "2026-01-01T00:00:00Z",
        "statusUpdateEndDate": "2026-01-02T00:00:00Z",
        "page": "3",
        "size": "50",
    }


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (key, cert)."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *("/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


async def test_https_verifies_the_certificate(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ScriptedServer(ok, tls=context)
    assert server.url.startswith("https://")
    async with raw_client_for(server, max_attempts=1) as client:
        with pytest.raises(errors.NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get_order(7)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now this host trusts it
    async with raw_client_for(ScriptedServer(ok, tls=context), max_attempts=1) as client:
        for _ in range(3):
            assert (await client.get_order(7)).order_id == 7
        assert client.server.connections == 1


async def test_a_closed_client_sends_nothing() -> None:
    client = client_for(ok)
    await client.get_order(1)
    await client.aclose()
    with pytest.raises(errors.ConfigurationError, match="closed"):
        await client.get_order(1)
    assert client.server.requests == 1
