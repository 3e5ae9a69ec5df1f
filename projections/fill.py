"""The far-behind path: a fresh projection far behind the log's head is filled set-based, then the
engine carries on batch by batch.

When a projector becomes active (a new deployment over an existing log, a projector back with its
projection never filled, a projection that ``migrate`` just added) and its projection is *fresh* (its
checkpoint at the start of the log, no event read) while the log holds more than
:data:`projections.engine.FILL_MIN_EVENTS` events, folding the whole log one batch at a time would
take long. Instead, on a connection of its own, it:

1. takes the rebuild lock of the projection (``try_rebuild_lock``): an operator's ``bunsync rebuild``
   running at the same time makes the projector fall back to batches, and none starts while it fills;
2. makes empty temporary copies of the projection's tables, checkpoint and parked events (the service
   role may create temporary tables; the rebuild's side schema and swap are the owner's, which the
   service never keeps), and runs the rebuild's bulk phase (:mod:`projections.bulk`) into them: every
   event below a snapshot's xmin, applied set-based, exactly as a rebuild would;
3. in one transaction holding the live writer lock, moves the rows, the parked events and the
   checkpoint into the live tables, if the live projection is still fresh (nobody else applied
   anything meanwhile, see ``fill_move`` in ``sql/queries/fill.sql``).

Why nothing is lost or applied twice: the filled tables are what the engine would have written after
exactly the events up to the bulk phase's checkpoint (the bulk phase's contract, checked against the
Python rule by ``tests/integration/test_projection_bulk.py``), and the move sets the live checkpoint
to that checkpoint in the same transaction as the rows. The engine then reads after it in commit-safe
order, so events appended while the fill ran are applied once, by the engine. Readers see the empty
live tables until the move commits, then the filled ones: never a partial fill. A fill that dies
(process killed, database gone) leaves the live tables untouched, its temporary tables vanish with
its session, and the next active projector starts afresh.

Only a fresh projection, so the path is provably the same as folding from the start: a projection
behind but not fresh (back from an outage) goes on by batches, because replacing its tables would
need the rebuild's owner-only swap (an operator may run ``bunsync rebuild``). ``item_changes`` (the
change feed) has no rebuilt ``tables`` (its feed and heads are shared with consumers holding cursors):
it is filled by :mod:`projections.feed_fill`, only when entirely fresh (no feed row, no head, no
parked event either), with the same locks, fallback and hand-over as here.
``order_item_status``, ``order_item_history`` and ``orders`` have a bulk phase; a projection without
one (:func:`projections.bulk.has_phase`) is not even tried;
one whose bulk phase steps aside (``bulk.run`` returns 0) falls back too, as does any failure of the
fill other than the database being away: the batch path is always correct, the fill only faster.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from app.store import db
from app.store.sqlfiles import queries
from projections import bulk, feed_fill
from projections.base import Projection
from projections.engine import LIVE_SCHEMA

log = structlog.get_logger(__name__)
_F = queries("fill")
_P = queries("projections")


async def should_fill(pool: asyncpg.Pool, projection: Projection[Any], min_events: int) -> bool:
    """Whether ``projection`` is fresh and the log far enough ahead to try a fill (cheap: no count)."""
    if feed_fill.is_feed(projection):
        return await feed_fill.should_fill(pool, projection, min_events)
    if not bulk.has_phase(projection):
        return False  # nothing to fill with: no lock, no temporary tables, the batches do it all
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_F["fresh"], projection.name)
    return row is not None and bool(row["fresh"]) and int(row["head"]) > min_events


async def fill(dsn: str, projection: Projection[Any]) -> int:
    """Fill fresh ``projection`` set-based and move it live; return events applied (0: not done, the
    engine goes on by batches). Raises only when the database is away."""
    try:
        if feed_fill.is_feed(projection):
            return await feed_fill.fill(dsn, projection)
        return await _fill(dsn, projection)
    except Exception as exc:
        if db.is_unavailable(exc):
            raise
        log.warning(
            "projection_fill_abandoned",
            projection=projection.name,
            error=f"{type(exc).__name__}: {exc}"[:500],
            action="none: the projector goes on by batches",
        )
        return 0


@db.operation
async def _fill(dsn: str, projection: Projection[Any]) -> int:
    name, tables = projection.name, list(projection.tables)
    async with db.service_connection(dsn) as conn:
        # Session lock, released when this connection closes, however the fill ends.
        if not await conn.fetchval(_P["try_rebuild_lock"], name):
            log.info("projection_fill_skipped", projection=name, reason="a rebuild of it is running")
            return 0
        await conn.execute(_F["fill_functions"])
        schema = str(await conn.fetchval(_F["fill_begin"], name, tables))
        log.info("projection_fill_started", projection=name)
        events = await bulk.run(dsn, conn, projection, schema)
        if not events:
            log.info("projection_fill_skipped", projection=name, reason="no bulk phase for these events")
            return 0
        async with conn.transaction():
            await conn.execute(_P["lock_writer"], LIVE_SCHEMA, name)
            moved = bool(await conn.fetchval(_F["fill_move"], name, tables))
        if not moved:
            log.info("projection_fill_skipped", projection=name, reason="the live projection moved meanwhile")
            return 0
    log.info("projection_filled", projection=name, events=events)
    return events
