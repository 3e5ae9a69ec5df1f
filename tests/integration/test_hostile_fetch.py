"""Fetch workers and the reconciler against a hostile sandbox: every bad answer becomes a stored, escaped
event or a dead letter with its reason; the workers and the pass survive; times never overflow."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec

from app import fetcher, reconciler
from app.bunjang.client import BunjangClient
from app.fetcher import Backoff, Fetcher
from app.sandbox.server import RunningSandbox
from app.store.event_log import NewEvent
from tests.fixtures.events import eventually, project_all


def _fetcher(pool: asyncpg.Pool, client: BunjangClient) -> Fetcher:
    return Fetcher(
        pool,
        client,
        concurrency=2,
        max_attempts=3,
        worker_id="test",
        backoff=Backoff(base_s=0.0),
        rng=random.Random(1),
        idle_poll_s=0.05,
    )


async def _enqueue(pool: asyncpg.Pool, *order_ids: int) -> None:
    async with pool.acquire() as conn:
        await fetcher.enqueue(conn, list(order_ids))


def _orders(sandbox: RunningSandbox, n: int) -> list[int]:
    return [c.order_id for c in sandbox.sandbox.create_orders(n)]


def _hostile(sandbox: RunningSandbox, **faults: Any) -> None:
    sandbox.sandbox.faults.update(faults)


async def _until_settled(admin: asyncpg.Connection) -> None:
    """Until every job is done or dead (none pending without an error)."""

    async def settled() -> bool:
        return not await admin.fetchval(
            "SELECT count(*) FROM bunsync.fetch_queue WHERE dead_at IS NULL AND last_error IS NULL"
        )

    await eventually(settled, 15.0)


async def test_hostile_get_order_answers_are_stored_escaped_or_dead_lettered(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    nul, wrong, bad, good = _orders(sandbox, 4)
    _hostile(sandbox, nulOrders=[nul], wrongIdOrders=[wrong], badFieldOrders=[bad])
    await _enqueue(pool, nul, wrong, bad, good)
    stop = asyncio.Event()
    workers = asyncio.create_task(_fetcher(pool, client).run(stop))
    try:
        await _until_settled(admin)
        assert not workers.done()  # the workers survived every answer
    finally:
        stop.set()
        await workers
    stored = {
        r["stream"]: r["p"]
        for r in await admin.fetch(
            "SELECT stream, payload::text AS p FROM bunsync.event_log WHERE type = 'order.observed'"
        )
    }
    assert set(stored) == {f"order-{nul}", f"order-{bad}", f"order-{good}"}
    assert "\\\\u0000" in stored[f"order-{nul}"]
    dead = await admin.fetchrow("SELECT dead_reason FROM bunsync.fetch_queue WHERE order_id = $1", wrong)
    assert dead is not None and "WrongOrder" in dead["dead_reason"]
    # The bad price does not hide the item's status: the view has it, the price is an anomaly.
    await project_all(pool)
    row = await admin.fetchrow("SELECT status, price FROM bunsync.order_item_status WHERE order_id = $1", bad)
    assert row is not None and row["status"] and row["price"] is None
    assert await admin.fetchval(
        "SELECT count(*) FROM bunsync.item_anomalies WHERE order_id = $1 AND field = 'product.price'", bad
    )


async def test_an_answer_the_database_refuses_is_a_dead_letter_not_a_dead_worker(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    refused, good = _orders(sandbox, 2)
    real_event = fetcher.observed_event

    def unstorable(order_id: int, payload_json: str) -> NewEvent:
        event = real_event(order_id, payload_json)
        if order_id != refused:
            return event
        # A number jsonb cannot hold (numeric allows at most 131072 digits before the point).
        return msgspec.structs.replace(event, payload_json='{"data": {"n": 1' + "0" * 140_000 + "}}")

    fetcher.observed_event = unstorable  # type: ignore[assignment]
    try:
        await _enqueue(pool, refused, good)
        stop = asyncio.Event()
        workers = asyncio.create_task(_fetcher(pool, client).run(stop))
        try:
            await _until_settled(admin)
            assert not workers.done()
        finally:
            stop.set()
            await workers
    finally:
        fetcher.observed_event = real_event  # type: ignore[assignment]
    dead = await admin.fetchrow("SELECT dead_reason FROM bunsync.fetch_queue WHERE order_id = $1", refused)
    assert dead is not None and "cannot be stored" in dead["dead_reason"]
    assert "SQLSTATE" in dead["dead_reason"] and "000000" not in dead["dead_reason"]
    assert (
        await admin.fetchval("SELECT count(*) FROM bunsync.event_log WHERE stream = $1", f"order-{good}") == 1
    )


async def test_out_of_range_times_never_stop_a_reconcile_pass_or_the_projection(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    out, future, good = _orders(sandbox, 3)
    _hostile(sandbox, outOfRangeOrders=[out], farFutureOrders=[future])
    now = sandbox.sandbox.clock.now() + timedelta(seconds=1)
    for _ in range(2):  # the second pass reads a view the first one filled
        result = await reconciler.run_pass(
            pool,
            client,
            now=now,
            overlap=timedelta(0),
            lookback=timedelta(days=1),
            since=now - timedelta(days=1),
        )
        assert result.orders_seen == 3
        await project_all(pool)
    rows = {
        r["order_id"]: r["status_updated_at"]
        for r in await admin.fetch("SELECT order_id, status_updated_at FROM bunsync.order_item_status")
    }
    assert rows[out] is None and rows[future] is None and rows[good] is not None
    assert await admin.fetchval("SELECT count(*) FROM bunsync.parked_events") == 0
    assert await admin.fetchval("SELECT count(*) FROM bunsync.item_anomalies") >= 2
