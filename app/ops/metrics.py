"""The process-local Prometheus metrics (counters, histograms, a gauge) in bunsync's own ``REGISTRY``.

They are incremented where things happen (webhook endpoint, fetcher, Bunjang client, reconciler) and
count what *this* process did since it started; sum them over replicas. The hot path uses label children
bound once at import (``WEBHOOK_ACCEPTED`` …).

This module sits at the bottom of the imports: it imports nothing of bunsync, so any module may count
without pulling in the database or the projector. The database-wide gauges read at scrape time live in
:mod:`app.ops.scrape`, which only the HTTP layer imports.

The registry is not prometheus-client's global one, so importing bunsync registers nothing elsewhere and
tests can build apps repeatedly.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

__all__ = ["MEDIA_TYPE", "REGISTRY"]

#: The exposition format :func:`generate_latest` writes, as every Prometheus version reads it. (Not
#: prometheus-client's CONTENT_TYPE_LATEST: since 0.22 it announces format 1.0.0, which older servers
#: do not know.) The HTTP layer adds ``; charset=utf-8``.
MEDIA_TYPE = "text/plain; version=0.0.4"

# No `*_created` series: they double the exposition and no dashboard of bunsync's uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
REGISTRY = CollectorRegistry(auto_describe=True)

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
# The signature refusals (result "rejected", reason a Rejection value) are bound by app.webhook.endpoint,
# which owns the reasons: this module imports nothing of bunsync.

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
