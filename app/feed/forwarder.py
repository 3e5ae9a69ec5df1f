"""The forwarder: pushes each change of the feed, in feed order, to ``BUNSYNC_FORWARD_URL`` as a
Standard Webhooks request, at least once and never skipping one.

- One forwarder across replicas: a session-level advisory lock on a dedicated connection; standbys
  poll for it, and take over when the holder's connection dies (PostgreSQL releases the lock).
- Its cursor (``feed_forwarder.delivered_through``) is in the database and moves only after a 2xx.
  The cursor is recorded by :class:`_CursorWriter` on a connection of its own while the next change is
  already being sent (one database round trip per change would halve throughput), and never more than
  :data:`MAX_UNRECORDED` deliveries behind (the sender waits for it then). After a crash the next
  holder re-sends at most the change in flight and those :data:`MAX_UNRECORDED`, in feed order, each
  with the same ``webhook-id`` (``bunsync-change-<feed_position>``), so the consumer can drop repeats.
- Changes are read in batches (:data:`BATCH`) after the cursor and sent back to back over one
  keep-alive connection (:mod:`app.feed.transport`), each only after the previous one was
  acknowledged (so the consumer never sees a change before an earlier one it has not accepted).
- A failure (connection error, timeout, 3xx (redirects are not followed), 4xx, 5xx) is retried with
  growing delays capped at ``max_delay_s``, for as long as it takes: the feed waits, a change is never
  dropped to make progress. 410 Gone pauses forwarding to that URL (state ``paused``) until the URL
  is changed; every state, the attempts and the last error are in ``feed_forwarder`` for ``/status``.
- Only an answer's status counts (a short body is read and dropped to keep the connection; see
  :mod:`app.feed.transport`), and every attempt is bounded by ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import msgspec
import structlog

from app.aio import wait_any
from app.feed import signing
from app.feed.reader import CHANNEL, FeedRow, read_after
from app.feed.transport import Poster, TransportError
from app.store import db
from app.store.db import StorageUnavailable
from app.store.sqlfiles import queries

log = structlog.get_logger(__name__)
_Q = queries("feed")
_PING = queries("projections")["ping"]
EVENT_TYPE = "order_item.status_changed"
BATCH = 200
#: Deliveries the cursor may lag behind (re-sent after a crash): the sender waits beyond this.
MAX_UNRECORDED = 64
_MAX_DB_BACKOFF_S = 30.0

DELIVERED, RETRY, GONE = "delivered", "retry", "gone"


class _Payload(msgspec.Struct, frozen=True):
    type: str
    timestamp: str
    data: dict[str, object]


_encoder = msgspec.json.Encoder()


def webhook_id(row: FeedRow) -> str:
    """The change's ``webhook-id``: stable across attempts, restarts and replicas."""
    return webhook_id_of(row.feed_position)


def webhook_id_of(feed_position: int) -> str:
    """The ``webhook-id`` of the change at ``feed_position``."""
    return f"bunsync-change-{feed_position}"


def body(row: FeedRow) -> bytes:
    """The JSON body: ``{"type", "timestamp", "data": {...the row...}}`` (the same on every attempt)."""
    data = msgspec.to_builtins(row)
    del data["emitted_at"]
    return _encoder.encode(_Payload(type=EVENT_TYPE, timestamp=row.emitted_at.isoformat(), data=data))


def outcome(status_code: int) -> str:
    """What an answer's status means: 2xx delivered, 410 gone (pause), anything else retry."""
    if 200 <= status_code < 300:
        return DELIVERED
    if status_code == 410:
        return GONE
    return RETRY


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """The wait before attempt ``attempt + 1`` after ``attempt`` failures: doubling, capped."""
    return float(min(max_s, base_s * 2 ** min(max(attempt - 1, 0), 32)))


def describe(url: str) -> str:
    """The endpoint as logs may show it: scheme, host and path (never a query string or user info)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """Where and how to forward."""

    url: str
    key: bytes
    holder: str
    timeout_s: float = 10.0
    base_delay_s: float = 0.5
    max_delay_s: float = 60.0
    poll_s: float = 1.0


class Forwarder:
    """The forwarding loop of one process (active, or standby while another holds the lock)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, config: ForwardConfig) -> None:
        self.pool = pool
        self.dsn = dsn
        self.config = config

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: hold the lock and forward; ride out the database going away."""
        backoff = self.config.poll_s
        while not stop.is_set():
            try:
                await self._hold_and_forward(stop)
                backoff = self.config.poll_s
            except Exception as exc:
                if not (isinstance(exc, StorageUnavailable) or db.is_unavailable(exc)):
                    raise
                log.warning("forwarder_db_unavailable", error=str(exc), retry_in_s=backoff)
                await wait_any([stop], backoff)
                backoff = min(backoff * 2, _MAX_DB_BACKOFF_S)

    async def _hold_and_forward(self, stop: asyncio.Event) -> None:
        async with db.service_connection(self.dsn) as lock_conn:
            if not await self._acquire(lock_conn, stop):
                return
            wake, lost = asyncio.Event(), asyncio.Event()
            await self._listen(lock_conn, wake)
            lock_conn.add_termination_listener(lambda *_: lost.set())
            cursor, state = await self._claim()
            log.info(
                "forwarder_active", endpoint=describe(self.config.url), delivered_through=cursor, state=state
            )
            if state == "paused":
                log.error(
                    "forwarder_paused",
                    endpoint=describe(self.config.url),
                    action="the endpoint answered 410 Gone; set BUNSYNC_FORWARD_URL to the new endpoint "
                    "and restart: forwarding resumes after the last change delivered",
                )
                await wait_any([stop, lost], 3600.0)
                return
            poster = Poster(self.config.url)
            async with (
                db.service_connection(self.dsn) as cursor_conn,
                _CursorWriter(cursor_conn, cursor) as w,
            ):
                try:
                    await _Session(self, poster, lock_conn, w, stop, lost, wake).forward_from(cursor)
                finally:
                    await poster.close()

    @db.operation
    async def _acquire(self, lock_conn: asyncpg.Connection, stop: asyncio.Event) -> bool:
        """Wait for the forwarder lock (standby meanwhile); False when stopped first."""
        logged = False
        while not await lock_conn.fetchval(_Q["try_forwarder_lock"]):
            if not logged:
                log.info("forwarder_standby")
                logged = True
            await wait_any([stop], self.config.poll_s)
            if stop.is_set():
                return False
        return True

    @staticmethod
    @db.operation
    async def _listen(lock_conn: asyncpg.Connection, wake: asyncio.Event) -> None:
        await lock_conn.add_listener(CHANNEL, lambda *_: wake.set())

    @db.operation
    async def _claim(self) -> tuple[int, str]:
        """Announce this process as the forwarder; its cursor and state."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_Q["claim"], self.config.holder, self.config.url)
        if row is None:
            raise RuntimeError("bunsync.feed_forwarder has no row: run bunsync migrate")
        return int(row["delivered_through"]), str(row["state"])


class _CursorWriter:
    """Records the cursor on its own connection while the sender goes on with the next change.

    :meth:`advance` notes a delivery; the background task writes the latest position (one statement,
    relaxed commit, ``greatest``: never backwards, so a late write after a takeover is harmless) and
    coalesces deliveries made meanwhile. :meth:`settle` waits until at most ``most`` are unrecorded.
    """

    def __init__(self, conn: asyncpg.Connection, cursor: int) -> None:
        self.conn = conn
        self.target = cursor
        self.unrecorded = 0
        self.error: BaseException | None = None
        self._pending = asyncio.Event()
        self._written = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _CursorWriter:
        self._task = asyncio.create_task(self._run(), name="forwarder-cursor")
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None and self.error is None:
                async with asyncio.timeout(5.0):
                    await self.settle(0)  # a clean stop records every delivery
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    def advance(self, position: int) -> None:
        """Change ``position`` was acknowledged."""
        self.target = position
        self.unrecorded += 1
        self._pending.set()

    def check(self) -> None:
        """Raise what stopped the writer (the database went away)."""
        if self.error is not None:
            raise self.error

    async def settle(self, most: int) -> None:
        """Wait until at most ``most`` acknowledged deliveries are not yet recorded."""
        while self.unrecorded > most:
            self.check()
            self._written.clear()
            await self._written.wait()
        self.check()

    async def _run(self) -> None:
        try:
            while True:
                await self._pending.wait()
                self._pending.clear()
                position, count = self.target, self.unrecorded
                await self._write(position)
                self.unrecorded -= count
                self._written.set()
        except Exception as exc:
            self.error = exc
            self._written.set()

    @db.operation
    async def _write(self, position: int) -> None:
        await self.conn.execute(_Q["delivered"], position)


class _Session:
    """One holding of the forwarder lock: deliver changes after the cursor until stopped or lost."""

    def __init__(
        self,
        owner: Forwarder,
        poster: Poster,
        lock_conn: asyncpg.Connection,
        writer: _CursorWriter,
        stop: asyncio.Event,
        lost: asyncio.Event,
        wake: asyncio.Event,
    ) -> None:
        self.pool, self.config = owner.pool, owner.config
        self.poster, self.lock_conn, self.writer = poster, lock_conn, writer
        self.stop, self.lost, self.wake = stop, lost, wake
        self.idle = False  # whether the row already says idle (saves a write per empty poll)

    def _check_lock(self) -> None:
        if self.lost.is_set() or self.lock_conn.is_closed():
            raise StorageUnavailable("the forwarder lost its lock connection")
        self.writer.check()

    async def forward_from(self, cursor: int) -> None:
        while not self.stop.is_set():
            self._check_lock()
            self.wake.clear()
            rows = await read_after(self.lock_conn, cursor, BATCH)
            for row in rows:
                if not await self._deliver(row):
                    return  # stopping, or paused
                cursor = row.feed_position
                self.writer.advance(cursor)
                if self.writer.unrecorded > MAX_UNRECORDED:
                    await self.writer.settle(MAX_UNRECORDED)
            if rows:
                self.idle = False
                continue
            if not self.idle:
                await self.writer.settle(0)  # so that "idle" is not overwritten by a late cursor write
                await self._record_idle()
                self.idle = True
            await wait_any([self.stop, self.wake, self.lost], self.config.poll_s)
            await self._ping()

    @db.operation
    async def _record_idle(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_Q["relaxed_commit"])
            await conn.execute(_Q["idle"])

    @db.operation
    async def _ping(self) -> None:
        await self.lock_conn.fetchval(_PING)

    @db.operation
    async def _record_failure(self, result: str, error: str) -> None:
        """Count a failed attempt (or pause on 410) once the deliveries before it are recorded."""
        await self.writer.settle(0)
        async with self.pool.acquire() as conn:
            if result == GONE:
                await conn.execute(_Q["paused"], self.config.url, error)
            else:
                await conn.execute(_Q["failed"], error)

    async def _deliver(self, row: FeedRow) -> bool:
        """Send ``row`` until a 2xx (True); False when stopping or the endpoint is gone (paused)."""
        attempt = 0
        payload = body(row)
        while not self.stop.is_set():
            self._check_lock()
            result, error = await self._attempt(row, payload)
            if result == DELIVERED:
                return True
            await self._record_failure(result, error)
            if result == GONE:
                log.error(
                    "forwarder_paused",
                    endpoint=describe(self.config.url),
                    feed_position=row.feed_position,
                    action="the endpoint answered 410 Gone; set BUNSYNC_FORWARD_URL to the new "
                    "endpoint and restart: forwarding resumes with this change",
                )
                await wait_any([self.stop, self.lost], 3600.0)
                return False
            attempt += 1
            delay = retry_delay(attempt, self.config.base_delay_s, self.config.max_delay_s)
            log.warning(
                "forward_failed",
                endpoint=describe(self.config.url),
                feed_position=row.feed_position,
                attempt=attempt,
                error=error,
                retry_in_s=delay,
            )
            await wait_any([self.stop, self.lost], delay)
        return False

    async def _attempt(self, row: FeedRow, payload: bytes) -> tuple[str, str]:
        """One POST; returns (outcome, error text for the operator)."""
        headers = signing.headers(self.config.key, webhook_id(row), int(time.time()), payload)
        headers["Content-Type"] = "application/json"
        try:
            code = await self.poster.post(payload, headers, self.config.timeout_s)
        except TransportError as exc:
            # Bounded: the text may quote what the endpoint sent back; /status and the console show it.
            return RETRY, " ".join(str(exc).split())[:300]
        result = outcome(code)
        if result == RETRY and 300 <= code < 400:
            return RETRY, f"HTTP {code}: redirects are not followed; point BUNSYNC_FORWARD_URL at the target"
        return result, f"HTTP {code}"
