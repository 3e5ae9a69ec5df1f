"""The health snapshot behind ``bunsync status`` and ``GET /status``: gather, judge, render.

:func:`collect` reads everything an operator needs in one consistent snapshot (``reporting.sync_health``,
per-projection lag and checkpoints, the fetch queue with its dead jobs, parked events, the latest
reconcile passes) into a frozen :class:`StatusReport`. :func:`assess` is the pure judgement (healthy or
degraded, with what to do about each problem); :func:`render_text` and :func:`encode_json` present it.
"""

from __future__ import annotations

import re
import textwrap
from datetime import datetime, timedelta
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
_TEXT_WIDTH = 100
_PAD = " " * 15  # the width of the section labels of the text summary
_NBSP = "\u00a0"  # textwrap does not break at a no-break space


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


def _plural(n: int, word: str, words: str | None = None) -> str:
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
        example = f" (order {first.order_id}: {_line(first.reason, 60)}{more})" if first else ""
        reasons.append(
            f"{_plural(queue.dead, 'fetch', 'fetches')} dead{example}: "
            "fix the cause, then run `bunsync redrive`"
        )
    parked = report.parked_events
    if parked.total:
        where = ", ".join(f"{name} {n}" for name, n in sorted(parked.by_projection.items()))
        reasons.append(
            f"{_plural(parked.total, 'parked event')} ({where}): fix the cause then retry parked events"
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
            f"last reconcile pass failed ({_line(last.error or 'no error recorded', 120)}): "
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


def _line(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _wrap(reason: str) -> str:
    """``reason`` wrapped for a terminal, never inside a `command` (so it can be copied whole)."""
    kept = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", _NBSP), reason)
    text = textwrap.fill(kept, _TEXT_WIDTH, initial_indent="  ! ", subsequent_indent="    ")
    return text.replace(_NBSP, " ")


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    return f"{at.astimezone(now.tzinfo):%Y-%m-%d %H:%M:%S} ({_ago(now - at)})"


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Rows aligned under ``header``; numbers (cells of digits) right-aligned."""
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]

    def fmt(cells: tuple[str, ...]) -> str:
        parts = [c.rjust(w) if c.isdigit() else c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        return (_PAD + "  ".join(parts)).rstrip()

    return [fmt(header), *(fmt(r) for r in rows)]


def _pass_row(p: ReconcilePass, now: datetime) -> tuple[str, ...]:
    outcome = "running" if p.ok is None else "ok" if p.ok else "FAILED"
    span = f"{p.range_start:%m-%d %H:%M} → {p.range_end:%m-%d %H:%M}"
    return (_when(p.started_at, now), outcome, span, str(p.orders_seen), str(p.differences))


def render_text(report: StatusReport, verdict: Verdict, reasons: list[str]) -> str:
    """The human summary of ``bunsync status``: verdict and what to do first, then each part."""
    now = report.checked_at
    out = [f"bunsync: {verdict.value.upper()}  (as of {now:%Y-%m-%d %H:%M:%S %Z})"]
    out += [_wrap(r) for r in reasons]
    out += [
        "",
        _label("Event log", f"{report.events_total} events, newest {_when(report.last_event_at, now)}"),
        _label(
            "Webhooks",
            f"{report.unrecognized_webhooks} unrecognized, "
            f"{report.webhook_conflicts} conflicting redeliveries",
        ),
        _label("Projections", f"max lag {report.max_projection_lag}"),
        *_table(
            ("projection", "lag", "position", "checkpoint moved"),
            [
                (name, str(p.lag), str(p.position), _when(p.checkpoint_at, now))
                for name, p in sorted(report.projections.items())
            ],
        ),
        *_fetch_lines(report.fetch_queue, now),
        *_parked_lines(report.parked_events, now),
        *_reconcile_lines(report, now),
        *_hostile_lines(report.anomalies, now),
        *([_label("Forwarding", feed_health.line(report.forwarding))] if report.forwarding else []),
    ]
    return "\n".join(out) + "\n"


def _label(label: str, text: str) -> str:
    return f"{label:<{len(_PAD)}}{text}"


def _fetch_lines(queue: FetchQueue, now: datetime) -> list[str]:
    out = [
        _label(
            "Fetch queue",
            f"{queue.pending} pending ({queue.due} due now, {queue.retrying} retrying), {queue.dead} dead",
        )
    ]
    if queue.dead_fetches:
        shown = "" if len(queue.dead_fetches) == queue.dead else f" (newest {len(queue.dead_fetches)})"
        out.append(_label("Dead fetches", f"{queue.dead}{shown}"))
        out += _table(
            ("order", "attempts", "dead since", "reason"),
            [
                (str(d.order_id), str(d.attempts), _when(d.dead_at, now), _line(d.reason, 40))
                for d in queue.dead_fetches
            ],
        )
    return out


def _parked_lines(parked: ParkedEvents, now: datetime) -> list[str]:
    if not parked.total:
        return [_label("Parked events", "0")]
    per = ", ".join(f"{name} {n}" for name, n in sorted(parked.by_projection.items()))
    return [
        _label("Parked events", f"{parked.total} ({per})"),
        *_table(
            ("projection", "position", "parked", "error"),
            [
                (e.projection, str(e.position), _when(e.parked_at, now), _line(e.error, 40))
                for e in parked.newest
            ],
        ),
    ]


def _reconcile_lines(report: StatusReport, now: datetime) -> list[str]:
    if not report.reconcile_passes:
        return [_label("Reconcile", "no pass yet")]
    last = report.last_reconcile
    out = [
        _label("Reconcile", f"last finished {_when(last.finished_at if last else None, now)}"),
        *_table(
            ("started", "outcome", "range", "orders", "differences"),
            [_pass_row(p, now) for p in report.reconcile_passes],
        ),
    ]
    if last is not None and last.ok is False and last.error:
        out.append(f"{_PAD}error: {_line(last.error, _TEXT_WIDTH - len(_PAD) - 7)}")
    return out


def _hostile_lines(hostile: HostileInput, now: datetime) -> list[str]:
    clock = hostile.clock
    skew = (
        f"{clock.skew_s:+.2f} s against Bunjang's Date header "
        f"({clock.reporter}, {_when(clock.measured_at, now)})"
        if clock is not None
        else "not measured recently"
    )
    out = [
        _label("Clock skew", skew),
        _label(
            "API anomalies",
            f"{hostile.order_anomalies} order fields read as absent (bunsync.order_anomalies)",
        ),
    ]
    if hostile.newest_order_anomalies:
        shown = hostile.newest_order_anomalies
        # The problem gets what the order and field columns leave of the line.
        room = _TEXT_WIDTH - len(_PAD) - 4 - max(len("order"), *(len(str(a.order_id)) for a in shown))
        room -= max(len("field"), *(len(a.field) for a in shown))
        out += _table(
            ("order", "field", "problem"),
            [(str(a.order_id), a.field, _line(a.problem, max(room, 30))) for a in shown],
        )
    out.append(_label("", f"{hostile.item_anomalies} item fields read as absent (bunsync.item_anomalies)"))
    if hostile.newest_item_anomalies:
        out += _table(
            ("order", "item", "field", "problem"),
            [
                (str(a.order_id), str(a.order_item_id), a.field, _line(a.problem, 50))
                for a in hostile.newest_item_anomalies
            ],
        )
    return out
