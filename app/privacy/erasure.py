"""Keeping and erasing buyer personal data (``bunsync.personal_data``), and the retention pass.

- The fetcher keeps the personal part of a Get Order answer (split off by
  :mod:`app.privacy.personal_data`) in the statement that logs the answer (``bunsync.store_observed``,
  migration 0012, which calls ``bunsync.keep_personal_data``), unless the order was forgotten.
- :func:`forget` erases orders' personal data at once (``bunsync forget --order``), :func:`forget_expired`
  those whose items all reached a final status ``BUNSYNC_PII_RETENTION_DAYS`` ago (the daily job and
  ``bunsync forget --expired``). Each erasure, in one transaction: delete the row, write the tombstone
  (``bunsync.erasures``, read by ``reporting.erasures``) and append an ``order.personal_data_erased``
  event to the log (no value in it), from which the orders projection shows the erasure. After the
  commit the table is rewritten (``VACUUM FULL``) so no deleted value stays in a heap page.

Nothing here logs or returns a personal value: only order ids, JSON Pointers and field names.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec
import structlog

from app import events
from app.ops import metrics
from app.store import db, event_log, sqlfiles
from app.store.db import Connection
from app.store.event_log import NewEvent

log = structlog.get_logger(__name__)

_Q = sqlfiles.queries("erasure")

Reason = Literal["retention", "request"]
#: Orders erased per transaction by the retention pass.
RETENTION_BATCH = 200


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``forget`` did for one order.

    ``state``: ``erased`` (now; ``erased`` lists what, empty when nothing was held), ``already`` (the
    order was forgotten before, at ``erased_at``), ``unknown`` (the log has never seen it: nothing done).
    """

    order_id: int
    state: Literal["erased", "already", "unknown"]
    erased: list[str] = field(default_factory=list)
    erased_at: datetime | None = None
    reason: str | None = None

    def describe(self) -> str:
        """One line for the operator (ids and field names only, never a value)."""
        if self.state == "unknown":
            return f"order {self.order_id}: unknown (the log has never seen it); nothing erased"
        if self.state == "already":
            at = self.erased_at.isoformat() if self.erased_at else "?"
            return f"order {self.order_id}: already forgotten ({self.reason}, {at}); nothing left to erase"
        what = "; ".join(self.erased) if self.erased else "no personal data was held"
        return f"order {self.order_id}: erased ({self.reason}): {what}"


class _ErasedPayload(msgspec.Struct, frozen=True, rename="camel"):
    order_id: int
    reason: str
    erased: list[str]


@db.operation
async def forget(pool: asyncpg.Pool, order_ids: list[int], reason: Reason) -> list[Outcome]:
    """Erase the personal data of ``order_ids`` now (idempotent); one :class:`Outcome` per order."""
    ids = sorted(set(order_ids))
    if not ids:
        return []
    async with pool.acquire() as conn:
        async with conn.transaction():
            outcomes = await _erase(conn, ids, reason)
            await event_log.append(
                conn, [_erased_event(o.order_id, reason, o.erased) for o in outcomes if o.state == "erased"]
            )
        if any(o.erased for o in outcomes):
            # After the commit (VACUUM cannot run in a transaction), as the table's owner (the service
            # role, migration 0007): rewrite the table so the deleted rows are gone from its pages.
            await conn.execute(_Q["vacuum"])
    _count(outcomes, reason)
    return outcomes


@db.operation
async def _erase(conn: Connection, ids: list[int], reason: Reason) -> list[Outcome]:
    """Erase each order of ``ids`` (sorted) in the caller's transaction."""
    known = {r["order_id"] for r in await conn.fetch(_Q["known_orders"], ids)}
    tombs = {r["order_id"]: r for r in await conn.fetch(_Q["erased_before"], ids)}
    outcomes: list[Outcome] = []
    for order_id in ids:
        if order_id not in known and order_id not in tombs:
            outcomes.append(Outcome(order_id, "unknown"))
            continue
        erased = await conn.fetchval(_Q["erase"], order_id, reason)
        if erased is not None:
            outcomes.append(Outcome(order_id, "erased", list(erased), reason=reason))
            continue
        t = tombs.get(order_id)  # forgotten before (by a concurrent forget, when not in tombs)
        at, why = (t["erased_at"], t["reason"]) if t else (None, None)
        outcomes.append(Outcome(order_id, "already", erased_at=at, reason=why))
    return outcomes


def _erased_event(order_id: int, reason: str, erased: list[str]) -> NewEvent:
    payload = _ErasedPayload(order_id=order_id, reason=reason, erased=erased)
    return NewEvent(
        stream=events.order_stream(order_id),
        type=events.PERSONAL_DATA_ERASED,
        source=events.SOURCE_BUNSYNC,
        # One erasure per order ever: the tombstone makes later ones no-ops, and the key makes sure.
        idempotency_key=events.erased_key(order_id),
        payload_json=msgspec.json.encode(payload).decode("utf-8"),
    )


def _count(outcomes: list[Outcome], reason: str) -> None:
    for o in outcomes:
        if o.state == "erased":
            metrics.PII_ERASURES.labels(reason=reason).inc()
            log.info("personal_data_erased", order_id=o.order_id, reason=reason, erased=o.erased)
        else:
            log.info("personal_data_erasure_skipped", order_id=o.order_id, state=o.state)


@db.operation
async def forget_expired(
    pool: asyncpg.Pool, retention_days: int, *, batch: int = RETENTION_BATCH
) -> list[Outcome]:
    """Erase the personal data of every order whose items all reached a final status (per the API)
    more than ``retention_days`` days ago; batch by batch, so a large backlog holds no long lock."""
    done: list[Outcome] = []
    while True:
        rows = await pool.fetch(_Q["expired"], retention_days, batch)
        if not rows:
            break
        done += await forget(pool, [r["order_id"] for r in rows], "retention")
    log.info("retention_pass_done", erased=len(done), retention_days=retention_days)
    return done


def exclusive(dsn: str) -> AbstractAsyncContextManager[bool]:
    """The retention job's lock for the block (one replica runs the daily pass): yields whether it is
    held (see :func:`app.store.db.session_lock`)."""
    return db.session_lock(dsn, _Q)
