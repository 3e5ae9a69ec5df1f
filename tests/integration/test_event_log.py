"""The event log: append-only for every role, idempotent appends, and commit-safe reads."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from app.store import event_log
from app.store.event_log import START, Checkpoint, NewEvent


def _event(key: str, order_id: int | None = None, payload: str = '{"n": 1}') -> NewEvent:
    return NewEvent(
        stream=f"order-{order_id}" if order_id else "test",
        type="test.event",
        source="webhook",
        idempotency_key=key,
        payload_json=payload,
        raw=payload.encode(),
        fetch_order_id=order_id,
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE bunsync.event_log SET type = 'x'",
        "UPDATE bunsync.event_log SET type = 'x' WHERE false",
        "DELETE FROM bunsync.event_log",
        "TRUNCATE bunsync.event_log",
        "TRUNCATE bunsync.event_log CASCADE",
    ],
)
async def test_log_refuses_change_even_for_the_owner(
    admin: asyncpg.Connection, pool: asyncpg.Pool, statement: str
) -> None:
    async with pool.acquire() as conn:
        await event_log.append(conn, [_event("a", 1)])
    # (A plain TRUNCATE is already refused for the conflicts table's foreign key; CASCADE meets the trigger.)
    with pytest.raises(asyncpg.PostgresError, match=r"append-only|referenced in a foreign key"):
        await admin.execute(statement)
    # Not even with triggers disabled for replication.
    await admin.execute("SET session_replication_role = replica")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await admin.execute("DELETE FROM bunsync.event_log")
    assert await admin.fetchval("SELECT count(*) FROM bunsync.event_log") == 1


async def test_service_role_has_only_select_and_insert_on_the_log(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "bunsync_app"
        for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
            assert not await conn.fetchval(
                "SELECT has_table_privilege('bunsync.event_log', $1)", privilege
            ), privilege
        assert await conn.fetchval("SELECT has_table_privilege('bunsync.event_log', 'INSERT')")


async def test_append_is_idempotent_and_enqueues_once(pool: asyncpg.Pool, admin: asyncpg.Connection) -> None:
    async with pool.acquire() as conn:
        first = await event_log.append(conn, [_event("k1", 7), _event("k2", 7), _event("k3")])
        again = await event_log.append(conn, [_event("k1", 7), _event("k4", 8)])
    assert set(first.inserted) == {"k1", "k2", "k3"}
    assert set(again.inserted) == {"k4"}
    assert await admin.fetchval("SELECT count(*) FROM bunsync.event_log") == 4
    rows = await admin.fetch("SELECT order_id, generation FROM bunsync.fetch_queue ORDER BY order_id")
    assert [(r["order_id"], r["generation"]) for r in rows] == [(7, 1), (8, 1)]


async def test_same_content_compares_json_not_bytes(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await event_log.append(conn, [_event("k", 1, '{"a": 1, "b": 2}')])
        same = await event_log.same_content(
            conn, [_event("k", 1, '{"b":2,"a":1}'), _event("k", 1, '{"a": 1, "b": 3}')]
        )
    assert same == [True, False]


async def _tail(pool: asyncpg.Pool, expected: int, deadline_s: float) -> list[int]:
    """Read from START with small pages until `expected` events were seen or the deadline passed."""
    seen: list[int] = []
    checkpoint: Checkpoint = START
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while len(seen) < expected and loop.time() < end:
        async with pool.acquire() as conn:
            page = await event_log.read_after(conn, checkpoint, 7)
        for e in page:
            seen.append(e.position)
            checkpoint = e.checkpoint
        if not page:
            await asyncio.sleep(0.005)
    return seen


async def _approach_a_digit_boundary(pool: asyncpg.Pool) -> None:
    """Burn transaction ids until the next power of ten is ~100 away, so the test's writes straddle it
    (a reader that compares ids as text, where '999' > '1000', then fails)."""
    async with pool.acquire() as conn:
        xid = int(await conn.fetchval("SELECT pg_current_xact_id()::text"))
        target = 10 ** len(str(xid)) - 100
        for _ in range(min(max(target - xid, 0), 20_000)):
            await conn.execute("SELECT pg_current_xact_id()")


async def test_tailing_reader_never_skips_a_late_commit(pool: asyncpg.Pool) -> None:
    """Many writers append while some hold their transactions open; the tail sees each event once."""
    writers, per_writer = 12, 40
    rng = random.Random(7)
    expected = writers * per_writer

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with pool.acquire() as conn, conn.transaction():
                await event_log.append(conn, [_event(f"w{w}-{i}")])
                # Hold some transactions open after taking their position: later positions commit first.
                if rng.random() < 0.2:
                    await asyncio.sleep(rng.uniform(0.01, 0.15))

    await _approach_a_digit_boundary(pool)
    tail = asyncio.create_task(_tail(pool, expected, deadline_s=60))
    await asyncio.gather(*(writer(w) for w in range(writers)))
    seen = await tail
    assert len(seen) == expected
    assert len(set(seen)) == expected
    async with pool.acquire() as conn:
        logged = await conn.fetchval("SELECT array_agg(position ORDER BY position) FROM bunsync.event_log")
    assert sorted(seen) == list(logged)


async def test_position_order_alone_would_skip(pool: asyncpg.Pool) -> None:
    """Shows the gap the reader avoids: a held transaction's event commits after a later position."""
    async with pool.acquire() as held:
        tx = held.transaction()
        await tx.start()
        await event_log.append(held, [_event("held")])
        async with pool.acquire() as conn:
            await event_log.append(conn, [_event("later")])
            # The later event is committed, but the reader must not pass the held one: it waits.
            assert await event_log.read_after(conn, START, 10) == []
        await tx.commit()
    async with pool.acquire() as conn:
        keys = [e.position for e in await event_log.read_after(conn, START, 10)]
    assert len(keys) == 2


async def test_a_reader_gets_every_event_but_only_the_payloads_it_asks_for(pool: asyncpg.Pool) -> None:
    """A projector reads every event (its checkpoint moves past all of them), with the payload of the
    types it handles only."""
    other = NewEvent(
        stream="test", type="other.event", source="webhook", idempotency_key="o", payload_json="[2]"
    )
    async with pool.acquire() as conn:
        await event_log.append(conn, [_event("a"), other, _event("b")])
        every = await event_log.read_after(conn, START, 10)
        some = await event_log.read_after(conn, START, 10, {"test.event"})
    assert [e.payload_json for e in every] == ['{"n": 1}', "[2]", '{"n": 1}']
    assert [(e.position, e.type, e.payload_json) for e in some] == [
        (every[0].position, "test.event", '{"n": 1}'),
        (every[1].position, "other.event", None),
        (every[2].position, "test.event", '{"n": 1}'),
    ]
    assert some[-1].checkpoint == every[-1].checkpoint
