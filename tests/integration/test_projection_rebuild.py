"""Rebuild: from the log into fresh tables, swapped in while readers and the live projector carry on."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import pytest

from app.store.event_log import NewEvent
from projections import bulk as bulk_module
from projections import rebuild as rebuild_module
from projections.rebuild import rebuild
from tests.fixtures.events import (
    append,
    at,
    eventually,
    listed,
    observed,
    project_all,
    projectors,
    table,
    webhook,
)

SNAPSHOT = [
    "SELECT * FROM bunsync.order_item_status",
    "SELECT * FROM bunsync.order_item_history",
    "SELECT * FROM bunsync.orders",
    "SELECT projection, position, events_read FROM bunsync.projection_checkpoints",
    "SELECT projection, position, error, resolved_at IS NULL FROM bunsync.parked_events",
]
# Every index of schema $1's tables with the constraint it backs: what migrations made, which a rebuild
# must hand back exactly (its bulk phase drops the build table's indexes while it streams rows in).
INDEXES = """
SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid), k.conname, pg_get_constraintdef(k.oid)
FROM pg_index AS x
JOIN pg_class AS t ON t.oid = x.indrelid
JOIN pg_class AS i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint AS k ON k.conindid = x.indexrelid AND k.conrelid = x.indrelid
WHERE t.relnamespace = $1::regnamespace
ORDER BY 1, 2
"""
STATUSES = ["PAYMENT_RECEIVED", "SHIP_READY", "IN_TRANSIT", "DELIVERY_COMPLETED", "PURCHASE_CONFIRM"]


def workload(rng: random.Random, items: range, events: int) -> list[NewEvent]:
    """Webhooks, Get Order and List Orders results (some stale) for ``items``, one order per 2 items."""
    out: list[NewEvent] = []
    for n in range(events):
        item = rng.choice(items)
        order = item // 2
        status = rng.choice(STATUSES)
        t = at(rng.randint(0, 1000))
        kind = rng.random()
        if kind < 0.4:
            out.append(webhook(order, [(item, status)], t))
        elif kind < 0.8:
            out.append(observed(order, [(item, status, t), (item ^ 1, rng.choice(STATUSES), t)]))
        else:
            out.append(listed(order, [(item, status, t)]))
        if n == events // 2:  # one poison event, parked by every projection that reads it
            out.append(observed(order, [], body={"data": {"order": {"id": "x"}}}))
    return out


async def snapshot(admin: asyncpg.Connection) -> list[list[tuple[Any, ...]]]:
    return [await table(admin, q) for q in SNAPSHOT]


async def test_rebuild_equals_live(pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str) -> None:
    rng = random.Random(4)
    events = workload(rng, range(100, 160), 400)
    for i in range(0, len(events), 25):
        await append(pool, *events[i : i + 25])
    await project_all(pool, batch_size=37)
    live = await snapshot(admin)
    assert len(live[0]) == 60 and len(live[4]) == 4  # the poison event parks item_changes too
    indexes = await admin.fetch(INDEXES, "bunsync")
    await rebuild(database_url, None, batch_size=64)
    assert await snapshot(admin) == live
    assert await admin.fetch(INDEXES, "bunsync") == indexes
    # The swapped-in tables serve as before: the reporting role reads, the service role writes.
    await admin.execute("SET ROLE bunsync_reporting")
    assert await admin.fetchval("SELECT count(*) FROM reporting.order_item_status") == 60
    await admin.execute("RESET ROLE")
    await append(pool, webhook(1, [(999, "SHIP_READY")], at(5000)))
    await project_all(pool)
    assert await admin.fetchval(
        "SELECT status FROM reporting.order_item_status WHERE order_item_id = 999"
    ) == ("SHIP_READY")
    assert await admin.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bunsync\\_%'") == 0


async def test_readers_never_see_an_empty_or_partial_view_while_live_and_rebuild_run(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str
) -> None:
    rng = random.Random(9)
    await append(pool, *workload(rng, range(0, 200), 600))
    await project_all(pool)
    floor = [
        await admin.fetchval(f"SELECT count(*) FROM reporting.{v}")
        for v in ("order_item_status", "order_item_history")
    ]
    reader_conn = await asyncpg.connect(database_url, server_settings={"role": "bunsync_reporting"})
    done = asyncio.Event()
    seen: list[tuple[int, int]] = []

    async def reader() -> None:
        while not done.is_set():
            async with reader_conn.transaction(isolation="repeatable_read"):
                items = await reader_conn.fetchval("SELECT count(*) FROM reporting.order_item_status")
                changes = await reader_conn.fetchval("SELECT count(*) FROM reporting.order_item_history")
            seen.append((items, changes))

    async def writer() -> None:
        for i in range(10):
            await append(pool, *workload(rng, range(200 + 10 * i, 210 + 10 * i), 10))
            await asyncio.sleep(0.01)

    try:
        async with projectors(pool, database_url, poll_s=0.05):
            reading = asyncio.create_task(reader())
            await asyncio.gather(rebuild(database_url, None, batch_size=50), writer())
            done.set()
            await reading

            async def caught_up() -> bool:
                return await admin.fetchval("SELECT max_projection_lag FROM reporting.sync_health") == 0

            await eventually(caught_up)
    finally:
        await reader_conn.close()
    assert len(seen) > 10
    assert all(items >= floor[0] and changes >= floor[1] for items, changes in seen), (floor, seen[:5])
    assert [s[0] for s in seen] == sorted(s[0] for s in seen), "items disappeared from the view"
    # What the live projector and the rebuild made together equals a rebuild from scratch.
    live = await snapshot(admin)
    await rebuild(database_url, None)
    assert await snapshot(admin) == live


async def test_the_swap_waits_for_no_writer_of_the_log_and_no_reader_of_other_views(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str
) -> None:
    """A webhook being stored (a transaction holding the log) and a report reading a view of other
    tables do not hold the swap back: it locks only the projection's tables and the views bound to
    them, and re-creates those views."""
    await append(pool, *workload(random.Random(4), range(0, 50), 200))
    await project_all(pool)
    expected = await table(admin, "SELECT * FROM reporting.order_item_status")
    writer = await asyncpg.connect(database_url)
    report = await asyncpg.connect(database_url, server_settings={"role": "bunsync_reporting"})
    try:
        async with writer.transaction(), report.transaction():
            await writer.execute(
                "INSERT INTO bunsync.event_log (stream, type, payload, source, idempotency_key) "
                "VALUES ('order-1', 'test.open', '{}', 'bunsync', 'open-during-swap')"
            )
            await report.fetchval("SELECT count(*) FROM reporting.webhook_events")
            await report.fetchval("SELECT count(*) FROM reporting.order_item_history")
            started = asyncio.get_running_loop().time()
            await rebuild(database_url, ["order_item_status"])
            waited = asyncio.get_running_loop().time() - started
    finally:
        await writer.close()
        await report.close()
    # The swap's lock wait gives up after 10 s (then retries): it never started waiting.
    assert waited < rebuild_module.SWAP_LOCK_WAIT_S
    assert await table(admin, "SELECT * FROM reporting.order_item_status") == expected
    for view in ("order_item_status", "status_counts", "order_item_history", "webhook_events"):
        await admin.fetchval(f"SELECT count(*) FROM reporting.{view}")  # all still there


async def test_the_swap_locks_exactly_the_views_bound_to_its_tables(
    admin: asyncpg.Connection,
) -> None:
    async with admin.transaction():
        status = await admin.fetchval("SELECT bunsync.projection_swap_lock(ARRAY['order_item_status'])")
    async with admin.transaction():
        history = await admin.fetchval("SELECT bunsync.projection_swap_lock(ARRAY['order_item_history'])")
    async with admin.transaction():
        orders = await admin.fetchval("SELECT bunsync.projection_swap_lock(ARRAY['orders'])")
    assert (status, history, orders) == (
        ["order_item_status", "status_counts"],
        ["order_item_history", "time_in_status"],
        [],
    )


@pytest.mark.parametrize("where", ["bulk copy", "bulk phase", "catch-up batch"])
async def test_interrupted_rebuild_leaves_live_untouched_and_runs_again(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    await append(pool, *workload(random.Random(2), range(0, 40), 200))
    await project_all(pool)
    live = await snapshot(admin)

    async def dies(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt  # the operator pressed Ctrl-C

    # While the bulk phase streams rows in (the build table's indexes dropped), inside its
    # transaction, or in the first engine batch after it committed.
    target, attr = {
        "bulk copy": (bulk_module, "copy_build"),
        "bulk phase": (bulk_module, "_fold"),
        "catch-up batch": (rebuild_module, "process_batch"),
    }[where]
    indexes = await admin.fetch(INDEXES, "bunsync")
    real = getattr(target, attr)
    monkeypatch.setattr(target, attr, dies)
    with pytest.raises(KeyboardInterrupt):
        await rebuild(database_url, ["order_item_status"], batch_size=20)
    assert await snapshot(admin) == live
    monkeypatch.setattr(target, attr, real)
    await rebuild(database_url, ["order_item_status"], batch_size=20)
    assert await snapshot(admin) == live
    assert await admin.fetch(INDEXES, "bunsync") == indexes


async def test_the_bulk_phase_puts_back_exactly_the_indexes_it_drops(admin: asyncpg.Connection) -> None:
    """Every kind of index a build table could have comes back under its name and definition; an index
    a foreign key relies on is never dropped (build tables have none, but the helper must not break
    such a table)."""
    await admin.execute(
        """
        CREATE SCHEMA scratch;
        CREATE TABLE scratch.t (id bigint PRIMARY KEY, code text UNIQUE NULLS NOT DISTINCT, note text,
                                EXCLUDE USING btree (note WITH =));
        CREATE INDEX t_partial_expression ON scratch.t (lower(note) DESC) WHERE id > 10;
        CREATE UNIQUE INDEX t_pair ON scratch.t (code, note) INCLUDE (id);
        CREATE TABLE scratch.child (id bigint REFERENCES scratch.t (id));
        """
    )
    before = await admin.fetch(INDEXES, "scratch")
    assert len(before) == 5
    async with bulk_module.indexes_deferred(admin, "scratch", "t"):
        during = [r[1] for r in await admin.fetch(INDEXES, "scratch")]
        await admin.execute("INSERT INTO scratch.t SELECT g, g::text, g::text FROM generate_series(1, 500) g")
    assert during == ["t_pkey"]  # the foreign key's
    assert await admin.fetch(INDEXES, "scratch") == before
    with pytest.raises(asyncpg.UniqueViolationError):
        await admin.execute("INSERT INTO scratch.t VALUES (501, '1', 'x')")
    await admin.execute("DROP SCHEMA scratch CASCADE")


async def test_unknown_projection_is_refused(database_url: str) -> None:
    with pytest.raises(rebuild_module.RebuildError, match="unknown projection"):
        await rebuild(database_url, ["nope"])
