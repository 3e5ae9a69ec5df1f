"""The forwarder's HTTP client: one keep-alive HTTP/1.1 connection, one POST at a time, status only.

Why not httpx here: profiled at 200 changes/s, httpx (with httpcore and anyio) spent about a fifth of
``bunsync serve``'s CPU on the forwarder's requests, and reopened the TCP connection for every change
(a response whose body is not read closes httpcore's connection). The forwarder needs a small subset
of HTTP: POST a body, read the status line and headers, skip a short body, keep the connection. So:

- The request carries ``Content-Length`` and ``Connection: keep-alive``; redirects are never followed
  (a 3xx is just a status for the caller).
- The answer is bounded: headers at most :data:`MAX_HEAD` bytes, at most :data:`MAX_INFORMATIONAL`
  ``1xx`` answers, a body of at most :data:`MAX_DRAIN` bytes is read and dropped (``Content-Length`` or
  chunked); anything longer, a body delimited by the connection's end, ``Connection: close`` or
  HTTP/1.0 closes the connection after the status is known (the next POST opens a new one).
- Every exchange is bounded by the caller's timeout (``asyncio.timeout``); on any error the
  connection is closed. A keep-alive connection the server closed while idle (reset, or nothing at all
  came back) is reopened and the request sent once more on the spot: re-sending is always allowed (the
  consumer deduplicates by ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
MAX_DRAIN = 64 * 1024
MAX_INFORMATIONAL = 5
_NO_BODY = (204, 304)


class TransportError(Exception):
    """The exchange failed before a status was known (connection, protocol or timeout)."""


class _NothingBack(Exception):
    """The server closed the connection before sending any byte of an answer."""

    def __str__(self) -> str:
        return "the connection closed without an answer"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to POST: from an ``http://`` or ``https://`` URL (``ValueError`` otherwise)."""

    scheme: str
    host: str
    port: int
    target: str
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
            raise ValueError("must not contain spaces or control characters (percent-encode them)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = port == (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, target, host if default else f"{host}:{port}")


class Poster:
    """POSTs to one endpoint over a kept-alive connection (not safe for concurrent use)."""

    def __init__(self, url: str, *, user_agent: str = "bunsync") -> None:
        self.endpoint = Endpoint.parse(url)
        self._ssl = ssl.create_default_context() if self.endpoint.scheme == "https" else None
        e = self.endpoint
        self._prefix = (
            f"POST {e.target} HTTP/1.1\r\nHost: {e.host_header}\r\nUser-Agent: {user_agent}\r\n"
            "Connection: keep-alive\r\n"
        ).encode("ascii")
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        """Send one POST and return the answer's status code; :class:`TransportError` if there is none."""
        request = self._request(body, headers)
        try:
            async with asyncio.timeout(timeout_s):
                reused = self._conn is not None
                try:
                    return await self._exchange(request)
                except (_NothingBack, ConnectionError):
                    await self.close()
                    if not reused:
                        raise
                    return await self._exchange(request)  # the idle connection was gone: once more
        except TimeoutError:
            await self.close()
            raise TransportError(f"no answer within {timeout_s:g} s") from None
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            _NothingBack,
        ) as exc:
            await self.close()
            raise TransportError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection, if one is open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn[1].close()

    def _request(self, body: bytes, headers: dict[str, str]) -> bytes:
        if any("\r" in k + v or "\n" in k + v for k, v in headers.items()):
            raise ValueError("a header name or value contains a line break")
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return self._prefix + f"{lines}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body

    async def _exchange(self, request: bytes) -> int:
        reader, writer = await self._connection()
        writer.write(request)
        await writer.drain()
        status, keep, length, chunked = await _read_head(reader)
        keep = keep and await _drain_body(reader, status, length, chunked)
        if not keep:
            await self.close()
        return status

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None or self._conn[1].is_closing() or self._conn[0].at_eof():
            await self.close()
            e = self.endpoint
            self._conn = await asyncio.open_connection(
                e.host, e.port, ssl=self._ssl, server_hostname=e.host if self._ssl else None, limit=MAX_HEAD
            )
        return self._conn


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, bool, int | None, bool]:
    """(status, keep-alive, content-length, chunked) of the final answer, skipping 1xx ones."""
    for _ in range(MAX_INFORMATIONAL + 1):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _NothingBack from None
            raise
        status, keep, length, chunked = _parse_head(head)
        if not 100 <= status < 200:
            return status, keep, length, chunked
    raise ValueError(f"more than {MAX_INFORMATIONAL} informational answers")


def _parse_head(head: bytes) -> tuple[int, bool, int | None, bool]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    keep, length, chunked = version == "HTTP/1.1", None, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "connection" and "close" in value:
            keep = False
        elif name == "content-length":
            if not value.isdigit() or (length is not None and length != int(value)):
                raise ValueError("invalid Content-Length")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value.endswith("chunked")
            keep = keep and chunked  # any other coding: the body ends with the connection
    return int(code), keep, length, chunked


async def _drain_body(reader: asyncio.StreamReader, status: int, length: int | None, chunked: bool) -> bool:
    """Read and drop a short body; False when the connection cannot be reused (close it)."""
    if status in _NO_BODY:
        return True
    if chunked:
        return await _drain_chunked(reader)
    if length is None or length > MAX_DRAIN:
        return False
    await reader.readexactly(length)
    return True


async def _drain_chunked(reader: asyncio.StreamReader) -> bool:
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 8:
            raise ValueError("invalid chunk size")
        size = int(size_text, 16)
        total += size
        if total > MAX_DRAIN:
            return False
        if size == 0:
            break
        await reader.readexactly(size + 2)
    for _ in range(100):  # trailers, up to the empty line
        if await reader.readuntil(b"\r\n") == b"\r\n":
            return True
    return False
