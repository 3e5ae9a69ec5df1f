"""HTTP/1.1 client pieces shared by bunsync's two lean clients: the change feed's forwarder
(``app/feed/transport.py``) and the Bunjang client (``app/bunjang/transport.py``).

Both replaced httpx for speed (profiled, httpx with httpcore and anyio cost each path about a fifth
of ``serve``'s CPU) and need only a small subset of HTTP/1.x, read defensively:

- :class:`Endpoint`: an ``http://`` or ``https://`` URL taken apart (no spaces or control characters).
- :func:`read_head`: the final answer's status line and headers, at most :data:`MAX_HEAD` bytes (the
  stream reader's limit, :class:`asyncio.LimitOverrunError` beyond), skipping at most
  :data:`MAX_INFORMATIONAL` ``1xx`` answers; :class:`NothingBack` when the connection closed before a
  single byte (a kept-alive connection the server dropped while idle: the caller may send again).
- :func:`read_chunked`: a chunked body up to a byte limit (:class:`BodyTooLong` beyond).

Anything malformed raises ``ValueError``; the callers close the connection on any error.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
MAX_INFORMATIONAL = 5
#: Trailer lines after a chunked body, at most.
MAX_TRAILERS = 100
_HEX = frozenset(string.hexdigits)


class NothingBack(Exception):
    """The server closed the connection before sending any byte of an answer."""

    def __str__(self) -> str:
        return "the connection closed without an answer"


class BodyTooLong(Exception):
    """A body went over the reader's limit; what was read is dropped (close the connection)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to send: from an ``http://`` or ``https://`` URL (``ValueError`` otherwise)."""

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


@dataclass(frozen=True, slots=True)
class Head:
    """A final answer's status line and headers (names lower-case; a repeated header's values joined
    with ``", "``). ``keep_alive``: the connection may carry another request once the body is read;
    ``length``: the declared ``Content-Length``; ``chunked``: ``Transfer-Encoding`` ends in chunked
    (any other transfer coding: the body ends with the connection, which is then not kept)."""

    status: int
    keep_alive: bool
    length: int | None
    chunked: bool
    headers: dict[str, str]


async def read_head(reader: asyncio.StreamReader, step: Callable[[], None] | None = None) -> Head:
    """The final answer's head, skipping ``1xx`` ones; ``step`` is called before each read."""
    for _ in range(MAX_INFORMATIONAL + 1):
        if step is not None:
            step()
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise NothingBack from None
            raise
        head = parse_head(raw)
        if not 100 <= head.status < 200:
            return head
    raise ValueError(f"more than {MAX_INFORMATIONAL} informational answers")


def parse_head(raw: bytes) -> Head:
    """Parse a status line and headers ending in an empty line (``ValueError`` when malformed)."""
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not (code.isascii() and code.isdigit()) or len(code) != 3:
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    keep, length, chunked = version == "HTTP/1.1", None, False
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not colon or not name:
            raise ValueError(f"malformed header line: {line[:80]!r}")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        lowered = value.lower()
        if name == "connection" and "close" in lowered:
            keep = False
        elif name == "content-length":
            if not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise ValueError("invalid Content-Length")
            if length is not None and length != int(value):
                raise ValueError("conflicting Content-Length headers")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = lowered.endswith("chunked")
            keep = keep and chunked  # any other coding: the body ends with the connection
    return Head(int(code), keep, length, chunked, headers)


async def read_chunked(
    reader: asyncio.StreamReader, limit: int, step: Callable[[], None] | None = None
) -> bytes:
    """A chunked body (trailers read and dropped); :class:`BodyTooLong` once it passes ``limit`` bytes.

    ``step`` is called before each read (a per-read timeout)."""
    body = bytearray()
    while True:
        if step is not None:
            step()
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 8 or not _HEX.issuperset(size_text.decode("latin-1")):
            raise ValueError("invalid chunk size")
        size = int(size_text, 16)
        if len(body) + size > limit:
            raise BodyTooLong(f"over {limit} bytes")
        if size == 0:
            break
        while size:  # a large chunk is read in parts, each within one step
            if step is not None:
                step()
            part = await reader.read(min(size, 256 * 1024))
            if not part:
                raise asyncio.IncompleteReadError(bytes(body), None)
            body += part
            size -= len(part)
        if step is not None:
            step()
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")
    for _ in range(MAX_TRAILERS):
        if step is not None:
            step()
        if await reader.readuntil(b"\r\n") == b"\r\n":
            return bytes(body)
    raise ValueError(f"more than {MAX_TRAILERS} trailer lines")
