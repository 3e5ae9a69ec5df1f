"""The event log API: append events (idempotently) and read them back in commit-safe order.

The statements live in ``sql/queries/event_log.sql``; see ``read_after`` there for why the order is
(transaction id, position) and why no reader can skip an event that committed late.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from app.store import db, sqlfiles
from app.store.db import Connection

_Q = sqlfiles.queries("event_log")


class Checkpoint(msgspec.Struct, frozen=True):
    """A reader's place in the log: the last event read, as (transaction id, position).

    :data:`START` is before every event. Persist both numbers; position alone is not enough.
    """

    tx_id: int
    position: int


#: The place before every event: where a new reader starts.
START = Checkpoint(tx_id=0, position=0)


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append. ``payload_json`` is JSON text (or None when the input was not JSON)."""

    stream: str
    type: str
    source: str
    idempotency_key: str
    payload_json: str | None
    raw: bytes | None = None
    signed_at: datetime | None = None
    received_at: datetime | None = None
    fetch_order_id: int | None = None  # enqueue a Get Order fetch for this order if newly appended


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as read from the log."""

    position: int
    tx_id: int
    stream: str
    type: str
    payload_json: str | None
    source: str
    signed_at: datetime | None
    received_at: datetime | None
    recorded_at: datetime

    @property
    def checkpoint(self) -> Checkpoint:
        """The checkpoint just after this event."""
        return Checkpoint(tx_id=self.tx_id, position=self.position)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Which keys the append stored (key → position); the others were already in the log."""

    inserted: dict[str, int]


@db.operation
async def append(conn: Connection, events: list[NewEvent]) -> AppendResult:
    """Append ``events`` in one statement on ``conn`` (the caller owns the transaction).

    Events whose idempotency key is already in the log are skipped; the caller decides whether a skip
    is a duplicate or a conflict (:func:`same_content`). A fetch is enqueued for each inserted event
    that names an order. Keys must be distinct within one call.
    """
    if not events:
        return AppendResult(inserted={})
    rows = await conn.fetch(
        _Q["append_batch"],
        [e.stream for e in events],
        [e.type for e in events],
        [e.payload_json for e in events],
        [e.raw for e in events],
        [e.source for e in events],
        [e.signed_at for e in events],
        [e.received_at for e in events],
        [e.idempotency_key for e in events],
        [e.fetch_order_id for e in events],
    )
    return AppendResult(inserted={r["idempotency_key"]: r["position"] for r in rows})


@db.operation
async def same_content(conn: Connection, events: list[NewEvent]) -> list[bool]:
    """For each event (its key already logged): whether the stored event has the same content."""
    rows = await conn.fetch(
        _Q["compare_existing"],
        [e.idempotency_key for e in events],
        [e.payload_json for e in events],
        [e.raw for e in events],
    )
    same = [False] * len(events)
    for r in rows:
        same[r["ord"] - 1] = bool(r["same"])
    return same


@db.operation
async def record_conflicts(conn: Connection, events: list[NewEvent]) -> None:
    """Keep deliveries whose key is logged with different content (``bunsync.webhook_conflicts``)."""
    if events:
        await conn.execute(
            _Q["record_conflicts"],
            [e.idempotency_key for e in events],
            [e.payload_json for e in events],
            [e.raw or b"" for e in events],
            [e.signed_at for e in events],
            [e.received_at for e in events],
        )


@db.operation
async def read_after(
    conn: Connection, checkpoint: Checkpoint, limit: int, payload_of: Collection[str] | None = None
) -> list[RecordedEvent]:
    """Up to ``limit`` events after ``checkpoint``, in commit-safe order.

    Reading again from the last event's :attr:`RecordedEvent.checkpoint` never skips an event, however
    late it commits, and never returns one twice. ``payload_of``: the types whose payload is read (the
    others have ``payload_json`` None); None: every type's.
    """
    types = None if payload_of is None else sorted(payload_of)
    rows = await conn.fetch(_Q["read_after"], str(checkpoint.tx_id), checkpoint.position, limit, types)
    return [recorded(r) for r in rows]


def recorded(r: asyncpg.Record) -> RecordedEvent:
    """An event from a row with the columns of ``read_after`` (``position``, ``tx_text``, ``stream``,
    ``type``, ``payload``, ``source``, ``signed_at``, ``received_at``, ``recorded_at``)."""
    return RecordedEvent(
        position=r["position"],
        tx_id=int(r["tx_text"]),
        stream=r["stream"],
        type=r["type"],
        payload_json=r["payload"],
        source=r["source"],
        signed_at=r["signed_at"],
        received_at=r["received_at"],
        recorded_at=r["recorded_at"],
    )
