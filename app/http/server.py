"""The HTTP server under both listeners: uvicorn with httptools, plus the limits they lack.

uvicorn's own options do not bound what a hostile client can make the process hold: no header or body
read timeout, no cap on header size or count (httptools accumulates an unfinished header value
without limit), pipelined requests are queued without limit (reading resumes after every response),
and ``limit_concurrency`` answers 503 only after a connection is accepted and a request parsed. Other
servers were considered (granian enforces some of this natively but runs the application in worker
processes of its own, away from the service's event loop, pool and group commit; hypercorn is h11 in
pure Python, slower than httptools on the hot path), so bunsync keeps uvicorn + httptools and adds, in
:class:`GuardedProtocol` (a subclass of uvicorn's httptools protocol):

- a **header deadline** from the connection's first byte (or a request's first byte after keep-alive)
  to the end of its headers, and a **body deadline** from the end of the headers to the end of the body:
  a connection that misses one is cut (slowloris, slow bodies);
- a cap on **header bytes** (request line included) and on the **number of headers**: 431;
- a cap on the **body** at the transport (above the application's own 413), so that no request, not
  even one queued behind another, holds more than that;
- a cap on **pipelined requests** per connection: past it, the connection is answered up to where it
  is and closed;
- a cap on **open connections** per listener: at the cap, a new connection evicts the oldest one that
  has no request in progress (idle, or still sending its headers), else it is answered 503 and closed;
- a **write deadline**: a client that stops reading its answers is cut once its buffer is full.

Every refusal goes to :class:`app.http.refusals.RefusalLog` (counted, logged as a periodic summary). Parsing
is fed in slices so the header-byte count is exact to a slice, and nothing here keeps more than one
slice beyond the caps, whatever arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httptools
import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.http.refusals import RefusalLog
from app.webhook.endpoint import PROBLEM_MEDIA_TYPE, problem_body

log = structlog.get_logger(__name__)

_SLICE = 4096  # bytes fed to the parser at once: the header-byte count is exact to this
# Deadlines are checked by one sweep per listener this often, not by a timer per request: a request
# then costs an assignment, not a timer scheduled and cancelled three times.
SWEEP_S = 0.25


@dataclass(frozen=True, slots=True)
class Limits:
    """What one listener allows a connection; ``listener`` labels its refusals (metrics, logs)."""

    listener: str
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_body_bytes: int
    write_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64
    max_pipelined: int = 8


@dataclass(slots=True)
class Listener:
    """One listener's limits and shared state: the connections that could be evicted, oldest first."""

    limits: Limits
    refusals: RefusalLog
    evictable: dict[GuardedProtocol, None] = field(default_factory=dict)
    watched: set[GuardedProtocol] = field(default_factory=set)
    _sweep: asyncio.TimerHandle | None = None

    def watch(self, connection: GuardedProtocol) -> None:
        """Check ``connection``'s deadline every :data:`SWEEP_S` until it is lost."""
        self.watched.add(connection)
        if self._sweep is None:
            self._sweep = connection.loop.call_later(SWEEP_S, self._tick, connection.loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in [c for c in self.watched if c.deadline <= now]:
            connection.expire()
        self._sweep = loop.call_later(SWEEP_S, self._tick, loop) if self.watched else None

    def evict_oldest(self, newcomer: GuardedProtocol) -> bool:
        """Cut the oldest connection with no request in progress; False if there is none."""
        for victim in self.evictable:
            if victim is not newcomer:
                victim.cut("connection_evicted")
                return True
        return False


class _Refused(Exception):
    def __init__(self, status: int, reason: str, title: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.title = title


def raw_problem(status: int, reason: str, title: str) -> bytes:
    """A whole HTTP/1.1 answer carrying a problem+json body, closing the connection."""
    body = problem_body(status, reason.replace("_", "-"), title)
    head = (
        f"HTTP/1.1 {status} {title}\r\ncontent-type: {PROBLEM_MEDIA_TYPE.decode()}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines and caps (see the module docstring)."""

    def __init__(self, *args: Any, listener: Listener, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener = listener
        self._limits = listener.limits
        self.deadline = float("inf")  # loop time by which the current phase must be over
        self._timer_reason = ""
        self._write_timer: asyncio.TimerHandle | None = None
        self._in_headers = True  # from the connection's start: the first request's headers are due
        self._header_bytes = 0
        self._header_count = 0
        self._body_bytes = 0
        self._running: RequestResponseCycle | None = None
        self._refusing = False

    # -------------------------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._listener.watch(self)
        self._arm(self._limits.header_timeout_s, "header_timeout")
        if len(self.connections) > self._limits.max_connections and not self._listener.evict_oldest(self):
            self._listener.refusals.refused(self._limits.listener, "connection_limit")
            self._answer_and_close(_Refused(503, "connection_limit", "Service Unavailable"))
            return
        self._listener.evictable[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._listener.evictable.pop(self, None)
        self._listener.watched.discard(self)
        self.pipeline.clear()
        super().connection_lost(exc)

    def cut(self, reason: str) -> None:
        """Drop the connection now (no answer, nothing flushed) and count why."""
        self._listener.refusals.refused(self._limits.listener, reason)
        self._listener.evictable.pop(self, None)
        self._refusing = True
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refusing or self.transport.is_closing():
            return  # what a refused or closing connection still sends is dropped unread
        try:
            if len(data) <= _SLICE:  # the common case: a whole small request
                self._feed(data)
                return
            view = memoryview(data)
            for start in range(0, len(view), _SLICE):
                self._feed(view[start : start + _SLICE])
        except _Refused as refusal:
            self._refuse(refusal)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades here: answer the request as it came, then close.
            self._refuse(_Refused(400, "upgrade_refused", "Bad Request"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            bad = _Refused(400, "bad_request", "Bad Request")
            self._refuse(cause if isinstance(cause, _Refused) else bad)

    def _feed(self, piece: bytes | memoryview) -> None:
        self.parser.feed_data(piece)
        if self._in_headers:
            self._header_bytes += len(piece)
            if self._header_bytes > self._limits.max_header_bytes:
                raise _Refused(431, "headers_too_large", "Request Header Fields Too Large")

    # ------------------------------------------------------------------------------ parser events

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = self._header_count = self._body_bytes = 0
        if self._timer_reason != "header_timeout":  # the first request's deadline runs from connect
            self._arm(self._limits.header_timeout_s, "header_timeout")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            raise _Refused(431, "too_many_headers", "Request Header Fields Too Large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._listener.evictable.pop(self, None)
        if self._busy() and len(self.pipeline) >= self._limits.max_pipelined:
            raise _Refused(429, "pipeline_overflow", "Too Many Requests")
        self._arm(self._limits.body_timeout_s, "body_timeout")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            raise _Refused(413, "body_too_large", "Content Too Large")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            self._arm(self._limits.write_timeout_s, "write_timeout")  # the close waits for a flush
            return
        if self._refusing:
            self._close_gracefully()
            return
        if not self._busy():
            self._listener.evictable.pop(self, None)
            self._listener.evictable[self] = None  # nothing in progress: evictable again, as the newest
            if not self._timer_reason:
                self._arm(self._limits.keep_alive_s, "idle")

    # --------------------------------------------------------------------------------- writing

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self._limits.write_timeout_s, self.cut, "write_timeout")

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    # --------------------------------------------------------------------------------- helpers

    def _busy(self) -> bool:
        """Whether a request of this connection is being answered (nothing else may be written)."""
        r = self._running
        return r is not None and not r.response_complete and not r.disconnected

    def _refuse(self, refusal: _Refused) -> None:
        if self._busy() and self._running is self.cycle and not self._in_headers:
            # The request being answered is the one refused (its body is over the cap): the
            # application owns its answer and waits for a body that will not come, so cut now.
            self.cut(refusal.reason)
            return
        self._listener.refusals.refused(self._limits.listener, refusal.reason)
        self._refusing = True
        self.pipeline.clear()
        self.flow.pause_reading()
        if self._busy():
            # An answer is being written: the refused request gets none; close once it is done.
            assert self._running is not None
            self._running.keep_alive = False
            self._arm(self._limits.body_timeout_s + self._limits.write_timeout_s, "write_timeout")
        else:
            self._answer_and_close(refusal)

    def _answer_and_close(self, refusal: _Refused) -> None:
        self._refusing = True
        if not self.transport.is_closing():
            self.transport.write(raw_problem(refusal.status, refusal.reason, refusal.title))
        self._close_gracefully()

    def _close_gracefully(self) -> None:
        self._listener.evictable.pop(self, None)
        self.transport.close()
        self._arm(self._limits.write_timeout_s, "write_timeout")  # cut it if the flush never ends

    def _arm(self, seconds: float, reason: str) -> None:
        self.deadline = self.loop.time() + seconds
        self._timer_reason = reason

    def _disarm(self) -> None:
        self.deadline = float("inf")
        self._timer_reason = ""

    def expire(self) -> None:
        """The current phase's deadline has passed (called by the listener's sweep)."""
        reason = self._timer_reason
        self._disarm()
        if reason == "idle":
            self._close_gracefully()  # an idle keep-alive connection: closing it refuses nothing
        elif reason:
            self.cut(reason)


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service's one stop event governs shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_server(
    app: Any, host: str, port: int, limits: Limits, refusals: RefusalLog, *, graceful_s: float
) -> tuple[Server, Listener]:
    """A server for ``app`` on ``host:port`` whose connections are guarded by ``limits``."""
    listener = Listener(limits, refusals)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=functools.partial(GuardedProtocol, listener=listener),  # type: ignore[arg-type]
        ws="none",
        lifespan="off",
        proxy_headers=False,  # bunsync uses no client address; trust no X-Forwarded-* header
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        timeout_graceful_shutdown=int(graceful_s),
        backlog=2048,
    )
    return Server(config), listener


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; return the (new) soft limit.

    Every connection costs a file descriptor; the common soft limit of 1,024 is what attack
    connections exhausted before. The caps on connections are derived from the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("open_file_limit_not_raised", soft=soft, hard=hard, error=str(exc))
    return soft if soft != resource.RLIM_INFINITY else 1 << 20
