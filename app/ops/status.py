"""The health snapshot behind ``bunsync status`` and ``GET /status``: gather, judge, render.

:func:`collect` reads everything an operator needs in one consistent snapshot (``reporting.sync_health``,
per-projection lag and checkpoints, the fetch queue with its dead jobs, parked events, the latest
reconcile passes) into a frozen :class:`StatusReport`. :func:`assess` is the pure judgement (healthy or
degraded, with what to do about each problem); :func:`encode_json` presents it;
:mod:`app.ops.status_text` renders it for a terminal.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import msgspec

from app.feed import health as feed_health
from app.store import db
from app.store.db import Connection
from app.store.sqlfiles import queries
from projections import engine

_Q = queries("status")

#: Exit codes of ``bunsync status``.
EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
EXIT_UNREACHABLE = 2

#: Default for ``--max-lag``: events a projection may be behind before bunsync counts as degraded.
DEFAULT_MAX_LAG = 1000
DEAD_FETCHES_SHOWN = 20
PARKED_SHOWN = 5
RECONCILE_PASSES_SHOWN = 5
ANOMALIES_SHOWN = 5
#: A clock reading older than this is not judged (the process that took it may be gone).
CLOCK_READING_FRESH_S = 900
#: Bunjang's tokens are valid 5 s after iat: warn well before.
CLOCK_SKEW_LIMIT_S = 2.0


class Verdict(StrEnum):
    """Overall health: degraded means an operator should look (see the reasons)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"


class ProjectionStatus(msgspec.Struct, frozen=True):
    """One projection's place: events behind the log head, and its checkpoint."""

    lag: int
    position: int
    events_read: int
    checkpoint_at: datetime


class DeadFetch(msgspec.Struct, frozen=True):
    """A Get Order fetch given up on; ``bunsync redrive`` re-queues it."""

    order_id: int
    attempts: int
    dead_at: datetime
    reason: str


class FetchQueue(msgspec.Struct, frozen=True):
    """Fetch queue depth. ``dead_fetches`` lists at most DEAD_FETCHES_SHOWN of the ``dead``, newest first."""

    pending: int
    due: int
    retrying: int
    dead: int
    dead_fetches: tuple[DeadFetch, ...]


class ParkedEvent(msgspec.Struct, frozen=True):
    """A log event a projection could not apply and set aside."""

    projection: str
    position: int
    error: str
    parked_at: datetime
    attempts: int
    retry_requested: bool


class ParkedEvents(msgspec.Struct, frozen=True):
    """Unresolved parked events: how many, per projection, and the newest few."""

    total: int
    by_projection: dict[str, int]
    newest: tuple[ParkedEvent, ...]


class ReconcilePass(msgspec.Struct, frozen=True):
    """One reconcile pass; ``finished_at`` and ``ok`` are None while it runs."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    range_start: datetime
    range_end: datetime
    orders_seen: int
    differences: int
    ok: bool | None
    error: str | None
    pages: int = 0  # List Orders pages read


class ItemAnomaly(msgspec.Struct, frozen=True):
    """A field of an API observation read as absent (implausible or unreadable); the status counted."""

    order_id: int
    order_item_id: int
    position: int
    field: str
    problem: str
    recorded_at: datetime


class OrderAnomaly(msgspec.Struct, frozen=True):
    """An order-level field of a Get Order answer read as absent (implausible or unreadable)."""

    order_id: int
    position: int
    field: str
    problem: str
    recorded_at: datetime


class OverduePass(msgspec.Struct, frozen=True):
    """A reconcile pass still unfinished past its deadline: stuck, or its process died."""

    id: int
    started_at: datetime
    deadline_at: datetime


class ClockReading(msgspec.Struct, frozen=True):
    """The newest measurement of a process's clock against Bunjang's ``Date`` header."""

    reporter: str
    skew_s: float
    measured_at: datetime


class HostileInput(msgspec.Struct, frozen=True):
    """What hostile or broken API answers left behind, and the clock (issue 9)."""

    item_anomalies: int = 0
    newest_item_anomalies: tuple[ItemAnomaly, ...] = ()
    order_anomalies: int = 0
    newest_order_anomalies: tuple[OrderAnomaly, ...] = ()
    overdue_passes: tuple[OverduePass, ...] = ()
    clock: ClockReading | None = None


class StatusReport(msgspec.Struct, frozen=True):
    """Everything ``bunsync status`` knows, as of ``checked_at`` (the database's clock)."""

    checked_at: datetime
    events_total: int
    last_event_at: datetime | None
    max_projection_lag: int
    projections: dict[str, ProjectionStatus]
    fetch_queue: FetchQueue
    parked_events: ParkedEvents
    #: The newest finished pass (what reporting.sync_health calls last_reconcile_at / _ok).
    last_reconcile: ReconcilePass | None
    reconcile_passes: tuple[ReconcilePass, ...]
    unrecognized_webhooks: int
    webhook_conflicts: int
    #: Position of the newest event in the log (0 while it is empty).
    log_head_position: int = 0
    anomalies: HostileInput = msgspec.field(default_factory=HostileInput)
    #: The change feed's forwarder (issue 13).
    forwarding: feed_health.Forwarding | None = None


@db.operation
async def collect(pool: asyncpg.Pool) -> StatusReport:
    """Read the health snapshot; raises :class:`app.store.db.StorageUnavailable` if the database is away."""
    # One REPEATABLE READ snapshot, so the numbers agree with each other (lags, counts and lists are
    # of the same instant). Read-only, it takes no transaction id, so it never holds back the
    # projectors' commit-safe reads however long it runs.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        return await _read(conn)


async def _read(conn: Connection) -> StatusReport:
    health = await conn.fetchrow(_Q["sync_health"])
    if health is None:  # a view over aggregates always has its one row
        raise RuntimeError("reporting.sync_health returned no row")
    last = await conn.fetchrow(_Q["last_reconcile"])
    passes = await conn.fetch(_Q["reconcile_passes"], RECONCILE_PASSES_SHOWN)
    return StatusReport(
        checked_at=health["checked_at"],
        events_total=int(health["events_total"]),
        last_event_at=health["last_event_at"],
        max_projection_lag=int(health["max_projection_lag"]),
        projections=await _projections(conn),
        fetch_queue=await _fetch_queue(conn),
        parked_events=await _parked_events(conn),
        last_reconcile=ReconcilePass(**dict(last)) if last is not None else None,
        reconcile_passes=tuple(ReconcilePass(**dict(r)) for r in passes),
        unrecognized_webhooks=int(health["unrecognized_events"]),
        webhook_conflicts=int(health["webhook_conflicts"]),
        log_head_position=int(health["log_head_position"]),
        anomalies=await _hostile_input(conn),
        forwarding=await feed_health.read(conn),
    )


async def _hostile_input(conn: Connection) -> HostileInput:
    clock = await conn.fetchrow(_Q["clock_reading"], CLOCK_READING_FRESH_S)
    return HostileInput(
        item_anomalies=int(await conn.fetchval(_Q["item_anomaly_count"]) or 0),
        newest_item_anomalies=tuple(
            ItemAnomaly(**dict(r)) for r in await conn.fetch(_Q["item_anomalies_newest"], ANOMALIES_SHOWN)
        ),
        order_anomalies=int(await conn.fetchval(_Q["order_anomaly_count"]) or 0),
        newest_order_anomalies=tuple(
            OrderAnomaly(**dict(r)) for r in await conn.fetch(_Q["order_anomalies_newest"], ANOMALIES_SHOWN)
        ),
        overdue_passes=tuple(OverduePass(**dict(r)) for r in await conn.fetch(_Q["overdue_passes"])),
        clock=ClockReading(**dict(clock)) if clock is not None else None,
    )


async def _projections(conn: Connection) -> dict[str, ProjectionStatus]:
    lags = await engine.lag(conn)
    return {
        r["projection"]: ProjectionStatus(
            lag=lags.get(r["projection"], 0),
            position=r["position"],
            events_read=r["events_read"],
            checkpoint_at=r["updated_at"],
        )
        for r in await conn.fetch(_Q["checkpoints"])
    }


async def _fetch_queue(conn: Connection) -> FetchQueue:
    counts = await conn.fetchrow(_Q["fetch_queue"])
    if counts is None:  # aggregates always give a row
        raise RuntimeError("fetch queue counts returned no row")
    dead = await conn.fetch(_Q["dead_fetches"], DEAD_FETCHES_SHOWN)
    return FetchQueue(
        pending=int(counts["pending"]),
        due=int(counts["due"]),
        retrying=int(counts["retrying"]),
        dead=int(counts["dead"]),
        dead_fetches=tuple(DeadFetch(**dict(r)) for r in dead),
    )


async def _parked_events(conn: Connection) -> ParkedEvents:
    counts = {r["projection"]: int(r["parked"]) for r in await conn.fetch(_Q["parked_counts"])}
    newest = await conn.fetch(_Q["parked_newest"], PARKED_SHOWN)
    return ParkedEvents(
        total=sum(counts.values()),
        by_projection=counts,
        newest=tuple(ParkedEvent(**dict(r)) for r in newest),
    )


def shortened(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def assess(report: StatusReport, *, max_lag: int = DEFAULT_MAX_LAG) -> tuple[Verdict, list[str]]:
    """Judge ``report``: degraded if any fetch is dead, any event parked, a projection is more than
    ``max_lag`` events behind, or the last finished reconcile pass failed. Each reason says what to do.
    """
    reasons: list[str] = []
    queue = report.fetch_queue
    if queue.dead:
        first = queue.dead_fetches[0] if queue.dead_fetches else None
        more = ", …" if queue.dead > 1 else ""
        example = f" (order {first.order_id}: {shortened(first.reason, 60)}{more})" if first else ""
        reasons.append(
            f"{plural(queue.dead, 'fetch', 'fetches')} dead{example}: "
            "fix the cause, then run `bunsync redrive`"
        )
    parked = report.parked_events
    if parked.total:
        where = ", ".join(f"{name} {n}" for name, n in sorted(parked.by_projection.items()))
        reasons.append(
            f"{plural(parked.total, 'parked event')} ({where}): fix the cause then retry parked events"
        )
    for name, projection in sorted(report.projections.items()):
        if projection.lag > max_lag:
            reasons.append(
                f"projection {name} is {projection.lag} events behind (limit {max_lag}): "
                "check that `bunsync serve` is running its projectors"
            )
    last = report.last_reconcile
    if last is not None and last.ok is False:
        reasons.append(
            f"last reconcile pass failed ({shortened(last.error or 'no error recorded', 120)}): "
            "fix the cause, then wait for the next pass or run `bunsync reconcile`"
        )
    reasons += _hostile_reasons(report.anomalies)
    if report.forwarding is not None:
        reasons += feed_health.reasons(report.forwarding)
    return (Verdict.DEGRADED if reasons else Verdict.HEALTHY), reasons


def _hostile_reasons(hostile: HostileInput) -> list[str]:
    """An overdue reconcile pass and a skewed clock degrade; item and order anomalies are shown, not
    judged (they stay in the record for good, and the observation they came with did count)."""
    reasons = [
        f"reconcile pass {p.id} (started {p.started_at:%Y-%m-%d %H:%M:%S}) is still unfinished past its "
        f"deadline {p.deadline_at:%H:%M:%S}: its process is stuck or died; check `bunsync serve` logs"
        for p in hostile.overdue_passes
    ]
    clock = hostile.clock
    if clock is not None and abs(clock.skew_s) > CLOCK_SKEW_LIMIT_S:
        ahead = "ahead of" if clock.skew_s > 0 else "behind"
        reasons.append(
            f"this host's clock is {abs(clock.skew_s):.1f} s {ahead} Bunjang's "
            f"(limit {CLOCK_SKEW_LIMIT_S:g} s; tokens are valid 5 s): synchronise it (NTP)"
        )
    return reasons


def exit_code(verdict: Verdict | None) -> int:
    """The CLI's exit code: 0 healthy, 1 degraded, 2 unreachable (``None``: no report could be read)."""
    if verdict is None:
        return EXIT_UNREACHABLE
    return EXIT_HEALTHY if verdict is Verdict.HEALTHY else EXIT_DEGRADED


def encode_json(report: StatusReport, verdict: Verdict, reasons: list[str]) -> bytes:
    """The JSON of ``bunsync status --json`` and ``GET /status``: verdict and reasons, then the report."""
    document: dict[str, Any] = {
        "healthy": verdict is Verdict.HEALTHY,
        "verdict": verdict.value,
        "reasons": reasons,
        **msgspec.structs.asdict(report),
    }
    return msgspec.json.encode(document)


def encode_unreachable(error: str) -> bytes:
    """The JSON when the database cannot be reached (exit code 2; HTTP 503)."""
    return msgspec.json.encode(
        {"healthy": False, "verdict": "unreachable", "reasons": [f"database unreachable: {error}"]}
    )


# ---------------------------------------------------------------------------------------------- text
