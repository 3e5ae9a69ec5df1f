"""What ``GET /metrics`` answers: the database-wide gauges read at scrape time, then every metric.

The gauges (log head, projection checkpoints and lag, fetch queue, parked events, last reconcile,
hostile-input counts) come from ONE snapshot, :func:`app.ops.status.collect`, read by :func:`render`.
When the database cannot be read, a scrape still answers: the process-local metrics of
:mod:`app.ops.metrics`, and ``bunsync_database_up 0`` instead of the database-wide gauges (stale figures
would mislead an alert).

Only the HTTP layer imports this module: the counters' users never load the status reader (and through
it the projector engine).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import asyncpg
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.ops import status
from app.ops.metrics import MEDIA_TYPE, REGISTRY
from app.store.db import StorageUnavailable

__all__ = ["MEDIA_TYPE", "render"]

#: How long a scrape waits for the database snapshot before answering without it.
SNAPSHOT_TIMEOUT_S = 5.0


class DatabaseCollector(Collector):
    """Yields the database-wide gauges from the snapshot the latest scrape read (see :func:`render`)."""

    def __init__(self) -> None:
        self.snapshot: status.StatusReport | None = None

    def describe(self) -> Iterable[Metric]:
        return ()  # families vary with the snapshot; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        report = self.snapshot
        yield _gauge(
            "bunsync_database_up", "1 if this scrape could read the database, else 0.", report is not None
        )
        if report is None:
            return
        yield _gauge(
            "bunsync_log_head_position", "Position of the newest event in the log.", report.log_head_position
        )
        yield _gauge("bunsync_log_events", "Events in the log.", report.events_total)
        position = GaugeMetricFamily(
            "bunsync_projection_position",
            "Log position of each projection's checkpoint.",
            labels=["projection"],
        )
        lag = GaugeMetricFamily(
            "bunsync_projection_lag", "Events each projection has still to apply.", labels=["projection"]
        )
        for name, p in sorted(report.projections.items()):
            position.add_metric([name], p.position)
            lag.add_metric([name], p.lag)
        yield position
        yield lag
        queue = report.fetch_queue
        yield _gauge(
            "bunsync_fetch_pending", "Get Order fetches waiting (including retrying).", queue.pending
        )
        yield _gauge("bunsync_fetch_retrying", "Pending fetches that failed at least once.", queue.retrying)
        yield _gauge("bunsync_fetch_dead", "Fetches given up on; run `bunsync redrive`.", queue.dead)
        yield _gauge(
            "bunsync_parked_events",
            "Events a projection could not apply (unresolved).",
            report.parked_events.total,
        )
        yield _gauge(
            "bunsync_unrecognized_events",
            "Webhooks stored verbatim but not understood.",
            report.unrecognized_webhooks,
        )
        yield _gauge(
            "bunsync_webhook_conflicts",
            "eventIds redelivered with a different body.",
            report.webhook_conflicts,
        )
        last = report.last_reconcile
        if last is not None and last.finished_at is not None:
            yield _gauge(
                "bunsync_reconcile_last_finished_timestamp_seconds",
                "When the newest finished reconcile pass (any replica) finished, Unix time.",
                last.finished_at.timestamp(),
            )
            yield _gauge("bunsync_reconcile_last_ok", "1 if that pass succeeded, else 0.", bool(last.ok))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


_DATABASE = DatabaseCollector()
REGISTRY.register(_DATABASE)


async def render(pool: asyncpg.Pool) -> bytes:
    """The Prometheus text exposition: read the database snapshot (bounded in time), then every metric."""
    try:
        async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
            _DATABASE.snapshot = await status.collect(pool)
    except (StorageUnavailable, TimeoutError):
        _DATABASE.snapshot = None
    return generate_latest(REGISTRY)


class HostileInputCollector(Collector):
    """Database-wide gauges about hostile input, from the scrape's snapshot (:class:`DatabaseCollector`)."""

    def collect(self) -> Iterator[Metric]:
        report = _DATABASE.snapshot
        if report is None:
            return
        yield _gauge(
            "bunsync_item_anomalies",
            "Fields of API observations judged implausible or unreadable (kept out of the views; the "
            "status change itself still counts). See bunsync.item_anomalies.",
            report.anomalies.item_anomalies,
        )
        yield _gauge(
            "bunsync_order_anomalies",
            "Order-level fields of Get Order answers judged implausible or unreadable (NULL in the orders "
            "view; the rest of the observation still counts). See bunsync.order_anomalies.",
            report.anomalies.order_anomalies,
        )
        yield _gauge(
            "bunsync_reconcile_overdue_passes",
            "Reconcile passes still unfinished past their deadline (stuck, or their process died).",
            len(report.anomalies.overdue_passes),
        )


REGISTRY.register(HostileInputCollector())


class ForwardingCollector(Collector):
    """The change feed's forwarder (issue 13), from the scrape's snapshot (:class:`DatabaseCollector`)."""

    def collect(self) -> Iterator[Metric]:
        report = _DATABASE.snapshot
        if report is None or report.forwarding is None:
            return
        f = report.forwarding
        yield _gauge("bunsync_feed_head_position", "The change feed's last feed_position.", f.feed_head)
        yield _gauge(
            "bunsync_forward_delivered_position",
            "The last feed_position the partner's endpoint acknowledged (the forwarder's cursor).",
            f.delivered_through,
        )
        yield _gauge(
            "bunsync_forward_lag_changes", "Changes not yet acknowledged by the endpoint.", f.lag_changes
        )
        yield _gauge(
            "bunsync_forward_lag_seconds",
            "Age of the oldest change not yet acknowledged (0 when caught up); alert above a few minutes.",
            f.lag_seconds or 0.0,
        )
        yield _gauge(
            "bunsync_forward_paused", "1 when an endpoint's 410 Gone paused forwarding.", f.state == "paused"
        )
        yield _gauge(
            "bunsync_forward_failed_attempts",
            "Failed attempts at the change being delivered now.",
            f.attempts,
        )


REGISTRY.register(ForwardingCollector())
