"""Judging a health snapshot (pure): what makes bunsync degraded, and what the operator is told to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from app.ops.status import (
    EXIT_DEGRADED,
    EXIT_HEALTHY,
    EXIT_UNREACHABLE,
    DeadFetch,
    FetchQueue,
    ParkedEvent,
    ParkedEvents,
    ProjectionStatus,
    ReconcilePass,
    StatusReport,
    Verdict,
    assess,
    encode_json,
    encode_unreachable,
    exit_code,
)
from app.ops.status_text import render_text

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _pass(minutes_ago: int, ok: bool | None, error: str | None = None) -> ReconcilePass:
    started = NOW - timedelta(minutes=minutes_ago)
    return ReconcilePass(
        id=100 - minutes_ago,
        started_at=started,
        finished_at=None if ok is None else started + timedelta(seconds=20),
        range_start=started - timedelta(minutes=15),
        range_end=started,
        orders_seen=40,
        differences=2,
        ok=ok,
        error=error,
    )


def _report(**changes: object) -> StatusReport:
    """A healthy report (caught up, nothing dead or parked, reconcile ok), with ``changes`` applied."""
    passes = (_pass(5, True),)
    base = StatusReport(
        checked_at=NOW,
        events_total=120,
        last_event_at=NOW - timedelta(seconds=3),
        max_projection_lag=0,
        projections={
            name: ProjectionStatus(lag=0, position=120, events_read=120, checkpoint_at=NOW)
            for name in ("order_item_history", "order_item_status", "orders")
        },
        fetch_queue=FetchQueue(pending=2, due=1, retrying=1, dead=0, dead_fetches=()),
        parked_events=ParkedEvents(total=0, by_projection={}, newest=()),
        last_reconcile=passes[0],
        reconcile_passes=passes,
        unrecognized_webhooks=3,
        webhook_conflicts=1,
    )
    return msgspec.structs.replace(base, **changes)


def _dead(n: int) -> FetchQueue:
    dead = tuple(
        DeadFetch(order_id=500 + i, attempts=12, dead_at=NOW, reason="404 order not found") for i in range(n)
    )
    return FetchQueue(pending=0, due=0, retrying=0, dead=n, dead_fetches=dead)


def test_caught_up_with_pending_fetches_and_unrecognised_webhooks_is_healthy() -> None:
    # Pending fetches, unrecognised webhooks and conflicts are normal traffic, not an operator's job.
    assert assess(_report(), max_lag=0) == (Verdict.HEALTHY, [])


def test_dead_fetches_say_to_redrive_with_an_example_reason() -> None:
    verdict, reasons = assess(_report(fetch_queue=_dead(2)))
    assert verdict is Verdict.DEGRADED
    assert len(reasons) == 1
    assert "2 fetchs" not in reasons[0] and "2 fetches dead" in reasons[0]
    assert "(order 500: 404 order not found, …)" in reasons[0]
    assert "bunsync redrive" in reasons[0]


def test_parked_events_name_their_projections_and_say_to_retry() -> None:
    event = ParkedEvent(
        projection="orders",
        position=7,
        error="ValueError: bad",
        parked_at=NOW,
        attempts=1,
        retry_requested=False,
    )
    parked = ParkedEvents(total=3, by_projection={"orders": 1, "order_item_status": 2}, newest=(event,))
    verdict, reasons = assess(_report(parked_events=parked))
    assert verdict is Verdict.DEGRADED
    assert reasons == [
        "3 parked events (order_item_status 2, orders 1): fix the cause then retry parked events"
    ]


@pytest.mark.parametrize(("lag", "degraded"), [(0, False), (50, False), (51, True)])
def test_lag_over_the_threshold_degrades(lag: int, degraded: bool) -> None:
    projections = dict(_report().projections)
    projections["orders"] = ProjectionStatus(lag=lag, position=70, events_read=70, checkpoint_at=NOW)
    verdict, reasons = assess(_report(projections=projections, max_projection_lag=lag), max_lag=50)
    assert (verdict is Verdict.DEGRADED) is degraded
    if degraded:
        assert reasons == [
            "projection orders is 51 events behind (limit 50): "
            "check that `bunsync serve` is running its projectors"
        ]


def test_failed_last_reconcile_gives_its_error() -> None:
    failed = _pass(1, False, "BunjangUnavailable: 503 from List Orders\n(after 5 attempts)")
    passes = (failed, _pass(6, True))
    verdict, reasons = assess(_report(last_reconcile=failed, reconcile_passes=passes))
    assert verdict is Verdict.DEGRADED
    assert len(reasons) == 1
    assert "failed (BunjangUnavailable: 503 from List Orders (after 5 attempts))" in reasons[0]
    assert "bunsync reconcile" in reasons[0]


def test_an_older_failure_or_a_running_pass_is_not_degraded() -> None:
    passes = (_pass(1, None), _pass(5, True), _pass(10, False, "boom"))
    assert assess(_report(last_reconcile=passes[1], reconcile_passes=passes))[0] is Verdict.HEALTHY


def test_no_reconcile_yet_is_healthy() -> None:
    assert assess(_report(last_reconcile=None, reconcile_passes=()))[0] is Verdict.HEALTHY


def test_every_problem_is_listed() -> None:
    failed = _pass(1, False, None)
    parked = ParkedEvents(total=1, by_projection={"orders": 1}, newest=())
    verdict, reasons = assess(
        _report(fetch_queue=_dead(1), parked_events=parked, last_reconcile=failed, reconcile_passes=(failed,))
    )
    assert verdict is Verdict.DEGRADED
    assert [r.split(" ")[1] for r in reasons] == ["fetch", "parked", "reconcile"]
    assert "1 fetch dead" in reasons[0]
    assert "no error recorded" in reasons[2]


def test_exit_codes() -> None:
    assert (EXIT_HEALTHY, EXIT_DEGRADED, EXIT_UNREACHABLE) == (0, 1, 2)
    assert exit_code(Verdict.HEALTHY) == 0
    assert exit_code(Verdict.DEGRADED) == 1
    assert exit_code(None) == 2


def test_json_carries_the_verdict_and_the_spec_keys() -> None:
    report = _report(fetch_queue=_dead(1))
    verdict, reasons = assess(report)
    doc = msgspec.json.decode(encode_json(report, verdict, reasons))
    assert doc["healthy"] is False and doc["verdict"] == "degraded" and doc["reasons"] == reasons
    assert doc["events_total"] == 120
    assert doc["projections"]["orders"] == {
        "lag": 0,
        "position": 120,
        "events_read": 120,
        "checkpoint_at": "2026-03-01T12:00:00Z",
    }
    assert (doc["fetch_queue"]["pending"], doc["fetch_queue"]["dead"]) == (0, 1)
    assert doc["fetch_queue"]["dead_fetches"][0]["order_id"] == 500
    assert doc["last_reconcile"]["ok"] is True
    assert doc["unrecognized_webhooks"] == 3
    # The JSON is the report: it decodes back into the same struct.
    assert msgspec.convert(doc, StatusReport) == report


def test_unreachable_json() -> None:
    doc = msgspec.json.decode(encode_unreachable("connection refused"))
    assert doc == {
        "healthy": False,
        "verdict": "unreachable",
        "reasons": ["database unreachable: connection refused"],
    }


def test_text_leads_with_the_verdict_and_reasons_and_aligns_tables() -> None:
    failed = _pass(1, False, "HTTP 401 from List Orders")
    report = _report(fetch_queue=_dead(3), last_reconcile=failed, reconcile_passes=(failed, _pass(6, True)))
    verdict, reasons = assess(report)
    text = render_text(report, verdict, reasons)
    lines = text.splitlines()
    assert lines[0].startswith("bunsync: DEGRADED")
    # Each reason, wrapped to the terminal, comes right after the verdict.
    assert len([line for line in lines if line.startswith("  ! ")]) == len(reasons) == 2
    block = lines[1 : lines.index("")]
    assert " ".join(line.strip(" !") for line in block) == " ".join(reasons)
    assert all(line.count("`") % 2 == 0 for line in block)  # a command is never cut
    assert "120 events, newest 2026-03-01 11:59:57 (3s ago)" in text
    assert "3 unrecognized, 1 conflicting redeliveries" in text
    assert "0 pending (0 due now, 0 retrying), 3 dead" in text
    assert "404 order not found" in text and "FAILED" in text and "HTTP 401 from List Orders" in text
    header = next(line for line in lines if "projection" in line and "checkpoint moved" in line)
    rows = [line for line in lines if line.strip().startswith("order")][:3]
    # Numbers are right-aligned under their column.
    lag_end = header.index("lag") + len("lag")
    assert all(row[lag_end - 1] == "0" for row in rows if "events" not in row)
    assert max(len(line) for line in lines) <= 100


def test_text_of_a_fresh_install() -> None:
    report = _report(
        events_total=0, last_event_at=None, last_reconcile=None, reconcile_passes=(), unrecognized_webhooks=0
    )
    text = render_text(report, *assess(report))
    assert text.startswith("bunsync: HEALTHY")
    assert "0 events, newest never" in text
    assert "no pass yet" in text
    assert "!" not in text
