"""Reading the change feed by cursor, and waiting for it to grow (``GET /feed``'s long poll).

The read is ``feed.sql``'s ``read_after`` (the comment there says why a reader can never skip or
repeat a row). Waiting is woken by the ``bunsync_feed`` NOTIFY that the projector's insert sends on
commit (migration 0009), received by :class:`FeedWaker` on one listening connection per process and
broadcast to every waiter; a waiter also reads again when its wait ends, so a lost notification costs
latency, never a row.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from app.aio import wait_any
from app.store import db
from app.store.sqlfiles import queries

log = structlog.get_logger(__name__)
_Q = queries("feed")
_PING = queries("projections")["ping"]
CHANNEL = "bunsync_feed"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_WAIT_S = 30.0
_RECONNECT_S = 1.0


class FeedRow(msgspec.Struct, frozen=True, kw_only=True):
    """One change of the feed, as ``GET /feed`` returns it and the forwarder sends it."""

    feed_position: int
    order_id: int
    order_item_id: int
    status: str
    previous_status: str | None
    status_updated_at: datetime
    source: str
    recorded_at: datetime
    emitted_at: datetime


def _row(r: asyncpg.Record) -> FeedRow:
    return FeedRow(**dict(r))


@db.operation
async def read_after(source: asyncpg.Pool | asyncpg.Connection, after: int, limit: int) -> list[FeedRow]:
    """Up to ``limit`` changes after cursor ``after``, in feed order (on a pool or a connection)."""
    return [_row(r) for r in await source.fetch(_Q["read_after"], after, limit)]


class FeedWaker:
    """One LISTEN connection per process; :meth:`changed` is the event the next notification sets."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._event = asyncio.Event()

    def changed(self) -> asyncio.Event:
        """The event set by the next notification (take it BEFORE reading, then wait on it)."""
        return self._event

    def _notify(self, *_: Any) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop``; reconnect when the connection is lost (waiters then time out and read)."""
        while not stop.is_set():
            try:
                async with db.service_connection(self.dsn) as conn:
                    await self._listen(conn, stop)
            except db.StorageUnavailable as exc:
                log.warning("feed_listener_unavailable", error=str(exc), retry_in_s=_RECONNECT_S)
                await wait_any([stop], _RECONNECT_S)

    @db.operation
    async def _listen(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        """Listen on ``conn`` until ``stop`` or the connection is lost (pinged every 5 s)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda *_: lost.set())
        await conn.add_listener(CHANNEL, self._notify)
        self._notify()  # anything committed while no one listened: look again
        while not (stop.is_set() or lost.is_set()):
            await wait_any([stop, lost], 5.0)
            if not (stop.is_set() or lost.is_set()):
                await conn.fetchval(_PING)


async def poll(
    pool: asyncpg.Pool, waker: FeedWaker | None, after: int, limit: int, wait_s: float
) -> list[FeedRow]:
    """Changes after ``after``; when there are none, wait up to ``wait_s`` for some (woken by NOTIFY)."""
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        changed = waker.changed() if waker else None
        rows = await read_after(pool, after, limit)
        remaining = deadline - time.monotonic()
        if rows or remaining <= 0:
            return rows
        await wait_any([changed or asyncio.Event()], remaining)
