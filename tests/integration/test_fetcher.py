"""Fetch workers against the sandbox over real HTTP and a real PostgreSQL: success, retries, dead, crash."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from app import fetcher
from app.bunjang.client import BunjangClient
from app.fetcher import Backoff, Fetcher
from app.sandbox.server import RunningSandbox
from app.store import event_log
from app.store.event_log import NewEvent


def _fetcher(pool: asyncpg.Pool, client: BunjangClient, **kw: object) -> Fetcher:
    options: dict[str, object] = {
        "concurrency": 1,
        "max_attempts": 3,
        "worker_id": "test",
        "backoff": Backoff(base_s=0.0),
        "rng": random.Random(1),
        **kw,
    }
    return Fetcher(pool, client, **options)  # type: ignore[arg-type]


async def _enqueue(pool: asyncpg.Pool, *order_ids: int) -> None:
    async with pool.acquire() as conn:
        await event_log.append(
            conn,
            [
                NewEvent(
                    stream=f"order-{o}",
                    type="test.webhook",
                    source="webhook",
                    idempotency_key=f"test:{o}:{random.random()}",
                    payload_json="{}",
                    fetch_order_id=o,
                )
                for o in order_ids
            ],
        )


async def _observed(admin: asyncpg.Connection, order_id: int) -> int:
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM bunsync.event_log WHERE type = 'order.observed' AND stream = $1",
            f"order-{order_id}",
        )
    )


async def _job(admin: asyncpg.Connection, order_id: int) -> asyncpg.Record | None:
    return await admin.fetchrow("SELECT * FROM bunsync.fetch_queue WHERE order_id = $1", order_id)


def _order(sandbox: RunningSandbox) -> int:
    return sandbox.sandbox.create_orders(1)[0].order_id


async def test_fetch_appends_the_order_as_returned_and_removes_the_job(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    order_id = _order(sandbox)
    await _enqueue(pool, order_id)
    f = _fetcher(pool, client)
    job = await f.claim()
    assert job is not None and job.order_id == order_id
    await f.process(job)
    assert await _observed(admin, order_id) == 1
    assert await _job(admin, order_id) is None
    payload = await admin.fetchval(
        "SELECT payload FROM bunsync.event_log WHERE type = 'order.observed' AND stream = $1",
        f"order-{order_id}",
    )
    assert f'"id":{order_id}' in payload.replace(" ", "")
    assert await f.claim() is None


async def test_5xx_then_success(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    order_id = _order(sandbox)
    sandbox.sandbox.faults.update({"apiScript": ["500", "503", "ok"]})
    await _enqueue(pool, order_id)
    f = _fetcher(pool, client, max_attempts=5)
    for expected_attempt in (1, 2):
        job = await f.claim()
        assert job is not None and job.attempts == expected_attempt
        await f.process(job)
        row = await _job(admin, order_id)
        assert row is not None and row["dead_at"] is None and "ServerError" in row["last_error"]
    job = await f.claim()
    assert job is not None
    await f.process(job)
    assert await _observed(admin, order_id) == 1
    assert await _job(admin, order_id) is None


async def test_backoff_is_persisted_and_grows() -> None:
    b = Backoff(base_s=5, cap_s=3600, jitter=0.0)
    assert [b.delay(n, random.Random(0)) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert b.delay(30, random.Random(0)) == 3600
    jittered = Backoff(base_s=10, jitter=0.2)
    assert all(8 <= jittered.delay(1, random.Random(s)) <= 12 for s in range(50))


async def test_gives_up_after_max_attempts_then_redrive(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    order_id = _order(sandbox)
    sandbox.sandbox.faults.update({"getOrderErrorRate": 1.0})
    await _enqueue(pool, order_id)
    f = _fetcher(pool, client, max_attempts=3)
    for _ in range(3):
        job = await f.claim()
        assert job is not None
        await f.process(job)
    row = await _job(admin, order_id)
    assert row is not None and row["dead_at"] is not None
    assert row["dead_reason"].startswith("gave up after 3 attempts")
    assert await f.claim() is None  # dead jobs are not retried in a loop
    sandbox.sandbox.faults.update({"getOrderErrorRate": 0.0})
    assert await fetcher.redrive(pool, None) == [order_id]
    job = await f.claim()
    assert job is not None and job.attempts == 1
    await f.process(job)
    assert await _observed(admin, order_id) == 1


async def test_404_parks_dead_at_once_with_the_reason_and_redrive_by_order(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    lost, fine = _order(sandbox), _order(sandbox)
    sandbox.sandbox.faults.update({"notFoundOrders": [lost]})
    await _enqueue(pool, lost, fine)
    f = _fetcher(pool, client, max_attempts=10)
    for _ in range(2):
        job = await f.claim()
        assert job is not None
        await f.process(job)
    row = await _job(admin, lost)
    assert row is not None and row["attempts"] == 1 and "NotFound" in row["dead_reason"]
    assert await fetcher.queue_counts(pool) == (0, 1)
    assert await fetcher.redrive(pool, [fine]) == []  # only dead ones, only those asked for
    sandbox.sandbox.faults.update({"notFoundOrders": []})
    assert await fetcher.redrive(pool, [lost]) == [lost]
    job = await f.claim()
    assert job is not None
    await f.process(job)
    assert await _observed(admin, lost) == 1


async def test_a_crash_between_claim_and_commit_loses_nothing(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    order_id = _order(sandbox)
    await _enqueue(pool, order_id)
    crashed = _fetcher(pool, client, lease_s=0.3, worker_id="crashed")
    assert await crashed.claim() is not None  # ... and then the process dies: nothing is committed
    survivor = _fetcher(pool, client, worker_id="survivor")
    assert await survivor.claim() is None  # the lease still holds
    await asyncio.sleep(0.4)
    job = await survivor.claim()
    assert job is not None and job.attempts == 2
    await survivor.process(job)
    assert await _observed(admin, order_id) == 1
    assert await _job(admin, order_id) is None


async def test_a_webhook_during_the_fetch_keeps_the_job_due(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    order_id = _order(sandbox)
    await _enqueue(pool, order_id)
    f = _fetcher(pool, client)
    job = await f.claim()
    assert job is not None
    await _enqueue(pool, order_id)  # a newer change arrives while the fetch is in flight
    await f.process(job)
    row = await _job(admin, order_id)
    assert row is not None and row["claimed_until"] is None and row["attempts"] == 0
    again = await f.claim()
    assert again is not None
    await f.process(again)
    assert await _observed(admin, order_id) == 2
    assert await _job(admin, order_id) is None


async def test_a_new_change_requeues_a_dead_job_afresh_and_leaves_a_backoff_alone(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    """bunsync.enqueue_fetches' rules (migrations 0004, 0016), through the webhook append: a change to an
    order whose fetch died is fetched again from scratch (else that change would never be fetched); a
    job waiting out an API failure keeps its backoff; a job not tried yet is due now; every change bumps
    the generation; repeated and NULL order ids make one job each, none."""
    await admin.execute(
        """
        INSERT INTO bunsync.fetch_queue
            (order_id, attempts, next_attempt_at, last_error, dead_at, dead_reason)
        VALUES (1, 12, now() + interval '1 hour', 'gave up', now(), 'gave up after 12 attempts'),
               (2, 3, now() + interval '1 hour', 'ServerError', NULL, NULL),
               (3, 0, now() + interval '1 hour', NULL, NULL, NULL)
        """
    )
    await _enqueue(pool, 1, 2, 3, 4, 4)
    async with pool.acquire() as conn:
        await fetcher.enqueue(conn, [4, None])  # type: ignore[list-item]  # what an event without an order sends
    rows = {
        r["order_id"]: r
        for r in await admin.fetch(
            "SELECT order_id, generation, attempts, dead_at, dead_reason, next_attempt_at <= now() AS due,"
            " last_error FROM bunsync.fetch_queue"
        )
    }
    assert sorted(rows) == [1, 2, 3, 4]
    assert (rows[1]["attempts"], rows[1]["dead_at"], rows[1]["dead_reason"], rows[1]["due"]) == (
        0,
        None,
        None,
        True,
    )
    assert (rows[2]["attempts"], rows[2]["due"], rows[2]["last_error"]) == (3, False, "ServerError")
    assert (rows[3]["attempts"], rows[3]["due"]) == (0, True)
    assert (rows[4]["attempts"], rows[4]["due"]) == (0, True)
    # A job starts at generation 1: orders 1-3 were changed once since, order 4 twice (the webhook
    # append, then the reconciler's enqueue).
    assert [rows[o]["generation"] for o in (1, 2, 3, 4)] == [2, 2, 2, 2]


async def test_workers_in_two_processes_fetch_each_order_once(
    service_url: str, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    from app.store import db

    orders = [c.order_id for c in sandbox.sandbox.create_orders(40)]
    pools = [await db.create_pool(service_url, max_size=6) for _ in range(2)]
    try:
        await _enqueue(pools[0], *orders)
        stop = asyncio.Event()
        workers = [
            Fetcher(p, client, concurrency=4, max_attempts=3, worker_id=f"w{i}", idle_poll_s=0.05)
            for i, p in enumerate(pools)
        ]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        deadline = asyncio.get_running_loop().time() + 30
        while await fetcher.queue_counts(pools[0]) != (0, 0):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for p in pools:
            await p.close()
    counts = await admin.fetch(
        "SELECT stream, count(*) AS n FROM bunsync.event_log WHERE type = 'order.observed' GROUP BY stream"
    )
    assert sorted(r["stream"] for r in counts) == sorted(f"order-{o}" for o in orders)
    assert {r["n"] for r in counts} == {1}
    assert sandbox.sandbox.counters_snapshot().api["get_order"] == {"200": 40}
