"""`bunsync status` on a real database: the numbers, verdict, JSON and text of states built in it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from app.ops import status, status_text
from app.ops.status import Verdict
from app.store import db, event_log, roles
from app.store.event_log import NewEvent
from projections import engine
from tests.fixtures.events import append, at, observed, observed_body, project_all

T0 = datetime(2026, 2, 1, tzinfo=UTC)
PROJECTIONS = {"order_item_history", "order_item_status", "orders", "item_changes"}


def _event(key: str, *, order_id: int | None = None, type_: str = "test.event") -> NewEvent:
    return NewEvent(
        stream=f"order-{order_id or 0}",
        type=type_,
        source="webhook",
        idempotency_key=key,
        payload_json="{}",
        fetch_order_id=order_id,
    )


async def _append(pool: asyncpg.Pool, *events: NewEvent) -> None:
    async with pool.acquire() as conn:
        await event_log.append(conn, list(events))


async def _dead(admin: asyncpg.Connection, order_id: int, reason: str, *, dead_at: datetime = T0) -> None:
    await admin.execute(
        "INSERT INTO bunsync.fetch_queue (order_id, attempts, dead_at, dead_reason, last_error)"
        " VALUES ($1, 12, $2, $3, $3)",
        order_id,
        dead_at,
        reason,
    )


async def _reconcile_pass(
    admin: asyncpg.Connection, started: datetime, ok: bool | None, error: str | None = None
) -> None:
    await admin.execute(
        "INSERT INTO bunsync.reconcile_passes"
        " (started_at, finished_at, range_start, range_end, orders_seen, differences, ok, error)"
        " SELECT s, CASE WHEN $2::boolean IS NULL THEN NULL ELSE s + interval '30 seconds' END,"
        "        s - interval '10 minutes', s, 42, 3, $2, $3 FROM (SELECT $1::timestamptz AS s) AS t",
        started,
        ok,
        error,
    )


async def test_a_fresh_database_is_healthy(pool: asyncpg.Pool) -> None:
    report = await status.collect(pool)
    assert (report.events_total, report.last_event_at, report.max_projection_lag) == (0, None, 0)
    assert set(report.projections) == PROJECTIONS
    assert all(p.lag == 0 and p.position == 0 for p in report.projections.values())
    assert report.fetch_queue == status.FetchQueue(pending=0, due=0, retrying=0, dead=0, dead_fetches=())
    assert report.parked_events.total == 0
    assert (report.last_reconcile, report.reconcile_passes) == (None, ())
    verdict, reasons = status.assess(report, max_lag=0)
    assert (verdict, reasons, status.exit_code(verdict)) == (Verdict.HEALTHY, [], 0)
    assert "no pass yet" in status_text.render_text(report, verdict, reasons)


async def test_a_troubled_system_is_reported_and_degraded(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await _append(
        pool,
        _event("a", order_id=100),
        _event("b", order_id=101),
        _event("c"),
        _event("u", type_="webhook.unrecognized"),
    )
    # Order 101's fetch failed once and waits out its backoff; 900 and 901 were given up on.
    await admin.execute(
        "UPDATE bunsync.fetch_queue SET attempts = 1, last_error = 'HTTP 503',"
        " next_attempt_at = now() + interval '1 minute' WHERE order_id = 101"
    )
    await _dead(admin, 900, "404 order not found", dead_at=T0)
    await _dead(admin, 901, "403 not your order", dead_at=T0 + timedelta(hours=1))
    await admin.execute(
        "INSERT INTO bunsync.parked_events (projection, position, error, parked_at) VALUES"
        " ('orders', 1, 'ValueError: bad price', $1), ('orders', 2, 'KeyError: items', $2),"
        " ('order_item_status', 1, 'old, fixed', $1)",
        T0,
        T0 + timedelta(minutes=5),
    )
    await admin.execute(
        "UPDATE bunsync.parked_events SET resolved_at = now() WHERE projection = 'order_item_status'"
    )
    await _reconcile_pass(admin, T0, True)
    await _reconcile_pass(admin, T0 + timedelta(minutes=5), False, "BunjangUnavailable: 503 on List Orders")
    await _reconcile_pass(admin, T0 + timedelta(minutes=10), None)  # running now

    report = await status.collect(pool)

    assert report.events_total == 4
    assert report.last_event_at is not None
    assert {name: p.lag for name, p in report.projections.items()} == dict.fromkeys(PROJECTIONS, 4)
    assert report.max_projection_lag == 4
    assert report.fetch_queue.pending == 2
    assert (report.fetch_queue.due, report.fetch_queue.retrying, report.fetch_queue.dead) == (1, 1, 2)
    assert [(d.order_id, d.attempts, d.reason) for d in report.fetch_queue.dead_fetches] == [
        (901, 12, "403 not your order"),
        (900, 12, "404 order not found"),
    ]
    assert report.parked_events.total == 2
    assert report.parked_events.by_projection == {"orders": 2}
    assert [(e.position, e.error) for e in report.parked_events.newest] == [
        (2, "KeyError: items"),
        (1, "ValueError: bad price"),
    ]
    assert [p.ok for p in report.reconcile_passes] == [None, False, True]
    assert report.last_reconcile is not None
    assert report.last_reconcile.error == "BunjangUnavailable: 503 on List Orders"
    assert (report.last_reconcile.orders_seen, report.last_reconcile.differences) == (42, 3)
    assert (report.unrecognized_webhooks, report.webhook_conflicts) == (1, 0)

    verdict, reasons = status.assess(report, max_lag=3)
    assert verdict is Verdict.DEGRADED and status.exit_code(verdict) == 1
    assert len(reasons) == 2 + len(PROJECTIONS) + 1
    text = " ".join(reasons)
    assert "2 fetches dead (order 901: 403 not your order, …)" in text and "`bunsync redrive`" in text
    assert "2 parked events (orders 2): fix the cause then retry parked events" in reasons
    assert "projection orders is 4 events behind (limit 3)" in text
    assert "BunjangUnavailable: 503 on List Orders" in reasons[-1]
    assert status.assess(report, max_lag=4)[1] == [r for r in reasons if "behind" not in r]

    doc = msgspec.json.decode(status.encode_json(report, verdict, reasons))
    assert (doc["healthy"], doc["verdict"], doc["reasons"]) == (False, "degraded", reasons)
    assert doc["events_total"] == 4
    assert {name: p["lag"] for name, p in doc["projections"].items()} == dict.fromkeys(PROJECTIONS, 4)
    assert (doc["fetch_queue"]["pending"], doc["fetch_queue"]["dead"]) == (2, 2)
    assert doc["last_reconcile"]["ok"] is False
    assert doc["unrecognized_webhooks"] == 1

    screen = status_text.render_text(report, verdict, reasons)
    for expected in ("DEGRADED", "901", "403 not your order", "KeyError: items", "FAILED", "running"):
        assert expected in screen


async def test_fields_read_as_absent_are_counted_and_shown_but_not_judged(pool: asyncpg.Pool) -> None:
    body = observed_body(77, [(1, "IN_TRANSIT", at(10))])
    body["data"]["order"]["totalPrice"] = 2**70  # an order field: bunsync.order_anomalies
    body["data"]["delivery"]["shipDoneAt"] = "9999-12-31T23:30:00-01:00"
    body["data"]["order"]["orderItems"][0]["product"]["price"] = 2**70  # an item field: item_anomalies
    await append(pool, observed(77, [], body=body))
    await project_all(pool)

    report = await status.collect(pool)

    assert (report.anomalies.item_anomalies, report.anomalies.order_anomalies) == (1, 2)
    assert [(a.order_id, a.field) for a in report.anomalies.newest_order_anomalies] == [
        (77, "delivery.shipDoneAt"),
        (77, "order.totalPrice"),
    ]
    verdict, reasons = status.assess(report, max_lag=0)
    assert (verdict, reasons, report.parked_events.total) == (Verdict.HEALTHY, [], 0)
    doc = msgspec.json.decode(status.encode_json(report, verdict, reasons))
    assert (doc["anomalies"]["item_anomalies"], doc["anomalies"]["order_anomalies"]) == (1, 2)
    screen = status_text.render_text(report, verdict, reasons)
    assert "2 order fields read as absent (bunsync.order_anomalies)" in screen
    assert "1 item fields read as absent (bunsync.item_anomalies)" in screen
    assert "order.totalPrice" in screen and "product.price" in screen
    assert max(len(line) for line in screen.splitlines()) <= 100


async def test_projected_log_has_no_lag_and_checkpoints_at_the_head(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await _append(pool, *(_event(f"k{i}") for i in range(5)))
    async with pool.acquire() as conn:
        for projection in engine.PROJECTIONS.values():
            await engine.process_batch(conn, projection)
    head = await admin.fetchval("SELECT max(position) FROM bunsync.event_log")

    report = await status.collect(pool)

    assert report.events_total == 5 and report.max_projection_lag == 0
    assert {(p.lag, p.position, p.events_read) for p in report.projections.values()} == {(0, head, 5)}
    assert status.assess(report, max_lag=0) == (Verdict.HEALTHY, [])


async def test_dead_fetches_are_capped_but_counted(pool: asyncpg.Pool, admin: asyncpg.Connection) -> None:
    for i in range(status.DEAD_FETCHES_SHOWN + 5):
        await _dead(admin, 1000 + i, f"404 #{i}", dead_at=T0 + timedelta(minutes=i))

    report = await status.collect(pool)

    assert report.fetch_queue.dead == status.DEAD_FETCHES_SHOWN + 5
    assert len(report.fetch_queue.dead_fetches) == status.DEAD_FETCHES_SHOWN
    assert report.fetch_queue.dead_fetches[0].order_id == 1000 + status.DEAD_FETCHES_SHOWN + 4  # newest first
    assert f"{status.DEAD_FETCHES_SHOWN + 5} (newest {status.DEAD_FETCHES_SHOWN})" in status_text.render_text(
        report, *status.assess(report)
    )


async def test_a_redriven_fetch_and_a_successful_reconcile_make_it_healthy_again(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await _dead(admin, 7, "403")
    await _reconcile_pass(admin, T0, False, "boom")
    assert status.assess(await status.collect(pool))[0] is Verdict.DEGRADED

    await admin.execute("UPDATE bunsync.fetch_queue SET dead_at = NULL, dead_reason = NULL")
    await _reconcile_pass(admin, T0 + timedelta(minutes=5), True)

    assert status.assess(await status.collect(pool)) == (Verdict.HEALTHY, [])


async def test_the_service_role_can_read_everything_status_needs(pool: asyncpg.Pool) -> None:
    # Every other test reads through this pool too; a missing grant raises InsufficientPrivilegeError.
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == roles.APP_ROLE
    assert (await status.collect(pool)).events_total == 0


async def test_an_unreachable_database_raises_storage_unavailable(service_url: str) -> None:
    p = await db.create_pool(service_url, min_size=1, max_size=1)
    await p.close()
    with pytest.raises(db.StorageUnavailable):
        await status.collect(p)
    assert status.exit_code(None) == status.EXIT_UNREACHABLE == 2
