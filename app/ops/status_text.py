"""``bunsync status`` for a terminal: the health snapshot of :mod:`app.ops.status` as a text summary,
each line within 100 columns."""

from __future__ import annotations

import re
import textwrap
from datetime import datetime, timedelta

from app.feed import health as feed_health
from app.ops.status import (
    FetchQueue,
    HostileInput,
    ParkedEvents,
    ReconcilePass,
    StatusReport,
    Verdict,
    shortened,
)

_TEXT_WIDTH = 100
_PAD = " " * 15  # the width of the section labels of the text summary
_NBSP = "\u00a0"  # textwrap does not break at a no-break space


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
                (str(d.order_id), str(d.attempts), _when(d.dead_at, now), shortened(d.reason, 40))
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
                (e.projection, str(e.position), _when(e.parked_at, now), shortened(e.error, 40))
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
        out.append(f"{_PAD}error: {shortened(last.error, _TEXT_WIDTH - len(_PAD) - 7)}")
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
            [(str(a.order_id), a.field, shortened(a.problem, max(room, 30))) for a in shown],
        )
    out.append(_label("", f"{hostile.item_anomalies} item fields read as absent (bunsync.item_anomalies)"))
    if hostile.newest_item_anomalies:
        out += _table(
            ("order", "item", "field", "problem"),
            [
                (str(a.order_id), str(a.order_item_id), a.field, shortened(a.problem, 50))
                for a in hostile.newest_item_anomalies
            ],
        )
    return out
