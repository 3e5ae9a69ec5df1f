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

The URL, head and chunked-body parsing is shared with the Bunjang client (:mod:`app.http1`).
"""

from __future__ import annotations

import asyncio
import ssl

from app.http1 import MAX_HEAD, BodyTooLong, Endpoint, NothingBack, read_chunked, read_head

MAX_DRAIN = 64 * 1024
_NO_BODY = (204, 304)


class TransportError(Exception):
    """The exchange failed before a status was known (connection, protocol or timeout)."""


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
                except (NothingBack, ConnectionError):
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
            NothingBack,
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
        head = await read_head(reader)
        keep = head.keep_alive and await _drain_body(reader, head.status, head.length, head.chunked)
        if not keep:
            await self.close()
        return head.status

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None or self._conn[1].is_closing() or self._conn[0].at_eof():
            await self.close()
            e = self.endpoint
            self._conn = await asyncio.open_connection(
                e.host, e.port, ssl=self._ssl, server_hostname=e.host if self._ssl else None, limit=MAX_HEAD
            )
        return self._conn


async def _drain_body(reader: asyncio.StreamReader, status: int, length: int | None, chunked: bool) -> bool:
    """Read and drop a short body; False when the connection cannot be reused (close it)."""
    if status in _NO_BODY:
        return True
    if chunked:
        try:
            await read_chunked(reader, MAX_DRAIN)
        except BodyTooLong:
            return False
        return True
    if length is None or length > MAX_DRAIN:
        return False
    await reader.readexactly(length)
    return True
