"""Every Prometheus metric bunsync exports, in one registry of its own (``REGISTRY``), and its rendering.

Two kinds:

- **Process-local** counters and histograms, incremented where things happen (webhook endpoint, fetcher,
  Bunjang client, reconciler). They count what *this* process did since it started; sum them over
  replicas. The hot path uses label children bound once at import (``WEBHOOK_ACCEPTED`` …).
- **Database-wide** gauges (log head, projection checkpoints and lag, fetch queue, parked events, last
  reconcile), read at scrape time by :func:`render` in ONE snapshot (:func:`app.ops.status.collect`). When
  the database cannot be read, a scrape still answers: the process-local metrics, and
  ``bunsync_database_up 0`` instead of the database-wide gauges (stale figures would mislead an alert).

The registry is not prometheus-client's global one, so importing bunsync registers nothing elsewhere and
tests can build apps repeatedly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import asyncpg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.ops import status
from app.store.db import StorageUnavailable
from app.webhook.signature import Rejection

__all__ = ["MEDIA_TYPE", "REGISTRY", "render"]

#: The exposition format :func:`generate_latest` writes, as every Prometheus version reads it. (Not
#: prometheus-client's CONTENT_TYPE_LATEST: since 0.22 it announces format 1.0.0, which older servers
#: do not know.) The HTTP layer adds ``; charset=utf-8``.
MEDIA_TYPE = "text/plain; version=0.0.4"

# No `*_created` series: they double the exposition and no dashboard of bunsync's uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
REGISTRY = CollectorRegistry(auto_describe=True)

#: How long a scrape waits for the database snapshot before answering without it.
SNAPSHOT_TIMEOUT_S = 5.0

# ------------------------------------------------------------------------------------------- webhooks

WEBHOOKS = Counter(
    "bunsync_webhooks_total",
    "Webhook deliveries answered, by result (accepted, duplicate, conflict, unrecognized: stored, 204; "
    "rejected: 401 or 405, with the reason; too_large: 413; unavailable: 503, not stored; busy: 503, "
    "too many large bodies in flight; error: 500, a bug).",
    ["result", "reason"],
    registry=REGISTRY,
)
# Bound once: the webhook path increments a child, never looks labels up.
WEBHOOK_ACCEPTED = WEBHOOKS.labels("accepted", "")
WEBHOOK_DUPLICATE = WEBHOOKS.labels("duplicate", "")
WEBHOOK_CONFLICT = WEBHOOKS.labels("conflict", "")
WEBHOOK_UNRECOGNIZED = WEBHOOKS.labels("unrecognized", "")
WEBHOOK_TOO_LARGE = WEBHOOKS.labels("too_large", "")
WEBHOOK_UNAVAILABLE = WEBHOOKS.labels("unavailable", "")
WEBHOOK_BUSY = WEBHOOKS.labels("busy", "")  # 503: too many large bodies in flight (app.webhook.endpoint)
WEBHOOK_ERROR = WEBHOOKS.labels("error", "")
WEBHOOK_METHOD_NOT_ALLOWED = WEBHOOKS.labels("rejected", "method-not-allowed")
WEBHOOK_REJECTED = {r: WEBHOOKS.labels("rejected", r.value) for r in Rejection}

INGEST_SECONDS = Histogram(
    "bunsync_webhook_ingest_duration_seconds",
    "Time from receiving a webhook to answering it, for deliveries that reached storage (204 or 503).",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)

# ------------------------------------------------------------------------------------------ fetching

FETCHES = Counter(
    "bunsync_fetches_total",
    "Get Order fetches finished by this process, by result (done: observed and logged; retry: failed, "
    "rescheduled with backoff; dead: parked, needs `bunsync redrive`).",
    ["result"],
    registry=REGISTRY,
)
FETCH_DONE = FETCHES.labels("done")
FETCH_RETRY = FETCHES.labels("retry")
FETCH_DEAD = FETCHES.labels("dead")

BUNJANG_REQUESTS = Counter(
    "bunsync_bunjang_requests_total",
    "HTTP requests to the Bunjang Open API (every attempt), by endpoint and status code "
    "('error' when no answer came: timeout or network error).",
    ["endpoint", "status"],
    registry=REGISTRY,
)

# ------------------------------------------------------------------------------------------ reconcile

RECONCILE_PASSES = Counter(
    "bunsync_reconcile_passes_total",
    "Reconcile passes run by this process, by result (ok, failed).",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_OK = RECONCILE_PASSES.labels("ok")
RECONCILE_FAILED = RECONCILE_PASSES.labels("failed")
RECONCILE_DIFFERENCES = Counter(
    "bunsync_reconcile_differences_total",
    "Listed orders whose item status differed from the view (webhooks missed or not yet fetched).",
    registry=REGISTRY,
)
RECONCILE_ORDERS_SEEN = Counter(
    "bunsync_reconcile_orders_seen_total",
    "Orders listed by List Orders during reconcile passes.",
    registry=REGISTRY,
)


# ------------------------------------------------------------------------------- HTTP refusals

HTTP_REFUSALS = Counter(
    "bunsync_http_refusals_total",
    "Requests and connections the HTTP listeners refused or cut before the application saw them, by "
    "listener (webhook, operator) and reason (header_timeout, body_timeout, write_timeout, "
    "headers_too_large, too_many_headers, uri_too_long, bad_request, pipeline_overflow, "
    "connection_limit, not_found, unauthorized). Signature refusals are in bunsync_webhooks_total.",
    ["listener", "reason"],
    registry=REGISTRY,
)


# ---------------------------------------------------------------------------------- database-wide


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


# --- buyer personal data (app/erasure.py) ---------------------------------------------------------

PII_ERASURES = Counter(
    "bunsync_pii_erasures",
    "Orders whose buyer personal data this process erased, by reason (request, retention)",
    ["reason"],
    registry=REGISTRY,
)
PII_RETENTION_PASSES = Counter(
    "bunsync_pii_retention_passes",
    "Scheduled personal-data retention passes this process ran, by result (ok, failed)",
    ["result"],
    registry=REGISTRY,
)


# --------------------------------------------------------------------- hostile API answers and clock
# (issue 9: what the Bunjang API returns can never break bunsync; the clock against Bunjang's)

API_ANOMALIES = Counter(
    "bunsync_api_anomalies_total",
    "Bunjang answers (or parts) bunsync took in only after repairing them, or could not use, by kind "
    "(escaped_characters: text jsonb cannot store was escaped; list_entry_unreadable: a List Orders "
    "entry without a usable id; unstorable: a fetch dead-lettered because it could not be stored).",
    ["kind"],
    registry=REGISTRY,
)
CLOCK_SKEW = Gauge(
    "bunsync_clock_skew_seconds",
    "This host's clock minus Bunjang's, from the Date header of the latest answer (positive: ours is "
    "ahead). Bunjang's tokens are valid 5 s: alert above 2 s.",
    registry=REGISTRY,
)


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
