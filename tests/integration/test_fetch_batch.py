"""Fetch workers claiming and storing in groups: one query claims several due jobs, one call stores
several answers; a crash after a group claim loses nothing, one unstorable answer in a group fails
only itself (its job a dead letter with the reason) while the others are logged and completed, a
store left to the background that finds the database away loses nothing, and a webhook's fetch wakes
idle workers at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from app import fetcher
from app.bunjang.client import BunjangClient
from app.fetcher import Answer, Fetcher, Job
from app.privacy import personal_data
from app.sandbox.server import RunningSandbox
from app.store.db import StorageUnavailable
from app.store.event_log import NewEvent
from app.webhook import payloads
from app.webhook.ingest import Ingestor, Outcome
from tests.fixtures.events import eventually
from tests.integration.test_fetcher import _fetcher as single_worker_fetcher

#: A number jsonb cannot hold (numeric allows at most 131072 digits before the point).
_UNSTORABLE = '{"data": {"n": 1' + "0" * 140_000 + "}}"


def _fetcher(pool: asyncpg.Pool, client: BunjangClient, **kw: object) -> Fetcher:
    """test_fetcher's fetcher, with four workers (they share claims and stores)."""
    return single_worker_fetcher(pool, client, **{"concurrency": 4, **kw})


async def _enqueued(pool: asyncpg.Pool, sandbox: RunningSandbox, n: int) -> list[int]:
    orders = [c.order_id for c in sandbox.sandbox.create_orders(n)]
    async with pool.acquire() as conn:
        await fetcher.enqueue(conn, orders)
    return orders


async def _observed(admin: asyncpg.Connection) -> dict[str, int]:
    rows = await admin.fetch(
        "SELECT stream, count(*) AS n FROM bunsync.event_log WHERE type = 'order.observed' GROUP BY stream"
    )
    return {r["stream"]: r["n"] for r in rows}


async def _answer(client: BunjangClient, job: Job) -> Answer:
    cut = personal_data.split((await client.get_order(job.order_id)).raw)
    return Answer(job, fetcher.observed_event(job.order_id, cut.facts_json), cut.personal_json)


async def _claimed_answers(
    pool: asyncpg.Pool, sandbox: RunningSandbox, client: BunjangClient, f: Fetcher, n: int
) -> tuple[list[int], list[Job], list[Answer]]:
    """``n`` new orders enqueued, claimed by ``f`` in one group (by order id) and fetched, not stored."""
    orders = await _enqueued(pool, sandbox, n)
    jobs = sorted(await f.claim_many(n), key=lambda j: j.order_id)
    return orders, jobs, [await _answer(client, j) for j in jobs]


async def test_one_claim_takes_several_due_jobs_and_a_crash_after_it_loses_nothing(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    orders = await _enqueued(pool, sandbox, 3)
    crashed = _fetcher(pool, client, lease_s=0.3, worker_id="crashed")
    claimed = await crashed.claim_many(5)  # ... and then the process dies: nothing is stored
    assert sorted(j.order_id for j in claimed) == sorted(orders)
    survivor = _fetcher(pool, client, worker_id="survivor")
    assert await survivor.claim_many(5) == []  # the leases still hold
    again: list[Job] = []

    async def leases_expired() -> bool:
        again.extend(await survivor.claim_many(5))
        return len(again) == 3

    await eventually(leases_expired, 5.0)
    assert {j.attempts for j in again} == {2}
    await asyncio.gather(*(survivor.process(j) for j in again))
    assert await _observed(admin) == {f"order-{o}": 1 for o in orders}
    assert await admin.fetchval("SELECT count(*) FROM bunsync.fetch_queue") == 0


async def test_an_unstorable_answer_in_a_group_fails_only_itself(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    f = _fetcher(pool, client)
    orders, jobs, answers = await _claimed_answers(pool, sandbox, client, f, 3)
    assert [j.order_id for j in jobs] == sorted(orders)
    bad = answers[1]
    answers[1] = Answer(
        bad.job, msgspec.structs.replace(bad.event, payload_json=_UNSTORABLE), bad.personal_json
    )
    refused = await f.store_answers(answers)
    assert refused[0] is None and refused[2] is None
    assert refused[1] is not None and "SQLSTATE" in refused[1] and "000000" not in refused[1]
    good = [jobs[0].order_id, jobs[2].order_id]
    assert await _observed(admin) == {f"order-{o}": 1 for o in good}
    # The stored answers' jobs are complete and their buyers' personal data kept; the refused one's
    # job is untouched (still claimed) until its worker parks it, and nothing of it was kept.
    left = await admin.fetch("SELECT order_id FROM bunsync.fetch_queue")
    assert [r["order_id"] for r in left] == [bad.job.order_id]
    kept = await admin.fetch("SELECT order_id FROM bunsync.personal_data ORDER BY order_id")
    assert [r["order_id"] for r in kept] == sorted(good)


async def test_in_a_group_a_job_changed_during_its_fetch_stays_due_and_the_others_complete(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    f = _fetcher(pool, client)
    orders, jobs, answers = await _claimed_answers(pool, sandbox, client, f, 3)
    changed = jobs[1].order_id
    async with pool.acquire() as conn:
        await fetcher.enqueue(conn, [changed])  # a newer change arrives while its fetch is in flight
    assert await f.store_answers(answers) == [None, None, None]
    assert await _observed(admin) == {f"order-{o}": 1 for o in orders}
    # Never skipped: the changed order's job is due again, fresh, so its newer state is fetched too.
    left = await admin.fetch("SELECT order_id, claimed_until, attempts FROM bunsync.fetch_queue")
    assert [(r["order_id"], r["claimed_until"], r["attempts"]) for r in left] == [(changed, None, 0)]
    again = await f.claim_many(3)
    assert [j.order_id for j in again] == [changed]


async def test_workers_sharing_groups_log_the_good_answers_and_dead_letter_the_bad_one(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    orders = await _enqueued(pool, sandbox, 8)
    refused = orders[3]
    real_event = fetcher.observed_event

    def unstorable(order_id: int, payload_json: str) -> NewEvent:
        event = real_event(order_id, payload_json)
        return msgspec.structs.replace(event, payload_json=_UNSTORABLE) if order_id == refused else event

    fetcher.observed_event = unstorable  # type: ignore[assignment]
    stop = asyncio.Event()
    workers = asyncio.create_task(_fetcher(pool, client, idle_poll_s=0.05).run(stop))
    try:

        async def settled() -> bool:
            return not await admin.fetchval("SELECT count(*) FROM bunsync.fetch_queue WHERE dead_at IS NULL")

        await eventually(settled, 15.0)
        assert not workers.done()
    finally:
        stop.set()
        await workers
        fetcher.observed_event = real_event  # type: ignore[assignment]
    assert await _observed(admin) == {f"order-{o}": 1 for o in orders if o != refused}
    dead = await admin.fetch("SELECT order_id, dead_reason FROM bunsync.fetch_queue")
    assert [r["order_id"] for r in dead] == [refused]
    assert "cannot be stored" in dead[0]["dead_reason"] and "SQLSTATE" in dead[0]["dead_reason"]


async def test_a_background_store_that_finds_the_database_away_loses_nothing(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    sandbox: RunningSandbox,
    client: BunjangClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Workers store in the background while they fetch the next order; a store that fails because the
    # database is away must leave its job leased, to be fetched and stored again once the lease expires.
    orders = await _enqueued(pool, sandbox, 4)
    real_store = Fetcher.store_answers
    failed: list[int] = []

    async def away_once(self: Fetcher, answers: list[Answer]) -> list[str | None]:
        if orders[0] not in failed and any(a.job.order_id == orders[0] for a in answers):
            failed.append(orders[0])
            raise StorageUnavailable("the database went away (simulated)")
        return await real_store(self, answers)

    monkeypatch.setattr(Fetcher, "store_answers", away_once)
    stop = asyncio.Event()
    workers = asyncio.create_task(_fetcher(pool, client, lease_s=0.5, idle_poll_s=0.05).run(stop))
    try:

        async def all_stored() -> bool:
            return await _observed(admin) == {f"order-{o}": 1 for o in orders}

        await eventually(all_stored, 15.0)
    finally:
        stop.set()
        await workers
    assert failed == [orders[0]]
    assert await admin.fetchval("SELECT count(*) FROM bunsync.fetch_queue") == 0


async def test_a_webhook_wakes_idle_workers_at_once_not_at_their_next_poll(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    order_id = sandbox.sandbox.create_orders(1)[0].order_id
    # Idle workers that would otherwise look for work again only after a minute.
    f = _fetcher(pool, client, idle_poll_s=60.0)
    ingestor = Ingestor(pool, max_writers=1, on_fetch_enqueued=f.wake)
    stop = asyncio.Event()
    workers = asyncio.create_task(f.run(stop))
    try:
        await asyncio.sleep(0.2)  # let every worker find the queue empty and go idle
        body = (
            f'{{"eventId":"wake-{order_id}","eventType":"order.status.changed","payloadVersion":"v1",'
            f'"data":{{"orderId":{order_id},"orderItems":[{{"orderItemId":1,"pid":1,"orderStatus":"PAYMENT_RECEIVED"}}]}}}}'
        ).encode()
        now = datetime.now(UTC)
        assert await ingestor.submit(payloads.to_event(body, now, now)) is Outcome.ACCEPTED

        async def fetched() -> bool:
            return await _observed(admin) == {f"order-{order_id}": 1}

        await eventually(fetched, 10.0)
    finally:
        stop.set()
        await workers
