"""``bunsync migrate --redact-log``: take the personal data out of log rows written before 0007.

A database created by an earlier bunsync holds buyer addresses in its ``order.observed`` events. This
one-time, explicit operation rewrites exactly those rows, under the one documented exception to
append-only, all in ONE transaction:

1. lock the log against writers (``EXCLUSIVE``: readers go on), so no row escapes the scan;
2. scan the Get Order observations, split each with :func:`app.privacy.personal_data.split` (the fetcher's own
   code) and stage the redacted payloads in a temporary table, in COPY batches (flat memory);
3. move each order's newest personal data into ``bunsync.personal_data`` (not for forgotten orders);
4. lift the append-only trigger, run ONE ``UPDATE`` that replaces the staged rows' payload (and raw
   bytes) by their redacted form, re-arm the trigger (``ENABLE ALWAYS``, as migration 0001 left it);
5. append a ``maintenance.log_redacted`` event saying how many rows were rewritten; commit.

Then ``VACUUM FULL`` the log, so the old row versions are gone from its pages. A failure anywhere
before the commit rolls everything back, the trigger included. Running it again rewrites nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import structlog

from app.events import order_of_stream
from app.privacy import personal_data
from app.store import db, event_log, sqlfiles
from app.store.event_log import NewEvent

log = structlog.get_logger(__name__)

_Q = sqlfiles.queries("log_redaction")

STAGE_BATCH = 2000
_COLUMNS = ("position", "order_id", "payload", "raw", "personal")


@dataclass(frozen=True, slots=True)
class Redaction:
    """What ``--redact-log`` did: log rows rewritten, orders whose personal data was moved aside."""

    rows: int
    orders_kept: int


class _Done(msgspec.Struct, frozen=True, rename="camel"):
    rows: int
    orders_kept: int


@db.operation
async def redact_log(dsn: str) -> Redaction:
    """Rewrite the personal fields of old ``order.observed`` rows (as the log's owner: ``dsn``'s role)."""
    async with db.admin_connection(dsn) as conn:
        async with conn.transaction():
            await conn.execute(_Q["lock_log"])
            await conn.execute(_Q["staging"])
            await _stage(conn)
            kept = _count(await conn.execute(_Q["keep_newest"]))
            await conn.execute(_Q["lift_append_only"])
            rows = _count(await conn.execute(_Q["rewrite"]))
            await conn.execute(_Q["rearm_append_only"])
            await event_log.append(conn, [_done_event(rows, kept)])
        log.warning("log_redacted", rows=rows, orders_kept=kept, note="append-only lifted for one UPDATE")
        await conn.execute(_Q["vacuum_log"])
    return Redaction(rows=rows, orders_kept=kept)


@db.operation
async def _stage(conn: asyncpg.Connection) -> None:
    batch: list[tuple[Any, ...]] = []
    async for r in conn.cursor(_Q["candidates"], prefetch=STAGE_BATCH):
        staged = _redacted(r["position"], r["stream"], r["payload"], r["raw"])
        if staged is not None:
            batch.append(staged)
        if len(batch) >= STAGE_BATCH:
            await conn.copy_records_to_table("log_redaction", records=batch, columns=_COLUMNS)
            batch = []
    if batch:
        await conn.copy_records_to_table("log_redaction", records=batch, columns=_COLUMNS)


def _redacted(position: int, stream: str, payload: str, raw: bytes | None) -> tuple[Any, ...] | None:
    """The staged row for one log row, or None when it holds no personal value (already redacted)."""
    cut = personal_data.split(payload.encode("utf-8"))
    raw_cut = personal_data.split(raw) if raw is not None else None
    source = raw_cut if raw_cut is not None and raw_cut.personal else cut
    personal_json = source.personal_json
    if personal_json is None or all(
        leaf == personal_data.MARKER for leaf in personal_data.leaves(source.personal)
    ):
        return None
    new_raw = raw_cut.facts_json.encode("utf-8") if raw_cut is not None else None
    order_id = order_of_stream(stream)
    if order_id is None:  # the fetcher writes order.observed only to order streams
        raise ValueError(f"log row {position}: order.observed on stream {stream!r}")
    return (position, order_id, cut.facts_json, new_raw, personal_json)


def _done_event(rows: int, kept: int) -> NewEvent:
    return NewEvent(
        stream="bunsync",
        type="maintenance.log_redacted",
        source="bunsync",
        idempotency_key=f"log_redacted:{uuid.uuid4()}",
        payload_json=msgspec.json.encode(_Done(rows=rows, orders_kept=kept)).decode("utf-8"),
    )


def _count(status: str) -> int:
    """The row count of a command tag (``UPDATE 12``, ``INSERT 0 3``)."""
    return int(status.rsplit(" ", 1)[-1])
