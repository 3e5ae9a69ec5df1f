"""The far-behind path of the change feed: a fresh ``item_changes`` filled set-based, then the engine
carries on batch by batch (the feed's counterpart of :mod:`projections.fill`).

The feed (``item_changes``) and its heads (``item_change_heads``) are not rebuilt tables: consumers
hold cursors into the feed, so an existing feed is never renumbered or touched. But a feed that is
*entirely* fresh (its checkpoint at the start of the log, no row, no head, no parked event) has no
consumer position to keep: filling it set-based with exactly the rows the batches would append, in
the same order, numbered from 1, is indistinguishable from folding the log one batch at a time. So
when its projector becomes active with the log far ahead, on a connection of its own it:

1. takes the rebuild lock of ``item_changes`` (``try_rebuild_lock``: no ``bunsync rebuild
   item_changes`` meanwhile), and makes temporary tables (``fill_begin`` with no tables: a temporary
   checkpoint and parked events; ``feed_functions``: the changes and heads, and what is left to Python);
2. on a second connection, in a read-only transaction (no transaction id: commit-safe readers are not
   held back), takes the bound (the snapshot's xmin, ``bulk_bound``) and runs ``feed_build``
   (``sql/queries/feed_fill.sql``: the rule of :func:`projections.item_changes.advance` in its set
   form, over ``pg_temp.bunsync_observations``, shared with the bulk phases, without the webhooks,
   which the feed does not handle) as a ``COPY ... TO STDOUT``; its lines pass, undecoded, to the
   temporary tables in short COPYs;
3. folds in Python what the SQL left out, in commit-safe order: the items with an observation the SQL
   does not vouch for (through :func:`projections.item_changes.advance`, each change keyed like the
   SQL's by (tx_id, position, the item's index in the event)), and the events the SQL did not read:
   one the projection cannot decode is parked with the live projector's message; one it can makes
   the fill step aside (the batches do it all). Then saves the bulk phase's checkpoint;
4. in one transaction holding the live writer lock and the feed writer lock (``lock_feed``), if the
   feed is still entirely fresh, appends the changes numbered in fold order, the heads, the parked
   events and the checkpoint (``bunsync_feed_move``). The insert wakes feed readers through the
   feed's own NOTIFY trigger (migration 0009), like any append.

Nothing lost or applied twice: as in :mod:`projections.fill`, the checkpoint moves with the rows, and
the engine reads after it. ``tests/integration/test_feed_fill.py`` checks, on random event sets, that
the filled feed is the one the batches build. Any failure other than the database being away is
logged by :func:`projections.fill.fill` and the projector goes on by batches.
"""

from __future__ import annotations

import io
from typing import Any, TypeGuard

import asyncpg
import structlog

from app.store import db, event_log
from app.store.db import Connection
from app.store.event_log import RecordedEvent
from app.store.sqlfiles import queries
from projections import events
from projections.base import Projection
from projections.bulk import FOLD_BATCH, WRITE_BATCH, CopyLines, copy_build, save_checkpoint
from projections.engine import LIVE_SCHEMA, park
from projections.item_changes import Head, ItemChanges, advance

log = structlog.get_logger(__name__)
_FF = queries("feed_fill")
_F = queries("fill")
_P = queries("projections")
_IC = queries("item_changes")
#: The statements shared with the bulk phases (bulk_functions, the bound, the checkpoint, events_at).
_Q = queries("order_item_status")
#: The columns of feed_build's lines, of pg_temp.bunsync_feed_rows and bunsync_feed_left.
COLUMNS = (
    "kind",
    "tx_id",
    "position",
    "ord",
    "order_id",
    "order_item_id",
    "status",
    "previous_status",
    "status_updated_at",
    "source",
    "recorded_at",
)


class _StepAside(Exception):
    """An event the SQL did not read (or read otherwise) that Python reads: the batches do it all."""

    def __init__(self, position: int, why: str) -> None:
        super().__init__(f"event {position}: {why}")
        self.position = position


def is_feed(projection: Projection[Any]) -> TypeGuard[ItemChanges]:
    """Whether ``projection`` is the change feed (filled here, not by :mod:`projections.bulk`)."""
    return isinstance(projection, ItemChanges)


async def should_fill(pool: asyncpg.Pool, projection: ItemChanges, min_events: int) -> bool:
    """Whether the feed is entirely fresh and the log far enough ahead to try a fill (cheap)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_F["fresh"], projection.name)
        if row is None or not row["fresh"] or int(row["head"]) <= min_events:
            return False
        return bool(await conn.fetchval(_FF["feed_fresh"], projection.name))


@db.operation
async def fill(dsn: str, projection: ItemChanges) -> int:
    """Fill the fresh feed set-based and move it live; return events applied (0: not done, the engine
    goes on by batches). The caller (:func:`projections.fill.fill`) handles failures."""
    name = projection.name
    async with db.service_connection(dsn) as conn:
        # Session lock, released when this connection closes, however the fill ends.
        if not await conn.fetchval(_P["try_rebuild_lock"], name):
            log.info("projection_fill_skipped", projection=name, reason="a rebuild of it is running")
            return 0
        await conn.execute(_F["fill_functions"])
        schema = str(await conn.fetchval(_F["fill_begin"], name, []))
        await conn.execute(_FF["feed_functions"])
        log.info("projection_fill_started", projection=name)
        try:
            filled = await _build(dsn, conn, projection, schema)
        except _StepAside as exc:
            log.warning(
                "projection_fill_skipped",
                projection=name,
                position=exc.position,
                reason=f"{exc}; filling by batches",
            )
            return 0
        if not filled:
            log.info("projection_fill_skipped", projection=name, reason="no event below the bound")
            return 0
        async with conn.transaction():
            await conn.execute(_P["lock_writer"], LIVE_SCHEMA, name)
            await conn.execute(_IC["lock_feed"])
            moved = bool(await conn.fetchval(_FF["feed_move"], name))
    if not moved:
        log.info("projection_fill_skipped", projection=name, reason="the live feed moved meanwhile")
        return 0
    log.info("projection_filled", projection=name, events=filled)
    return filled


@db.operation
async def _build(dsn: str, conn: Connection, projection: ItemChanges, schema: str) -> int:
    """Steps 2 and 3 (module docstring) into the temporary tables; return the events read."""
    last = await copy_build(dsn, _FF["feed_build"], _Lines(conn, schema))
    async with conn.transaction():
        await conn.execute(_P["use_schema"], schema)
        await _fold_left(conn, projection)
        return await save_checkpoint(conn, projection.name, last)


class _Lines:
    """``feed_build``'s output in COPY text format, passed on unparsed (COPY's text format round-trips
    every value exactly): changes and heads to ``bunsync_feed_rows``, what is left to Python to
    ``bunsync_feed_left``, WRITE_BATCH lines at a time (a short COPY each; memory stays flat)."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn, self.schema = conn, schema
        self.copy = CopyLines()
        self.rows: list[bytes] = []
        self.left: list[bytes] = []

    async def take(self, chunk: bytes) -> None:
        """One chunk of the COPY stream (not aligned on lines)."""
        for line in self.copy.split(chunk):
            # The kind is the first column: one letter.
            (self.rows if line[:1] in (b"c", b"h") else self.left).append(line)
        if len(self.rows) + len(self.left) >= WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Write the lines held (called once more at the end)."""
        for table, lines in (("bunsync_feed_rows", self.rows), ("bunsync_feed_left", self.left)):
            if lines:
                data = b"\n".join(lines) + b"\n"
                await self.conn.copy_to_table(
                    table, schema_name=self.schema, source=io.BytesIO(data), columns=COLUMNS, format="text"
                )
        self.rows, self.left = [], []


class _Folded:
    """The changes and heads folded in Python, as columns of ``add_rows`` (one batch at a time)."""

    def __init__(self) -> None:
        self.columns: list[list[Any]] = [[] for _ in COLUMNS]

    def add(self, *row: Any) -> None:
        for column, value in zip(self.columns, row, strict=True):
            column.append(value)

    async def flush(self, conn: Connection) -> None:
        if self.columns[0]:
            await conn.execute(_FF["add_rows"], *self.columns)
        self.columns = [[] for _ in COLUMNS]


@db.operation
async def _fold_left(conn: Connection, projection: ItemChanges) -> None:
    """Fold what ``feed_build`` left to Python, in commit-safe order, FOLD_BATCH events at a time."""
    positions = [int(r["position"]) for r in await conn.fetch(_FF["left_events"])]
    heads: dict[int, Head] = {}
    folded = _Folded()
    for i in range(0, len(positions), FOLD_BATCH):
        chunk = positions[i : i + FOLD_BATCH]
        bad: set[int] = set()
        ords: dict[int, dict[int, list[int]]] = {}  # position -> item -> its indexes in the event
        for r in await conn.fetch(_FF["left_at"], chunk):
            if r["kind"] == "b":
                bad.add(int(r["position"]))
            else:
                mine = ords.setdefault(int(r["position"]), {})
                mine.setdefault(int(r["order_item_id"]), []).append(int(r["ord"]))
        failed: list[tuple[RecordedEvent, BaseException]] = []
        for event in [event_log.recorded(r) for r in await conn.fetch(_Q["events_at"], chunk)]:
            if event.position not in bad:
                _fold_event(event, ords.get(event.position, {}), heads, folded)
            elif event.type in projection.handles:
                try:
                    projection.decode(event)
                except Exception as exc:  # unreadable: parked, as the live projector parks it
                    failed.append((event, exc))
                    continue
                raise _StepAside(event.position, "not read by the SQL but readable by Python")
        await park(conn, projection, failed)
        await folded.flush(conn)
    for item, head in heads.items():
        folded.add(
            "h", None, None, None, None, item, head.emitted_status, None, head.status_updated_at, None, None
        )
    await folded.flush(conn)


def _fold_event(
    event: RecordedEvent, ords: dict[int, list[int]], heads: dict[int, Head], folded: _Folded
) -> None:
    """Advance the left items of ``event`` (in the order of its items), each change keyed by the SQL's
    index of its observation: the k-th observation of an item in the event has the k-th index that
    ``feed_build`` listed for it (both list the event's items that have a status, in array order)."""
    try:
        # Every observation, with or without a time, as the SQL listed them (advance ignores the
        # untimed ones, as ItemChanges.decode drops them).
        observed = events.observations(event)
    except Exception as exc:
        raise _StepAside(event.position, f"read by the SQL but not by Python ({type(exc).__name__})") from exc
    seen: dict[int, int] = {}
    for obs in observed:
        indexes = ords.get(obs.order_item_id)
        if indexes is None:
            continue  # an item the SQL folded
        k = seen[obs.order_item_id] = seen.get(obs.order_item_id, -1) + 1
        if k >= len(indexes):
            raise _StepAside(event.position, "Python reads more items than the SQL listed")
        head, change = advance(heads.get(obs.order_item_id), obs)
        if head is not None:
            heads[obs.order_item_id] = head
        if change is not None:
            folded.add(
                "c",
                str(event.tx_id),
                event.position,
                indexes[k],
                change.order_id,
                change.order_item_id,
                change.status,
                change.previous_status,
                change.status_updated_at,
                change.source,
                change.recorded_at,
            )
    for item, indexes in ords.items():
        if seen.get(item, -1) + 1 != len(indexes):
            raise _StepAside(event.position, "Python reads fewer items than the SQL listed")
