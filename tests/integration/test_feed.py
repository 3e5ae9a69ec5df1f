"""The change feed's cursor promise, on a real PostgreSQL: a tailing reader gets every row once while
writers and held-open transactions run; a rebuild neither renumbers nor re-emits; a projector takeover
loses and repeats nothing. Also ``GET /feed``'s long poll woken by NOTIFY."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg

from app.feed.reader import FeedWaker, poll, read_after
from app.store import event_log
from app.store.event_log import START, NewEvent, RecordedEvent
from projections.item_changes import ItemChanges, fold
from projections.rebuild import rebuild
from projections.rules import Observation
from tests.fixtures.events import append, at, eventually, listed, observed, project_all, projectors, webhook

STATUSES = ["PAYMENT_RECEIVED", "SHIP_READY", "IN_TRANSIT", "DELIVERY_COMPLETED", "PURCHASE_CONFIRM"]
FEED = "SELECT * FROM bunsync.item_changes ORDER BY feed_position"


def workload(rng: random.Random, n: int, items: range = range(100, 140)) -> list[NewEvent]:
    """API observations (duplicated, late, out of order), webhooks and untimed answers."""
    out: list[NewEvent] = []
    for _ in range(n):
        item = rng.choice(items)
        status, t = rng.choice(STATUSES), at(rng.randint(0, 2000))
        kind = rng.random()
        if kind < 0.2:
            out.append(webhook(item // 2, [(item, status)], t))
        elif kind < 0.6:
            out.append(observed(item // 2, [(item, status, t), (item ^ 1, rng.choice(STATUSES), t)]))
        elif kind < 0.95:
            out.append(listed(item // 2, [(item, status, t)]))
        else:
            out.append(observed(item // 2, [(item, status, None)]))
    return out


async def expected_feed(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """The feed the rule gives for the whole log read in commit-safe order, from no head at all."""
    projection, obs = ItemChanges(), []
    checkpoint = START
    while batch := await event_log.read_after(conn, checkpoint, 1000):
        obs += [o for e in batch if e.type in projection.handles for o in projection.decode(e)]
        checkpoint = batch[-1].checkpoint
    return [
        (c.order_item_id, c.status, c.previous_status, c.status_updated_at, c.position)
        for c in fold({}, obs)[1]
    ]


def shape(rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    return [
        (r["order_item_id"], r["status"], r["previous_status"], r["status_updated_at"], r["position"])
        for r in rows
    ]


# The checkpoint is the last event read in commit-safe order (tx_id, position): with concurrent
# appends, the largest position may have committed earlier, so "position >= max(position)" can stay
# false after the projection has read everything.
CAUGHT_UP = """
SELECT (c.tx_id, c.position) >= (SELECT e.tx_id, e.position FROM bunsync.event_log AS e
                                 ORDER BY e.tx_id DESC, e.position DESC LIMIT 1)
FROM bunsync.projection_checkpoints AS c WHERE c.projection = 'item_changes'
"""


async def _feed_caught_up(admin: asyncpg.Connection) -> bool:
    return bool(await admin.fetchval(CAUGHT_UP))


async def test_tailing_reader_gets_every_row_once_with_writers_and_held_open_transactions(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str, service_url: str
) -> None:
    rng = random.Random(13)
    events = workload(rng, 600)
    seen: list[int] = []
    done = asyncio.Event()

    async def tail() -> None:
        last = 0
        while True:
            finished = done.is_set()
            rows = await read_after(pool, last, 7)
            for r in rows:
                # Positions are dense (numbered under the writer lock): a skipped row would show here.
                assert r.feed_position == last + 1, f"after {last} came {r.feed_position}"
                last = r.feed_position
                seen.append(last)
            if finished and not rows:
                return

    async def writer(chunk: list[NewEvent], hold: bool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await event_log.append(conn, chunk)
            if hold:  # commits after transactions that started later: out of position order
                await asyncio.sleep(rng.uniform(0.05, 0.3))

    async def feed_writer_held_open() -> None:
        # A feed write held open before commit: every other feed writer must wait for it, never
        # number rows past it (the reader would then skip its rows).
        for k in range(5):
            async with pool.acquire() as conn, conn.transaction():
                obs = Observation(
                    order_item_id=900_000 + k,
                    order_id=450_000,
                    status="SHIP_READY",
                    source="get_order",
                    position=0,
                    recorded_at=at(0),
                    status_updated_at=at(k),
                )
                event = RecordedEvent(
                    0, 0, "order-450000", "order.observed", None, "get_order", None, None, at(0)
                )
                await ItemChanges().write(conn, [(event, [obs])])
                await asyncio.sleep(0.2)

    reader = asyncio.create_task(tail())
    async with projectors(pool, service_url, poll_s=0.05):
        chunks = [events[i : i + 12] for i in range(0, len(events), 12)]
        await asyncio.gather(
            feed_writer_held_open(), *(writer(c, hold=i % 4 == 0) for i, c in enumerate(chunks))
        )
        await eventually(lambda: _feed_caught_up(admin), 60)
    done.set()
    await asyncio.wait_for(reader, 30)
    total = await admin.fetchval("SELECT count(*) FROM bunsync.item_changes")
    assert total > 100
    assert seen == list(range(1, total + 1))


async def test_feed_is_identical_before_and_after_rebuild(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str
) -> None:
    rng = random.Random(7)
    events = workload(rng, 300)
    for i in range(0, 200, 20):
        await append(pool, *events[i : i + 20])
    await project_all(pool, batch_size=33)
    before = await admin.fetch(FEED)
    assert len(before) > 50
    # More events land before the rebuild: the rebuild may emit them, but each exactly once.
    for i in range(200, 300, 20):
        await append(pool, *events[i : i + 20])
    await rebuild(database_url, None, progress=False, batch_size=41)
    await project_all(pool)
    after = await admin.fetch(FEED)
    assert [tuple(r) for r in after[: len(before)]] == [tuple(r) for r in before], "renumbered or rewritten"
    assert shape(after) == await expected_feed(admin)
    # And a rebuild of the feed alone, with nothing new, changes nothing at all.
    await rebuild(database_url, ["item_changes"], progress=False)
    await project_all(pool)
    assert [tuple(r) for r in await admin.fetch(FEED)] == [tuple(r) for r in after]


async def test_projector_takeover_mid_stream_loses_and_repeats_nothing(
    pool: asyncpg.Pool, admin: asyncpg.Connection, service_url: str
) -> None:
    rng = random.Random(21)
    events = workload(rng, 400)
    first = asyncio.create_task(_projectors_until_cancelled(pool, service_url))
    async with projectors(pool, service_url, poll_s=0.05):  # the standby
        for i in range(0, 400, 10):
            await append(pool, *events[i : i + 10])
            if i == 200:
                first.cancel()  # the active replica dies mid-stream; its lock connection goes with it
        await eventually(lambda: _feed_caught_up(admin), 60)
    await asyncio.gather(first, return_exceptions=True)
    assert shape(await admin.fetch(FEED)) == await expected_feed(admin)


async def _projectors_until_cancelled(pool: asyncpg.Pool, dsn: str) -> None:
    async with projectors(pool, dsn, poll_s=0.05):
        await asyncio.Event().wait()


async def test_long_poll_is_woken_by_the_projector_notify(pool: asyncpg.Pool, service_url: str) -> None:
    stop = asyncio.Event()
    waker = FeedWaker(service_url)
    listener = asyncio.create_task(waker.run(stop))
    try:
        async with projectors(pool, service_url, poll_s=0.05):
            waiting = asyncio.create_task(poll(pool, waker, 0, 10, 20.0))
            await asyncio.sleep(0.2)  # the poll is parked on an empty feed
            assert not waiting.done()
            loop = asyncio.get_running_loop()
            started = loop.time()
            await append(pool, observed(1, [(10, "SHIP_READY", at(5))]))
            rows = await asyncio.wait_for(waiting, 10)
            assert [(r.order_item_id, r.status) for r in rows] == [(10, "SHIP_READY")]
            assert loop.time() - started < 5, "woken by NOTIFY, not by the end of the wait"
    finally:
        stop.set()
        await listener
