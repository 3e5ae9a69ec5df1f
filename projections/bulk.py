"""The rebuild's bulk phase: a projection built set-based inside PostgreSQL, from the start of the log.

Folding a million events through Python one batch at a time costs round trips and decoding; the
current status of an item, and its history, are functions of the set of its observations, which one
SQL statement computes at the speed of a sort; and an order's row in ``orders`` is a function of one
event (its newest observation by position). The projections with a bulk phase, ``order_item_status``,
``order_item_history`` and ``orders``, are described by data (:data:`PHASES`: the ``bulk_build``
statement, the build table, its columns, what a folded line leaves to Python); the two item statements
read the log through one definition, ``pg_temp.bunsync_observations`` (``bulk_functions`` in
``order_item_status.sql``), which PostgreSQL inlines into each. It reads an event with one item from
the facts PostgreSQL extracted from its JSON when it was appended (``bunsync.event_log.facts``,
migration 0014, whose field checks ``orders`` shares), any other from its JSON.
So a rebuild of any of them first:

1. takes the bound, the snapshot's xmin, once. Every event with ``tx_id`` below it has committed and
   no other will ever appear there, so the bulk phase reads exactly the events the commit-safe reader
   would read up to there, and the checkpoint moves to the last of them;
2. runs ``bulk_build`` as a ``COPY ... TO STDOUT`` in a read-only transaction on a second
   connection (no transaction id, so the live projectors are not held back while it runs) and passes
   its item rows, still in COPY's text format (never decoded in Python), to the build table in short
   COPYs of their own (each a short transaction, like a live batch; the build table is nobody's view
   yet, and an interruption leaves it to be dropped by the next run). Why not one ``INSERT ... SELECT``
   in the database: that statement would hold a transaction id for the whole build, and every
   commit-safe reader would wait behind it. The build table's indexes are dropped meanwhile and built
   once at the end (:func:`indexes_deferred`): cheaper than an index insert per row;
3. folds in Python, through the projection's own ``write`` (the rule in :mod:`projections.rules`),
   the items the SQL left out (for ``order_item_status``: transactions that committed out of position
   order, an unsigned webhook, an item twice in one event; for ``order_item_history``: webhooks of
   one status signed both before and after its API time; for ``orders``: the events with a field the
   SQL does not vouch for, and erasures), and hands the events the SQL did not read
   to the Python decoder, which parks them with msgspec's message exactly as the live projector
   does; then saves the checkpoint, in one transaction. An event an item statement did not read but
   Python can makes the bulk phase step aside: the engine then rebuilds by batches, as without it.

Items with a field the SQL does not vouch for, or a ``statusUpdatedAt`` outside the plausibility
window of :func:`projections.rules.plausible_time`, are among those folded in Python: the Python rule
reads such a field as absent and records it in ``item_anomalies`` (a table of ``order_item_status``),
so both the row and the anomaly come from the one rule.

Then the engine catches up from that checkpoint as usual. The SQL restates the rules of
:func:`projections.rules.apply_status` and :func:`projections.rules.apply_history`;
``tests/integration/test_projection_bulk.py`` checks that each agrees with its rule on random event
sets, including out-of-order commits and malformed payloads.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from app.store import db, event_log
from app.store.db import Connection
from app.store.event_log import RecordedEvent
from app.store.sqlfiles import queries
from projections.base import ItemProjection, Projection
from projections.engine import apply_events, park
from projections.orders import FACT_COLUMNS
from projections.rules import Observation

log = structlog.get_logger(__name__)
#: The statements every bulk phase shares (bulk_functions, the bound, the checkpoint, the fold's reads).
_Q = queries("order_item_status")
_P = queries("projections")
_R = queries("rebuild")
#: Events fetched from the log at a time while folding in Python (memory stays flat).
FOLD_BATCH = 2000
#: Item rows written to the build table per COPY (memory stays flat).
WRITE_BATCH = 5000
#: The bulk statement's sort memory (server side): a million events sort in memory.
WORK_MEM = "256MB"


@dataclass(frozen=True, slots=True)
class Phase:
    """A projection's bulk phase, as data: the ``bulk_build`` statement of ``sql/queries/<queries>.sql``,
    and the build table its rows are copied to, in the order of ``columns``.

    Every ``bulk_build`` returns lines ``folded, positions, columns...``. What a folded line (first
    column ``t``) leaves to Python depends on ``leaves``:

    - ``"items"`` (the item projections, whose statements read the log through
      ``pg_temp.bunsync_observations``): its item (the first of ``columns``; ``\\N``: the events not
      read), whose observations in the events at the positions it lists are folded through the
      projection restricted to the items left;
    - ``"events"`` (``orders``, whose writes commute: the newest observation by position wins): the
      events at the positions it lists, folded through the whole projection, which parks those it
      cannot read.
    """

    queries: str
    table: str
    columns: tuple[str, ...]
    leaves: Literal["items", "events"] = "items"


#: The projections with a bulk phase, by name.
PHASES = {
    "order_item_status": Phase(
        queries="order_item_status",
        table="order_item_status",
        columns=(
            "order_item_id",
            "order_id",
            "pid",
            "product_name",
            "price",
            "status",
            "status_updated_at",
            "source",
            "last_position",
            "synced_at",
            "api_status",
            "api_source",
            "api_updated_at",
            "api_position",
            "webhook_status",
            "webhook_signed_at",
            "webhook_position",
        ),
    ),
    "order_item_history": Phase(
        queries="order_item_history",
        table="order_item_history",
        columns=(
            "order_item_id",
            "order_id",
            "status",
            "status_updated_at",
            "source",
            "signed_at",
            "position",
            "recorded_at",
        ),
    ),
    "orders": Phase(
        queries="orders",
        table="orders",
        columns=(*FACT_COLUMNS, "last_position", "synced_at"),
        leaves="events",
    ),
}


class _Only(Projection[list[Observation]]):
    """A projection restricted to some items: the others were written by ``bulk_build``."""

    def __init__(self, inner: ItemProjection, items: set[int]) -> None:
        self.inner = inner
        self.items = items
        self.name = inner.name  # type: ignore[misc]  # the ClassVar, per instance: same projection
        self.handles = inner.handles  # type: ignore[misc]
        self.tables = inner.tables  # type: ignore[misc]

    def decode(self, event: RecordedEvent) -> list[Observation]:
        return [o for o in self.inner.decode(event) if o.order_item_id in self.items]

    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, list[Observation]]]) -> None:
        await self.inner.write(conn, batch)


class _Unsure(Exception):
    """An event the bulk SQL left out as unreadable that Python reads after all."""

    def __init__(self, position: int) -> None:
        super().__init__(f"event {position} is readable by Python but not by the bulk SQL")
        self.position = position


class _Left:
    """What ``bulk_build`` left to Python: items, and the events to fold (bad: not read by the SQL)."""

    def __init__(self) -> None:
        self.items: set[int] = set()
        self.positions: set[int] = set()
        self.bad: set[int] = set()


def has_phase(projection: Projection[Any]) -> bool:
    """Whether ``projection`` has a bulk phase (one of :data:`PHASES`)."""
    phase = PHASES.get(projection.name)
    return phase is not None and (phase.leaves == "events" or isinstance(projection, ItemProjection))


@db.operation
async def run(dsn: str, conn: Connection, projection: Projection[Any], schema: str) -> int:
    """Fill ``projection``'s fresh tables in ``schema`` up to a snapshot's xmin; return events read.

    ``conn`` writes (it holds the rebuild's lock); a second connection to ``dsn`` reads. Returns 0,
    with the build tables empty again, for a projection without a bulk phase, or when the log holds
    an event that the SQL did not read but Python can: the engine then does the whole rebuild.
    """
    if not has_phase(projection):
        return 0
    await _check_fresh(conn, projection, schema)
    try:
        return await _bulk(dsn, conn, projection, schema)
    except _Unsure as exc:
        log.warning(
            "rebuild_bulk_skipped",
            projection=projection.name,
            position=exc.position,
            reason="an event the bulk SQL does not read is readable by Python; rebuilding by batches",
        )
        await conn.fetchval(_R["begin"], projection.name, list(projection.tables))
        return 0


@db.operation
async def _check_fresh(conn: Connection, projection: Projection[Any], schema: str) -> None:
    async with conn.transaction():
        await conn.execute(_P["use_schema"], schema)
        row = await conn.fetchrow(_P["checkpoint"], projection.name)
    if row is None or row["position"] != 0 or row["events_read"] != 0:
        raise ValueError(f"the bulk phase of {projection.name} needs a fresh build in {schema}")


@db.operation
async def _bulk(dsn: str, conn: Connection, projection: Projection[Any], schema: str) -> int:
    phase, left = PHASES[projection.name], _Left()
    rows = _Rows(conn, schema, phase, left)
    async with indexes_deferred(conn, schema, phase.table):
        last = await copy_build(dsn, queries(phase.queries)["bulk_build"], rows)
    async with conn.transaction():
        await conn.execute(_P["use_schema"], schema)
        await conn.execute(_P["lock_writer"], schema, projection.name)
        await _fold(conn, _folder(projection, phase, left), projection, left)
        return await save_checkpoint(conn, projection.name, last)


class Sink(Protocol):
    """Where :func:`copy_build` streams a statement's COPY text: chunks, then one flush at the end."""

    async def take(self, chunk: bytes) -> None: ...

    async def flush(self) -> None: ...


@db.operation
async def copy_build(dsn: str, statement: str, sink: Sink) -> Any:
    """Run ``statement`` (``$1``: the bound, xid8 as text) over the events below a fresh bound, the
    snapshot's xmin, streaming its rows into ``sink``; return the bound's ``bulk_checkpoint`` row.

    On a connection of its own, in a read-only transaction: no transaction id, so no commit-safe
    reader waits for this one. As ``COPY ... TO STDOUT``: the rows stream as text, passed on unparsed
    (COPY's text format round-trips every value exactly).
    """
    async with db.admin_connection(dsn) as reader:
        await reader.execute(_Q["bulk_functions"])  # committed at once: no xid kept
        async with reader.transaction(readonly=True):
            await reader.execute(_Q["bulk_settings"], WORK_MEM)
            bound = str(await reader.fetchval(_Q["bulk_bound"]))
            # asyncpg's COPY wraps the statement in parentheses: no trailing semicolon.
            await reader.copy_from_query(statement.rstrip().rstrip(";"), bound, output=sink.take)
            await sink.flush()
            return await reader.fetchrow(_Q["bulk_checkpoint"], bound)


@asynccontextmanager
async def indexes_deferred(conn: Connection, schema: str, table: str) -> AsyncIterator[None]:
    """Drop the indexes of ``table`` in ``schema`` (a build table ``conn`` owns, not yet visible to
    anyone) for the block, and re-create them, exactly and under their names, when it ends well.

    Rows streamed into a table with its indexes pay an index insert each (for ``order_item_history``'s
    800,000 rows: 4.2 s of COPY, against 2.0 s without indexes and 0.9 s to build them after). If the
    block fails the indexes stay dropped: the build is abandoned, and the next one starts from fresh
    tables (``projection_build_begin``, ``bunsync_fill_begin``), never from this one.
    """
    ddl = await conn.fetch(_P["build_indexes"], schema, table)
    async with conn.transaction():
        for row in ddl:
            await conn.execute(row["drop_ddl"])
    yield
    async with conn.transaction():
        for row in ddl:
            await conn.execute(row["create_ddl"])


class CopyLines:
    """The whole lines of a COPY text stream, whose chunks are not aligned on lines."""

    def __init__(self) -> None:
        self.partial = b""

    def split(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes (the rest is kept for the next chunk)."""
        data = self.partial + chunk
        end = data.rfind(b"\n") + 1
        self.partial = data[end:]
        return data[:end].split(b"\n")[:-1]


async def save_checkpoint(conn: Connection, name: str, last: Any) -> int:
    """Move the checkpoint of ``name`` (in the caller's transaction and schema) to the bulk phase's last
    event (``bulk_checkpoint``'s row); return the events read (0, and nothing saved: none)."""
    if last is None or last["tx_text"] is None:
        return 0
    events = int(last["events"])
    await conn.execute(_P["save_checkpoint"], name, last["tx_text"], last["position"], events)
    return events


class _Rows:
    """``bulk_build``'s output in COPY text format: item rows go on to the build table WRITE_BATCH at a
    time (a short COPY each); folded rows (first column ``t``) are left to Python.

    A line is ``folded, positions, columns...``, tab-separated; memory holds one batch of lines.
    """

    def __init__(self, conn: Connection, schema: str, phase: Phase, left: _Left) -> None:
        self.conn, self.schema, self.phase, self.left = conn, schema, phase, left
        self.copy = CopyLines()
        self.lines: list[bytes] = []

    async def take(self, chunk: bytes) -> None:
        """One chunk of the COPY stream (not aligned on lines)."""
        for line in self.copy.split(chunk):
            folded, positions, row = line.split(b"\t", 2)
            if folded == b"t":
                item = row.split(b"\t", 1)[0] if self.phase.leaves == "items" else None
                _leave(self.left, item, positions)
            else:
                self.lines.append(row)
        if len(self.lines) >= WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Write the lines held (called once more at the end, even with none)."""
        data = b"\n".join(self.lines) + b"\n" if self.lines else b""
        self.lines = []
        await _write(self.conn, self.schema, data, self.phase)


def _leave(left: _Left, item: bytes | None, positions: bytes) -> None:
    """A folded row: its item (``\\N``: the events the SQL did not read; None: an events phase, whose
    events are folded whole) and its positions."""
    read = [] if positions == b"\\N" else [int(p) for p in positions.strip(b"{}").split(b",") if p]
    left.positions.update(read)
    if item is None:
        return
    if item == b"\\N":
        left.bad.update(read)
    else:
        left.items.add(int(item))


@db.operation
async def _write(conn: Connection, schema: str, data: bytes, phase: Phase) -> None:
    """Append item rows (COPY text lines) to the build table (a short transaction of its own; not yet
    visible to anyone)."""
    if data:
        await conn.copy_to_table(
            phase.table, schema_name=schema, source=io.BytesIO(data), columns=phase.columns, format="text"
        )


def _folder(projection: Projection[Any], phase: Phase, left: _Left) -> Projection[Any]:
    """What folds the events left to Python: the item projection restricted to the items left, or
    (an events phase) the projection itself."""
    if phase.leaves == "events":
        return projection
    if not isinstance(projection, ItemProjection):  # has_phase never lets one through
        raise TypeError(f"the items phase of {projection.name} needs an item projection")
    return _Only(projection, left.items)


@db.operation
async def _fold(conn: Connection, folder: Projection[Any], projection: Projection[Any], left: _Left) -> None:
    """Fold the events ``bulk_build`` left to Python, in commit-safe order, through ``folder``.

    An event the SQL did not read (items phases) must be one Python cannot read either (it is
    parked, as live parks it); otherwise its items were written without it, and the bulk phase is
    abandoned.
    """
    ordered = [int(r["position"]) for r in await conn.fetch(_Q["in_log_order"], sorted(left.positions))]
    for i in range(0, len(ordered), FOLD_BATCH):
        rows = await conn.fetch(_Q["events_at"], ordered[i : i + FOLD_BATCH])
        events = [event_log.recorded(r) for r in rows]
        for event in events:
            if event.position in left.bad and _readable(projection, event):
                raise _Unsure(event.position)
        await park(conn, folder, await apply_events(conn, folder, events))


def _readable(projection: Projection[Any], event: RecordedEvent) -> bool:
    try:
        projection.decode(event)
    except Exception:  # unreadable is the expected answer: the event gets parked
        return False
    return True
