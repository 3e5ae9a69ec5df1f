"""Reconcile passes against the sandbox over real HTTP and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import pytest

from app import reconciler
from app.bunjang.client import BunjangClient
from app.sandbox.server import RunningSandbox
from app.scheduler import Jobs
from app.settings import Settings
from app.store import db

OVERLAP, LOOKBACK = timedelta(minutes=10), timedelta(days=3)


def _now(sandbox: RunningSandbox) -> datetime:
    return sandbox.sandbox.clock.now() + timedelta(seconds=1)


async def test_a_pass_records_what_the_view_lacks_once_and_enqueues_fetches(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    orders = {c.order_id for c in sandbox.sandbox.create_orders(12)}
    first = await reconciler.run_pass(pool, client, now=_now(sandbox), overlap=OVERLAP, lookback=LOOKBACK)
    assert (first.orders_seen, first.differences, first.watermark_moved) == (12, 12, True)
    listed = await admin.fetch("SELECT stream FROM bunsync.event_log WHERE type = 'order.listed'")
    assert {r["stream"] for r in listed} == {f"order-{o}" for o in orders}
    fetches = await admin.fetch("SELECT order_id FROM bunsync.fetch_queue")
    assert {r["order_id"] for r in fetches} == orders
    # The same observations again (the view has not caught up): no new event, nothing doubled.
    await reconciler.run_pass(pool, client, now=_now(sandbox), overlap=OVERLAP, lookback=LOOKBACK)
    assert await admin.fetchval("SELECT count(*) FROM bunsync.event_log WHERE type = 'order.listed'") == 12
    passes = await admin.fetch(
        "SELECT ok, orders_seen, range_start FROM bunsync.reconcile_passes ORDER BY id"
    )
    assert [p["ok"] for p in passes] == [True, True]
    # The second pass started at the watermark minus the overlap.
    watermark = await admin.fetchval("SELECT watermark FROM bunsync.reconcile_state")
    assert passes[1]["range_start"] == watermark - OVERLAP or passes[1]["range_start"] < watermark


async def test_a_pass_that_fails_midway_does_not_move_the_watermark(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    sandbox.sandbox.create_orders(150)  # two pages of List Orders
    sandbox.sandbox.faults.update({"apiScript": ["ok", "500"]})
    with pytest.raises(Exception, match=r"ServerError|500"):
        await reconciler.run_pass(pool, client, now=_now(sandbox), overlap=OVERLAP, lookback=LOOKBACK)
    assert await admin.fetchval("SELECT watermark FROM bunsync.reconcile_state") is None
    failed = await admin.fetchrow("SELECT ok, error, orders_seen, pages FROM bunsync.reconcile_passes")
    assert failed["ok"] is False and "ServerError" in failed["error"] and failed["orders_seen"] == 100
    assert failed["pages"] == 1  # the page read before the failure, recorded with the failed pass
    # The next pass covers the same range again and succeeds.
    ok = await reconciler.run_pass(pool, client, now=_now(sandbox), overlap=OVERLAP, lookback=LOOKBACK)
    assert (ok.orders_seen, ok.watermark_moved) == (150, True)
    pages = await admin.fetchval("SELECT pages FROM bunsync.reconcile_passes WHERE ok")
    assert pages == 2  # 150 orders, 100 a page, in one 15-day window
    assert await admin.fetchval("SELECT watermark FROM bunsync.reconcile_state") == ok.end


async def test_two_replicas_never_reconcile_at_once(
    service_url: str, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    sandbox.sandbox.create_orders(3)
    sandbox.sandbox.faults.update({"apiLatencyS": 0.5})
    settings = Settings.from_env({}, is_tty=False)
    pools = [await db.create_pool(service_url, max_size=3) for _ in range(2)]
    try:
        replicas = [Jobs(p, service_url, client, settings, None) for p in pools]
        ran = await asyncio.gather(*(r.reconcile() for r in replicas))
        assert sorted(ran) == [False, True]
        assert await admin.fetchval("SELECT count(*) FROM bunsync.reconcile_passes") == 1
        # Once the holder is done (or dead: the lock goes with its connection), another replica runs.
        assert await replicas[ran.index(False)].reconcile() is True
    finally:
        for p in pools:
            await p.close()
    assert await admin.fetchval("SELECT count(*) FROM bunsync.reconcile_passes WHERE ok") == 2
