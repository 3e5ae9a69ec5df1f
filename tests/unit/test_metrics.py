"""The metrics registry: it renders, with the documented names, types and labels; and request ids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.logs import request_id
from app.ops import metrics, scrape
from app.ops.status import (
    FetchQueue,
    HostileInput,
    ParkedEvents,
    ProjectionStatus,
    ReconcilePass,
    StatusReport,
)
from app.webhook import endpoint  # binds the signature refusals' series, as at serve start
from app.webhook.signature import Rejection

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

PROCESS_LOCAL = {
    "bunsync_webhooks": ("counter", {"result", "reason"}),
    "bunsync_webhook_ingest_duration_seconds": ("histogram", set()),
    "bunsync_fetches": ("counter", {"result"}),
    "bunsync_bunjang_requests": ("counter", {"endpoint", "status"}),
    "bunsync_reconcile_passes": ("counter", {"result"}),
    "bunsync_reconcile_differences": ("counter", set()),
    "bunsync_reconcile_orders_seen": ("counter", set()),
    "bunsync_http_refusals": ("counter", {"listener", "reason"}),
}
DATABASE_WIDE = {
    "bunsync_database_up": set(),
    "bunsync_log_head_position": set(),
    "bunsync_log_events": set(),
    "bunsync_projection_position": {"projection"},
    "bunsync_projection_lag": {"projection"},
    "bunsync_fetch_pending": set(),
    "bunsync_fetch_retrying": set(),
    "bunsync_fetch_dead": set(),
    "bunsync_parked_events": set(),
    "bunsync_unrecognized_events": set(),
    "bunsync_webhook_conflicts": set(),
    "bunsync_reconcile_last_finished_timestamp_seconds": set(),
    "bunsync_reconcile_last_ok": set(),
    "bunsync_item_anomalies": set(),
    "bunsync_order_anomalies": set(),
}


def _report() -> StatusReport:
    finished = ReconcilePass(
        id=7,
        started_at=NOW - timedelta(minutes=1),
        finished_at=NOW,
        range_start=NOW - timedelta(hours=1),
        range_end=NOW - timedelta(minutes=1),
        orders_seen=40,
        differences=2,
        ok=True,
        error=None,
    )
    return StatusReport(
        checked_at=NOW,
        events_total=120,
        last_event_at=NOW,
        max_projection_lag=5,
        projections={
            "order_item_status": ProjectionStatus(lag=5, position=115, events_read=115, checkpoint_at=NOW),
            "orders": ProjectionStatus(lag=0, position=121, events_read=120, checkpoint_at=NOW),
        },
        fetch_queue=FetchQueue(pending=3, due=1, retrying=2, dead=4, dead_fetches=()),
        parked_events=ParkedEvents(total=1, by_projection={"orders": 1}, newest=()),
        last_reconcile=finished,
        reconcile_passes=(finished,),
        unrecognized_webhooks=6,
        webhook_conflicts=2,
        log_head_position=121,
        anomalies=HostileInput(item_anomalies=2, order_anomalies=3),
    )


@pytest.fixture
def snapshot() -> Iterator[None]:
    """The database-wide gauges as one scrape would have read them; cleared afterwards."""
    scrape._DATABASE.snapshot = _report()
    yield
    scrape._DATABASE.snapshot = None


def _families() -> dict[str, tuple[str, list[tuple[dict[str, str], float]]]]:
    text = generate_latest(metrics.REGISTRY).decode()
    return {
        f.name: (
            f.type,
            [
                (s.labels, s.value)
                for s in f.samples
                if s.name.endswith(("_total", "_count")) or f.type == "gauge"
            ],
        )
        for f in text_string_to_metric_families(text)
    }


def test_process_local_metrics_render_with_their_names_types_and_labels() -> None:
    metrics.BUNJANG_REQUESTS.labels("get_order", "200").inc(0)  # a labelled family shows once used
    metrics.HTTP_REFUSALS.labels("webhook", "header_timeout").inc(0)
    families = _families()
    for name, (kind, labels) in PROCESS_LOCAL.items():
        assert name in families, name
        assert families[name][0] == kind, name
        samples = families[name][1]
        assert samples, name
        assert all(set(s_labels) == labels for s_labels, _ in samples), (name, samples)
    assert not any(name.endswith("_created") for name in families)


def test_every_webhook_outcome_has_a_series_from_the_start() -> None:
    results = {(s["result"], s["reason"]) for s, _ in _families()["bunsync_webhooks"][1]}
    assert results == {
        ("accepted", ""),
        ("duplicate", ""),
        ("conflict", ""),
        ("unrecognized", ""),
        ("too_large", ""),
        ("unavailable", ""),
        ("busy", ""),
        ("error", ""),
        ("rejected", "method-not-allowed"),
        *(("rejected", r.value) for r in Rejection),
    }


def test_counters_count() -> None:
    def value(result: str, reason: str = "") -> float:
        sample = metrics.REGISTRY.get_sample_value(
            "bunsync_webhooks_total", {"result": result, "reason": reason}
        )
        return sample or 0.0

    before = value("rejected", "signature-stale"), value("accepted")
    endpoint.REJECTED[Rejection.STALE].inc()
    metrics.WEBHOOK_ACCEPTED.inc(2)
    assert (value("rejected", "signature-stale"), value("accepted")) == (before[0] + 1, before[1] + 2)


def test_ingest_latency_buckets_suit_one_to_two_hundred_milliseconds() -> None:
    bounds = [float(b) for b in metrics.INGEST_SECONDS._upper_bounds]
    inside = [b for b in bounds if 0.001 <= b <= 0.2]
    assert inside[0] == 0.001 and inside[-1] == 0.2 and len(inside) >= 8


def test_database_down_renders_only_database_up_zero() -> None:
    families = _families()
    assert families["bunsync_database_up"][1] == [({}, 0.0)]
    assert not set(DATABASE_WIDE) - {"bunsync_database_up"} & set(families)
    assert "bunsync_webhooks" in families  # process-local metrics are still there


@pytest.mark.usefixtures("snapshot")
def test_database_wide_gauges_come_from_the_snapshot() -> None:
    families = _families()
    for name, labels in DATABASE_WIDE.items():
        kind, samples = families[name]
        assert kind == "gauge", name
        assert all(set(s_labels) == labels for s_labels, _ in samples), name
    value = {name: samples for name, (_, samples) in families.items()}
    assert value["bunsync_database_up"] == [({}, 1.0)]
    assert value["bunsync_log_head_position"] == [({}, 121.0)]
    assert value["bunsync_log_events"] == [({}, 120.0)]
    assert sorted(value["bunsync_projection_lag"], key=repr) == [
        ({"projection": "order_item_status"}, 5.0),
        ({"projection": "orders"}, 0.0),
    ]
    assert ({"projection": "orders"}, 121.0) in value["bunsync_projection_position"]
    assert (value["bunsync_fetch_pending"], value["bunsync_fetch_dead"]) == ([({}, 3.0)], [({}, 4.0)])
    assert value["bunsync_parked_events"] == [({}, 1.0)]
    assert value["bunsync_reconcile_last_finished_timestamp_seconds"] == [({}, NOW.timestamp())]
    assert value["bunsync_reconcile_last_ok"] == [({}, 1.0)]
    assert (value["bunsync_item_anomalies"], value["bunsync_order_anomalies"]) == ([({}, 2.0)], [({}, 3.0)])


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (b"abc-123", True),
        (b"0af7651916cd43dd8448eb211c80319c", True),
        (b"trace.id:7_x", True),
        (b"", False),
        (b"x" * 65, False),
        (b'evil" level=error', False),
        (b"line\nbreak", False),
        ("한글".encode(), False),
        (None, False),
    ],
)
def test_request_id_keeps_a_sane_caller_id_else_makes_one(header: bytes | None, kept: bool) -> None:
    rid = request_id(header)
    if kept:
        assert header is not None and rid == header.decode()
    else:
        assert len(rid) == 16 and all(c in "0123456789abcdef" for c in rid)
        assert request_id(header) != rid  # fresh each time
