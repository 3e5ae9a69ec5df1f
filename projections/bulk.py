"""The rebuild's bulk phase: a projection built set-based inside PostgreSQL, from the start of the log.

Folding a million events through Python one batch at a time costs round trips and decoding; the
current status of an item is a function of the set of its observations, which one SQL statement
computes at the speed of a sort. So a rebuild of ``order_item_status`` first runs, in ONE transaction
on the build schema:

1. the bound: the snapshot's xmin, taken once. Every event with ``tx_id`` below it has committed and
   no other will ever appear there, so the bulk phase reads exactly the events the commit-safe reader
   would read up to there, and moves the checkpoint to the last of them;
2. the events whose payload the SQL does not read itself (``bulk_bad_events``: anything the msgspec
   types might read differently), handed to the Python decoder: it reads them, or they are parked
   with msgspec's message, exactly as the live projector does;
3. ``bulk_build``: every other item's row, set-based. Items where reading order matters (transactions
   that committed out of position order, an unsigned webhook, an item twice in one event) or that a
   Python-read event touches are left out, and their events are folded here through the projection's
   own ``write`` (the rule in :mod:`projections.rules`), for those items only;
4. the checkpoint.

Then the engine catches up from that checkpoint as usual. The SQL restates the rule of
:func:`projections.rules.apply_status`; ``tests/projections/test_bulk.py`` checks that both agree on
random event sets, including out-of-order commits and malformed payloads.
"""

from __future__ import annotations

from typing import Any

import structlog

from app import db
from app.db import Connection
from app.event_log import RecordedEvent
from app.sqlfiles import queries
from projections.base import Projection
from projections.engine import apply_events, park
from projections.order_item_status import OrderItemStatus
from projections.rules import Observation

log = structlog.get_logger(__name__)
_Q = queries("order_item_status")
_P = queries("projections")
#: Events fetched from the log at a time while folding in Python (memory stays flat).
FOLD_BATCH = 2000
#: The bulk statement's sort memory (server side): a million events sort in memory.
WORK_MEM = "256MB"


class _Only(Projection[list[Observation]]):
    """``order_item_status`` restricted to some items: the others were written by ``bulk_build``."""

    def __init__(self, inner: OrderItemStatus, items: set[int]) -> None:
        self.inner = inner
        self.items = items
        self.name = inner.name  # type: ignore[misc]  # the ClassVar, per instance: same projection
        self.handles = inner.handles  # type: ignore[misc]
        self.tables = inner.tables  # type: ignore[misc]

    def decode(self, event: RecordedEvent) -> list[Observation]:
        return [o for o in self.inner.decode(event) if o.order_item_id in self.items]

    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, list[Observation]]]) -> None:
        await self.inner.write(conn, batch)


def supports(projection: Projection[Any]) -> bool:
    """Whether ``projection`` has a bulk phase."""
    return isinstance(projection, OrderItemStatus)


async def run(conn: Connection, projection: Projection[Any], schema: str) -> int:
    """Fill ``projection``'s fresh tables in ``schema`` up to the snapshot's xmin; return events read.

    ``schema``'s checkpoint must be at the start of the log (a fresh build). Returns 0, having done
    nothing, for a projection without a bulk phase, or when the log holds an event that the SQL did
    not read but Python can: the engine then does the whole rebuild, as it would without this phase.
    """
    if not isinstance(projection, OrderItemStatus):
        return 0
    try:
        async with conn.transaction():
            return await _bulk(conn, projection, schema)
    except _Unsure as exc:
        log.warning(
            "rebuild_bulk_skipped",
            projection=projection.name,
            position=exc.position,
            reason="an event the bulk SQL does not read is readable by Python; rebuilding by batches",
        )
        return 0


class _Unsure(Exception):
    """An event the bulk SQL left out as unreadable that Python reads after all."""

    def __init__(self, position: int) -> None:
        super().__init__(f"event {position} is readable by Python but not by the bulk SQL")
        self.position = position


async def _bulk(conn: Connection, projection: OrderItemStatus, schema: str) -> int:
    await db.guard(conn.execute(_P["use_schema"], schema))
    await db.guard(conn.execute(_P["lock_writer"], schema, projection.name))
    await db.guard(conn.execute(_Q["bulk_settings"], WORK_MEM))
    row = await db.guard(conn.fetchrow(_P["checkpoint"], projection.name))
    if row is None or row["position"] != 0 or row["events_read"] != 0:
        raise ValueError(f"the bulk phase of {projection.name} needs a fresh build in {schema}")
    bound = str(await db.guard(conn.fetchval(_Q["bulk_bound"])))
    await db.guard(conn.execute(_Q["bulk_scratch"]))
    folded = await db.guard(conn.fetchval(_Q["bulk_build"], bound))
    await _fold(conn, _Only(projection, set(folded)))
    last = await db.guard(conn.fetchrow(_Q["bulk_checkpoint"], bound))
    if last is None or last["tx_text"] is None:
        return 0
    events = int(last["events"])
    await db.guard(
        conn.execute(_P["save_checkpoint"], projection.name, last["tx_text"], last["position"], events)
    )
    return events


async def _fold(conn: Connection, only: _Only) -> None:
    """Fold the events ``bulk_build`` left to Python, in commit-safe order, through the projection.

    An event the SQL did not read must be one Python cannot read either (it is parked, as live
    parks it); otherwise its items were written without it, and the bulk phase is abandoned.
    """
    cursor = await conn.cursor(_Q["folded_events"])
    while rows := await db.guard(cursor.fetch(FOLD_BATCH)):
        events = [_event(r) for r in rows]
        for r, event in zip(rows, events, strict=True):
            if r["bad"] and _readable(only.inner, event):
                raise _Unsure(event.position)
        await park(conn, only, await apply_events(conn, only, events))


def _readable(projection: OrderItemStatus, event: RecordedEvent) -> bool:
    try:
        projection.decode(event)
    except Exception:  # unreadable is the expected answer: the event gets parked
        return False
    return True


def _event(r: Any) -> RecordedEvent:
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
