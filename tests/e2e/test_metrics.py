"""``GET /metrics`` of the real ``bunsync serve``: the counts match what was sent, the database-wide
gauges match the database, a scrape still answers while the database is away; and request ids."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import Serve, TcpProxy, post_webhook, webhook_body

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(serve: Serve) -> Samples:
    r = httpx.get(f"{serve.admin_url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _scrape_until(serve: Serve, ok: Callable[[Samples], bool], what: str, deadline_s: float = 30) -> Samples:
    end = time.monotonic() + deadline_s
    while True:
        samples = _scrape(serve)
        if ok(samples):
            return samples
        assert time.monotonic() < end, f"{what}: not within {deadline_s} s"
        time.sleep(0.2)


def _webhooks(samples: Samples, result: str, reason: str = "") -> float | None:
    return _value(samples, "bunsync_webhooks_total", result=result, reason=reason)


async def test_metrics_count_what_happened(database_url: str, start_serve: Callable[..., Serve]) -> None:
    serve = start_serve({"BUNSYNC_DATABASE_URL": database_url})
    stored = [
        post_webhook(serve, webhook_body("A"), **{"X-Request-Id": "e2e-req-1"}),  # accepted
        post_webhook(serve, webhook_body("B", order_id=200)),  # accepted
        post_webhook(serve, webhook_body("A")),  # duplicate
        post_webhook(serve, webhook_body("A", status="SHIP_READY")),  # conflict
        post_webhook(serve, webhook_body("C", order_id=300, version="v2")),  # unrecognized
    ]
    assert [r.status_code for r in stored] == [204] * 5
    refused = [
        post_webhook(serve, webhook_body("F"), secret="wrong"),
        post_webhook(serve, webhook_body("F"), secret="wrong"),
        post_webhook(serve, webhook_body("F"), header=""),
        post_webhook(serve, b"x" * (1024 * 1024 + 1)),
    ]
    assert [r.status_code for r in refused] == [401, 401, 401, 413]

    # The fetches go to a Bunjang that is not there (ENV_BASE), so they fail and are retried; the
    # reconcile pass run at start fails the same way. Wait for those and for the projectors.
    samples = _scrape_until(
        serve,
        lambda s: bool(
            _value(s, "bunsync_fetches_total", result="retry")
            and _value(s, "bunsync_reconcile_passes_total", result="failed")
            and not any(v for (n, _), v in s.items() if n == "bunsync_projection_lag")
            and any(n == "bunsync_projection_lag" for n, _ in s)
        ),
        "fetch retries, a failed reconcile pass and projections caught up",
    )
    assert {
        (result, reason): _webhooks(samples, result, reason)
        for result, reason in [
            ("accepted", ""),
            ("duplicate", ""),
            ("conflict", ""),
            ("unrecognized", ""),
            ("rejected", "signature-invalid"),
            ("rejected", "signature-missing"),
            ("rejected", "signature-stale"),
            ("too_large", ""),
            ("unavailable", ""),
        ]
    } == {
        ("accepted", ""): 2,
        ("duplicate", ""): 1,
        ("conflict", ""): 1,
        ("unrecognized", ""): 1,
        ("rejected", "signature-invalid"): 2,
        ("rejected", "signature-missing"): 1,
        ("rejected", "signature-stale"): 0,
        ("too_large", ""): 1,
        ("unavailable", ""): 0,
    }
    assert _value(samples, "bunsync_webhook_ingest_duration_seconds_count") == 5
    assert _value(samples, "bunsync_webhook_ingest_duration_seconds_bucket", le="+Inf") == 5
    assert (_value(samples, "bunsync_webhook_ingest_duration_seconds_sum") or 0) > 0
    assert (_value(samples, "bunsync_bunjang_requests_total", endpoint="get_order", status="error") or 0) >= 1
    assert (
        _value(samples, "bunsync_bunjang_requests_total", endpoint="list_orders", status="error") or 0
    ) >= 1

    conn = await asyncpg.connect(database_url)
    try:
        head = await conn.fetchval("SELECT max(position) FROM bunsync.event_log")
        events = await conn.fetchval("SELECT count(*) FROM bunsync.event_log")
        projections = {
            r["projection"] for r in await conn.fetch("SELECT projection FROM bunsync.projection_checkpoints")
        }
        pending = await conn.fetchval("SELECT count(*) FROM bunsync.fetch_queue WHERE dead_at IS NULL")
    finally:
        await conn.close()
    assert _value(samples, "bunsync_database_up") == 1
    assert (_value(samples, "bunsync_log_head_position"), _value(samples, "bunsync_log_events")) == (
        head,
        events,
    )
    assert (
        projections
        and {dict(labels)["projection"] for (name, labels) in samples if name == "bunsync_projection_lag"}
        == projections
    )
    for name in projections:
        assert _value(samples, "bunsync_projection_position", projection=name) == head
    assert _value(samples, "bunsync_fetch_pending") == pending == 2
    assert _value(samples, "bunsync_fetch_dead") == 0
    assert _value(samples, "bunsync_parked_events") == 0
    assert _value(samples, "bunsync_unrecognized_events") == 1
    assert _value(samples, "bunsync_webhook_conflicts") == 1
    assert _value(samples, "bunsync_reconcile_last_ok") == 0

    # Request ids: echoed when sane, made up otherwise, and carried by the request's log line.
    assert stored[0].headers["x-request-id"] == "e2e-req-1"
    assert all(len(r.headers["x-request-id"]) == 16 for r in [*stored[1:], *refused])
    assert len({r.headers["x-request-id"] for r in stored[1:]}) == 4
    forged = post_webhook(serve, webhook_body("G"), **{"X-Request-Id": 'x" level=error'})
    assert forged.headers["x-request-id"] != 'x" level=error'
    assert httpx.get(f"{serve.admin_url}/metrics", headers={"X-Request-Id": "scrape-1"}).headers[
        "x-request-id"
    ] == ("scrape-1")
    lines = [json.loads(line) for line in serve.logs().splitlines() if line.startswith("{")]
    accepted = [line for line in lines if line.get("event") == "webhook_accepted"]
    assert [line["request_id"] for line in accepted if line.get("key") == "webhook:A"] == ["e2e-req-1"]
    assert all(len(line["request_id"]) == 16 for line in accepted if line.get("key") != "webhook:A")
    # Lines outside a request carry none (the ingest writers serve many requests at once).
    assert not [line for line in lines if line.get("event", "").startswith("fetch_") and "request_id" in line]

    # Refusals are not logged one by one (anyone can cause them at any rate): one summary line with
    # the counts by reason, written at the latest when the process stops.
    assert serve.stop() == 0
    lines = [json.loads(line) for line in serve.logs().splitlines() if line.startswith("{")]
    assert not [line for line in lines if line.get("event") in ("webhook_rejected", "webhook_too_large")]
    summaries = [line for line in lines if line.get("event") == "http_refused_summary"]
    counts: dict[str, int] = {}
    for line in summaries:
        for reason, n in line["counts"].items():
            counts[reason] = counts.get(reason, 0) + n
    assert counts == {
        "webhook:signature-invalid": 2,
        "webhook:signature-missing": 1,
        "webhook:body-too-large": 1,
    }


def test_a_scrape_answers_while_the_database_is_away(
    db_proxy: tuple[TcpProxy, str], start_serve: Callable[..., Serve]
) -> None:
    proxy, dsn = db_proxy
    serve = start_serve({"BUNSYNC_DATABASE_URL": dsn})
    assert post_webhook(serve, webhook_body("before")).status_code == 204
    up = _scrape(serve)
    assert _value(up, "bunsync_database_up") == 1 and _value(up, "bunsync_log_head_position") == 1
    proxy.cut()
    assert post_webhook(serve, webhook_body("during")).status_code == 503
    started = time.monotonic()
    down = _scrape(serve)
    assert time.monotonic() - started < 8  # bounded by the snapshot timeout
    assert _value(down, "bunsync_database_up") == 0
    assert _value(down, "bunsync_log_head_position") is None  # no stale figures
    assert (_webhooks(down, "accepted"), _webhooks(down, "unavailable")) == (1, 1)
    assert _value(down, "bunsync_webhook_ingest_duration_seconds_count") == 2
    proxy.restore()
    _scrape_until(serve, lambda s: _value(s, "bunsync_database_up") == 1, "database_up back to 1")
