"""The projector engine: parking poison events, one active projector, wake-ups, lag, supervision."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from app.store import db
from app.store.db import Connection
from app.store.event_log import RecordedEvent
from projections import engine
from projections.engine import PROJECTIONS, lag, retry_parked, run_projectors
from projections.order_item_status import OrderItemStatus
from tests.fixtures.events import append, at, eventually, observed, project_all, projectors, webhook

LOCK_HOLDERS = """
    SELECT l.pid FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = (hashtext('bunsync.projector')::bigint & 4294967295)::oid
      AND l.objid = (hashtext($1)::bigint & 4294967295)::oid
"""


async def _status(admin: asyncpg.Connection, item: int) -> str | None:
    return await admin.fetchval(
        "SELECT status FROM reporting.order_item_status WHERE order_item_id = $1", item
    )


async def test_poison_event_is_parked_counted_and_the_projection_goes_on(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    bad = observed(7, [], body={"data": {"order": {"id": 7, "orderItems": [{"id": "not a number"}]}}})
    await append(pool, webhook(6, [(60, "PAYMENT_RECEIVED")], at(1)), bad)
    await append(pool, observed(8, [(80, "SHIP_READY", at(3))]))
    await project_all(pool)
    assert await _status(admin, 60) == "PAYMENT_RECEIVED"
    assert await _status(admin, 80) == "SHIP_READY"
    parked = await admin.fetch("SELECT projection, error FROM bunsync.parked_events ORDER BY projection")
    # Only the projections that read items park it: the orders projection reads no item, and has the
    # order's row (its order id is fine).
    assert [r["projection"] for r in parked] == ["item_changes", "order_item_history", "order_item_status"]
    assert all("ValidationError" in r["error"] for r in parked)
    assert await admin.fetchval("SELECT count(*) FROM bunsync.orders WHERE order_id = 7") == 1
    health = await admin.fetchrow(
        "SELECT parked_events, max_projection_lag, events_total FROM reporting.sync_health"
    )
    assert tuple(health) == (3, 0, 3)
    # Retrying without a fix parks it again (counted), never loops.
    assert await retry_parked(await _dsn(admin), "order_item_status") == 1
    assert (
        await admin.fetchval(
            "SELECT attempts FROM bunsync.parked_events WHERE projection = 'order_item_status'"
        )
        == 2
    )


async def _dsn(admin: asyncpg.Connection) -> str:
    params = admin._params  # the test's own database: same server, same user
    addr = admin._addr
    return f"postgresql://{params.user}@{addr[0]}:{addr[1]}/{params.database}"


async def test_handler_bug_is_parked_then_retried_after_the_fix(
    pool: asyncpg.Pool, admin: asyncpg.Connection, service_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = PROJECTIONS["order_item_status"]
    real_write = OrderItemStatus.write

    async def buggy_write(
        self: OrderItemStatus, conn: Connection, batch: list[tuple[RecordedEvent, Any]]
    ) -> None:
        # A database-level failure for one item only, inside a batch of several.
        if any(o.order_item_id == 2 for _, obs in batch for o in obs):
            raise asyncpg.CheckViolationError("simulated bug")
        await real_write(self, conn, batch)

    monkeypatch.setattr(OrderItemStatus, "write", buggy_write)
    await append(
        pool,
        webhook(1, [(1, "PAYMENT_RECEIVED")], at(1)),
        webhook(2, [(2, "PAYMENT_RECEIVED")], at(1)),
        webhook(3, [(3, "PAYMENT_RECEIVED")], at(1)),
    )
    await project_all(pool)
    assert [await _status(admin, i) for i in (1, 2, 3)] == ["PAYMENT_RECEIVED", None, "PAYMENT_RECEIVED"]
    assert await admin.fetchval("SELECT parked_events FROM reporting.sync_health") == 1
    monkeypatch.setattr(OrderItemStatus, "write", real_write)  # the fix
    assert status.name == "order_item_status"
    assert await retry_parked(service_url, None) == 1
    assert await _status(admin, 2) == "PAYMENT_RECEIVED"
    assert await admin.fetchval("SELECT parked_events FROM reporting.sync_health") == 0
    assert await admin.fetchval("SELECT resolved_at IS NOT NULL FROM bunsync.parked_events") is True


async def test_an_active_projector_retries_requested_parked_events_within_a_poll_interval(
    pool: asyncpg.Pool, admin: asyncpg.Connection, service_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = OrderItemStatus.write

    async def buggy_write(
        self: OrderItemStatus, conn: Connection, batch: list[tuple[RecordedEvent, Any]]
    ) -> None:
        raise asyncpg.CheckViolationError("simulated bug")

    monkeypatch.setattr(OrderItemStatus, "write", buggy_write)
    async with projectors(pool, service_url, poll_s=0.2):
        await append(pool, webhook(1, [(1, "PAYMENT_RECEIVED")], at(1)))

        async def parked() -> bool:
            return await admin.fetchval("SELECT parked_events FROM reporting.sync_health") == 1

        await eventually(parked)
        monkeypatch.setattr(OrderItemStatus, "write", real_write)  # the fix
        # The projector holds the lock: the request is left to it (its next check, within poll_s).
        assert await retry_parked(service_url, "order_item_status") == 1

        async def applied() -> bool:
            return await _status(admin, 1) == "PAYMENT_RECEIVED"

        await eventually(applied, deadline_s=5)
    assert await admin.fetchval("SELECT resolved_at IS NOT NULL FROM bunsync.parked_events") is True


async def test_a_batch_the_database_refuses_is_redone_and_only_the_culprit_parked(
    pool: asyncpg.Pool, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch is first written without savepoints; a statement the database refuses aborts its whole
    # transaction, after the other items were already written in it. Nothing may be lost or doubled.
    real_write = OrderItemStatus.write

    async def refused_write(
        self: OrderItemStatus, conn: Connection, batch: list[tuple[RecordedEvent, Any]]
    ) -> None:
        await real_write(self, conn, batch)
        if any(o.order_item_id == 2 for _, obs in batch for o in obs):
            await conn.execute("SELECT 1 / 0")  # the database refuses: the transaction is aborted

    monkeypatch.setattr(OrderItemStatus, "write", refused_write)
    await append(pool, *(webhook(i, [(i, "PAYMENT_RECEIVED")], at(i)) for i in (1, 2, 3)))
    await project_all(pool)
    assert [await _status(admin, i) for i in (1, 2, 3)] == ["PAYMENT_RECEIVED", None, "PAYMENT_RECEIVED"]
    parked = await admin.fetch("SELECT projection, error FROM bunsync.parked_events")
    assert [r["projection"] for r in parked] == ["order_item_status"]
    assert "DivisionByZeroError" in parked[0]["error"]
    assert await lag(admin) == {name: 0 for name in PROJECTIONS}
    checkpoint = await admin.fetchval(
        "SELECT events_read FROM bunsync.projection_checkpoints WHERE projection = 'order_item_status'"
    )
    assert checkpoint == 3  # each event read once, not once per attempt


async def test_lag_counts_events_behind_each_projection(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await append(pool, *(webhook(i, [(i, "PAYMENT_RECEIVED")], at(i)) for i in range(1, 6)))
    assert await lag(admin) == {name: 5 for name in PROJECTIONS}
    assert await admin.fetchval("SELECT max_projection_lag FROM reporting.sync_health") == 5
    await project_all(pool)
    assert await lag(admin) == {name: 0 for name in PROJECTIONS}
    assert await admin.fetchval("SELECT events_total FROM reporting.sync_health") == 5


async def test_notify_wakes_an_idle_projector(
    pool: asyncpg.Pool, admin: asyncpg.Connection, service_url: str
) -> None:
    # Polling every 60 s: only the notification can make this fast.
    async with projectors(pool, service_url, poll_s=60):
        await eventually(lambda: _all_locked(admin))
        await append(pool, webhook(1, [(1, "SHIP_READY")], at(1)))
        await eventually(lambda: _has_status(admin, 1, "SHIP_READY"), deadline_s=5)


async def test_polling_catches_an_event_whose_notification_was_lost(
    pool: asyncpg.Pool, admin: asyncpg.Connection, service_url: str
) -> None:
    async with projectors(pool, service_url, poll_s=0.2):
        await eventually(lambda: _all_locked(admin))
        # As the replica role, the (non-ALWAYS) NOTIFY trigger does not fire: the notification is lost.
        await admin.execute("SET session_replication_role = replica")
        async with admin.transaction():
            await admin.execute("LISTEN bunsync_events")
            from app.store import event_log

            await event_log.append(admin, [webhook(1, [(1, "SHIP_READY")], at(1))])
        await eventually(lambda: _has_status(admin, 1, "SHIP_READY"), deadline_s=5)


async def _all_locked(admin: asyncpg.Connection) -> bool:
    for name in PROJECTIONS:
        if len(await admin.fetch(LOCK_HOLDERS, name)) != 1:
            return False
    return True


async def _has_status(admin: asyncpg.Connection, item: int, status: str) -> bool:
    return await _status(admin, item) == status


async def test_one_active_projector_per_projection_and_takeover(
    admin: asyncpg.Connection, service_url: str
) -> None:
    pool_a = await db.create_pool(service_url, max_size=4)
    pool_b = await db.create_pool(service_url, max_size=4)
    try:
        async with projectors(pool_a, service_url), projectors(pool_b, service_url):
            await eventually(lambda: _all_locked(admin))
            for name in PROJECTIONS:
                assert len(await admin.fetch(LOCK_HOLDERS, name)) == 1, name
            events = [webhook(i, [(i, "PAYMENT_RECEIVED")], at(i)) for i in range(1, 41)]
            for i in range(0, 40, 4):
                await append(pool_a, *events[i : i + 4])
            await eventually(lambda: _count_is(admin, 40))
            # Kill the connection holding order_item_status's lock: the other instance takes over.
            holder = await admin.fetchval(LOCK_HOLDERS, "order_item_status")
            await admin.execute("SELECT pg_terminate_backend($1)", holder)

            async def taken_over() -> bool:
                pids = await admin.fetch(LOCK_HOLDERS, "order_item_status")
                return len(pids) == 1 and pids[0]["pid"] != holder

            await eventually(taken_over)
            await append(pool_b, webhook(99, [(99, "SHIP_READY")], at(99)))
            await eventually(lambda: _has_status(admin, 99, "SHIP_READY"))

            async def caught_up() -> bool:
                return await admin.fetchval("SELECT max_projection_lag FROM reporting.sync_health") == 0

            await eventually(caught_up)
        history = await admin.fetchval("SELECT count(*) FROM bunsync.order_item_history")
        assert history == 41  # each change once, although two instances ran
    finally:
        await pool_a.close()
        await pool_b.close()


async def _count_is(admin: asyncpg.Connection, n: int) -> bool:
    return await admin.fetchval("SELECT count(*) FROM reporting.order_item_status") == n


async def test_a_dead_projection_loop_stops_run_projectors(
    pool: asyncpg.Pool, service_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object, **__: object) -> int:
        raise RuntimeError("a bug in the loop")

    monkeypatch.setattr(engine, "catch_up", broken)
    with pytest.raises(engine.ProjectorDied, match="a bug in the loop"):
        await asyncio.wait_for(run_projectors(pool, service_url, asyncio.Event(), poll_interval_s=0.1), 10)
