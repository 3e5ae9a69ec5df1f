"""The Bunjang client's HTTP: GETs over a small pool of kept-alive HTTP/1.1 connections, every answer
bounded in time and size (the answers are hostile input).

Why not httpx: profiled at 200 webhooks/s (each one a Get Order), the fetch path took 35 % of
``bunsync serve``'s CPU, httpx with httpcore and anyio about 16 % on their own; the change feed's
forwarder made the same move (:mod:`app.feed.transport`). URL, head and chunked parsing are shared
with it (:mod:`app.http1`). What a GET to Bunjang needs, and nothing more:

- ``GET`` with a query, ``Host``, ``Authorization``, ``Accept: application/json``, ``User-Agent`` and
  ``Accept-Encoding: identity`` (no compressed bodies: the body limit is on the bytes received, and a
  body arrives exactly as stored). An answer with a ``Content-Encoding`` anyway is read as it came and
  flagged (:attr:`Answer.coded`): the client refuses it. Redirects are never followed (a 3xx is a
  status). No proxy: ``serve`` refuses to start when a proxy variable applies (``app/settings.py``).
- At most ``max_connections`` idle connections are kept (the client's semaphore bounds the ones in
  use to the same number), the most recently used first. A kept-alive connection the server closed
  while idle (reset, or closed before a single byte) is reopened and the GET sent once more on the
  spot (GET is idempotent); a failure on a fresh connection is raised.
- Time: each step (connect with TLS, send, each read) within ``timeout_s``, the whole exchange within
  ``deadline_s`` (a body that drips a byte at a time is cut); both raise
  :class:`~app.bunjang.errors.RequestTimeout`. One ``asyncio.timeout`` is rescheduled per step.
- Size: the head at most :data:`~app.http1.MAX_HEAD` bytes, the body at most ``max_body_bytes``
  (:class:`~app.bunjang.errors.ResponseTooLarge`: a declared ``Content-Length`` over it is refused
  before reading, a chunked or until-close body is cut at it). ``Content-Length``, chunked, and
  until-close bodies (HTTP/1.0 or no length: that connection is not reused); ``Connection: close``
  is honoured.
- Anything else (refused, reset, TLS or certificate failure, a malformed answer) is a
  :class:`~app.bunjang.errors.NetworkError`. On any error the connection is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlencode

from app.bunjang import errors
from app.http1 import MAX_HEAD, BodyTooLong, Endpoint, Head, NothingBack, read_chunked, read_head

_NO_BODY = (204, 304)
_READ = 256 * 1024
_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete answer: status, headers (lower-case names) and the body as received."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def coded(self) -> str | None:
        """The ``Content-Encoding`` the body came in, when it is not the identity asked for."""
        coding = self.headers.get("content-encoding", "").strip().lower()
        return coding if coding not in ("", "identity") else None


class _Bounds:
    """One ``asyncio.timeout`` moved before each step to ``min(now + step_s, deadline)``."""

    __slots__ = ("_cm", "_deadline", "_loop", "_step_s")

    def __init__(
        self, cm: asyncio.Timeout, loop: asyncio.AbstractEventLoop, step_s: float, total_s: float
    ) -> None:
        self._cm, self._loop, self._step_s = cm, loop, step_s
        self._deadline = loop.time() + total_s

    def step(self) -> None:
        self._cm.reschedule(min(self._loop.time() + self._step_s, self._deadline))

    def total_spent(self) -> bool:
        return self._loop.time() >= self._deadline - 0.001


class Getter:
    """GETs against one base URL (``ValueError`` for anything but an absolute http(s) URL)."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        timeout_s: float,
        deadline_s: float,
        max_body_bytes: int,
        headers: dict[str, str],
    ) -> None:
        self.endpoint = e = Endpoint.parse(base_url)
        if "?" in e.target:
            raise ValueError("must not carry a query")
        if any(c in k + v for k, v in headers.items() for c in "\r\n"):
            raise ValueError("a header name or value contains a line break")
        self._base_path = e.target.rstrip("/")
        self._ssl = ssl.create_default_context() if e.scheme == "https" else None
        fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head_rest = (
            f" HTTP/1.1\r\nHost: {e.host_header}\r\n{fixed}Accept-Encoding: identity\r\n"
            "Connection: keep-alive\r\nAuthorization: "
        ).encode("latin-1")
        self._max_idle = max_connections
        self._step_s, self._deadline_s, self._limit = timeout_s, deadline_s, max_body_bytes
        self._idle: list[_Connection] = []
        self._closed = False

    async def get(self, path: str, params: dict[str, str] | None, authorization: str) -> Answer:
        """One GET of ``path`` (below the base URL's path) with ``params`` as its query."""
        if "\r" in authorization or "\n" in authorization:
            raise ValueError("the Authorization value contains a line break")
        target = self._base_path + path + (f"?{urlencode(params)}" if params else "")
        request = (
            b"GET " + target.encode("ascii") + self._head_rest + authorization.encode("latin-1") + b"\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        bounds: _Bounds | None = None
        try:
            async with asyncio.timeout(None) as cm:
                bounds = _Bounds(cm, loop, self._step_s, self._deadline_s)
                return await self._exchange(request, bounds)
        except TimeoutError:
            if bounds is not None and bounds.total_spent():
                raise errors.RequestTimeout(
                    f"Bunjang's answer was not complete within {self._deadline_s:g} s"
                ) from None
            raise errors.RequestTimeout(
                f"Bunjang did not answer in time (one step over {self._step_s:g} s)"
            ) from None
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError, NothingBack) as exc:
            raise errors.NetworkError(
                f"cannot reach Bunjang ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None

    async def aclose(self) -> None:
        """Close every idle connection; later GETs are refused."""
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def _exchange(self, request: bytes, bounds: _Bounds) -> Answer:
        conn = self._take_idle()
        if conn is not None:
            try:
                return await self._on(conn, request, bounds)
            except (NothingBack, ConnectionError):
                pass  # the idle connection was gone: once more on a new one
        return await self._on(await self._open(bounds), request, bounds)

    async def _on(self, conn: _Connection, request: bytes, bounds: _Bounds) -> Answer:
        reader, writer = conn
        try:
            writer.write(request)
            bounds.step()
            await writer.drain()
            head = await read_head(reader, bounds.step)
            answer = Answer(head.status, head.headers, await self._body(reader, head, bounds))
        except BaseException:
            writer.close()
            raise
        delimited = (head.length is not None) != head.chunked or head.status in _NO_BODY
        if head.keep_alive and delimited:  # both a length and chunked: not reused (smuggling)
            self._put_idle(conn)
        else:
            writer.close()
        return answer

    async def _body(self, reader: asyncio.StreamReader, head: Head, bounds: _Bounds) -> bytes:
        if head.status in _NO_BODY:
            return b""
        coding = head.headers.get("transfer-encoding")
        if coding is not None and coding.lower() != "chunked":
            raise ValueError(f"unsupported Transfer-Encoding {coding[:40]!r}")
        if head.length is not None and not head.chunked:
            if head.length > self._limit:
                raise errors.ResponseTooLarge(
                    f"Bunjang's answer declares {head.length} bytes, over the limit of {self._limit}",
                    status=head.status,
                )
            return await _read_exactly(reader, head.length, bounds)
        try:
            if head.chunked:
                return await read_chunked(reader, self._limit, bounds.step)
            return await _read_to_close(reader, self._limit, bounds)
        except BodyTooLong:
            raise errors.ResponseTooLarge(
                f"Bunjang's answer is over the limit of {self._limit} bytes", status=head.status
            ) from None

    def _take_idle(self) -> _Connection | None:
        if self._closed:
            raise errors.ConfigurationError("the Bunjang client is closed")
        while self._idle:
            reader, writer = self._idle.pop()
            if not (writer.is_closing() or reader.at_eof()):
                return reader, writer
            writer.close()
        return None

    def _put_idle(self, conn: _Connection) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            conn[1].close()
        else:
            self._idle.append(conn)

    async def _open(self, bounds: _Bounds) -> _Connection:
        e = self.endpoint
        bounds.step()
        return await asyncio.open_connection(
            e.host, e.port, ssl=self._ssl, server_hostname=e.host if self._ssl else None, limit=MAX_HEAD
        )


async def _read_exactly(reader: asyncio.StreamReader, length: int, bounds: _Bounds) -> bytes:
    """``length`` bytes, read in parts so that each read is one step (a slow large body is not cut
    by the step timeout, only by the deadline)."""
    if length <= _READ:
        bounds.step()
        return await reader.readexactly(length)
    body = bytearray()
    while len(body) < length:
        bounds.step()
        part = await reader.read(min(length - len(body), _READ))
        if not part:
            raise asyncio.IncompleteReadError(bytes(body), length)
        body += part
    return bytes(body)


async def _read_to_close(reader: asyncio.StreamReader, limit: int, bounds: _Bounds) -> bytes:
    """A body delimited by the connection's end (HTTP/1.0, no length), cut at ``limit``."""
    body = bytearray()
    while True:
        bounds.step()
        part = await reader.read(_READ)
        if not part:
            return bytes(body)
        body += part
        if len(body) > limit:
            raise BodyTooLong(f"over {limit} bytes")
