"""The far-behind path: a fresh projection is filled set-based by its active projector, then the engine
carries on batch by batch; nothing is lost or applied twice across the hand-over (projections/fill.py).

Each test runs the real engine (``run_projectors``, as ``serve`` does, logged in as ``bunsync_app``)
with a low threshold, and compares the outcome with a from-scratch fold by batches (``bunsync
rebuild`` without its bulk phase) and the change feed with the Python rule folded over the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from app.store import event_log
from app.store.event_log import START
from projections import bulk as bulk_module
from projections import item_changes
from projections.engine import PROJECTIONS, run_projectors
from projections.rebuild import rebuild
from tests.fixtures.events import append, eventually
from tests.integration.test_projection_rebuild import snapshot, workload

FEED = (
    "SELECT feed_position, order_item_id, status, position FROM bunsync.item_changes ORDER BY feed_position"
)

#: The rows of each filled table (named like its projection).
ROWS = {
    "order_item_status": "SELECT count(*) FROM bunsync.order_item_status",
    "order_item_history": "SELECT count(*) FROM bunsync.order_item_history",
    "orders": "SELECT count(*) FROM bunsync.orders",
}
#: The projections with a bulk phase, hence filled.
FILLED = sorted(ROWS)


@contextlib.asynccontextmanager
async def projectors(pool: asyncpg.Pool, dsn: str, fill_min_events: int = 50) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_projectors(pool, dsn, stop, poll_interval_s=0.05, fill_min_events=fill_min_events)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


class BulkSpy:
    """Counts the bulk phases run (and what each returned); ``during`` runs inside each one's first write,
    given the writer's connection and the phase (projections.bulk.Phase)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.returned: list[int] = []
        self.filled: list[str] = []  # the projections whose bulk phase read events
        self.during: list[Any] = []
        real_run, real_write = bulk_module.run, bulk_module._write

        async def run(*args: Any) -> int:
            n = await real_run(*args)
            self.returned.append(n)
            if n:
                self.filled.append(args[2].name)
            return n

        async def write(conn: asyncpg.Connection, schema: str, data: bytes, phase: bulk_module.Phase) -> None:
            if self.during:
                await self.during.pop(0)(conn, phase)
            await real_write(conn, schema, data, phase)

        monkeypatch.setattr(bulk_module, "run", run)
        monkeypatch.setattr(bulk_module, "_write", write)


async def caught_up(admin: asyncpg.Connection) -> bool:
    return await admin.fetchval("SELECT max_projection_lag FROM reporting.sync_health") == 0


async def expected_feed(admin: asyncpg.Connection) -> list[tuple[int, str, int]]:
    """The change feed the rule gives over the whole log, in commit-safe order."""
    projection = PROJECTIONS["item_changes"]
    observed = []
    for event in await event_log.read_after(admin, START, 1_000_000):
        if event.type in projection.handles:
            with contextlib.suppress(Exception):  # unreadable: parked, emits nothing
                observed.extend(projection.decode(event))
    _, changes = item_changes.fold({}, observed)
    return [(c.order_item_id, c.status, c.position) for c in changes]


async def assert_as_if_folded_from_scratch(
    admin: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = await snapshot(admin)
    feed = await admin.fetch(FEED)
    assert [r["feed_position"] for r in feed] == list(range(1, len(feed) + 1)), "a gap in the feed"
    assert [(r["order_item_id"], r["status"], r["position"]) for r in feed] == await expected_feed(admin)

    async def no_bulk(*_: Any) -> int:
        return 0

    monkeypatch.setattr(bulk_module, "run", no_bulk)  # the reference: every event by the Python rule
    await rebuild(database_url, None, batch_size=97)
    assert await snapshot(admin) == live
    assert await admin.fetch(FEED) == feed


async def test_fresh_projection_is_filled_once_then_followed_event_by_event(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    service_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(11)
    await append(pool, *workload(rng, range(0, 120), 400))
    spy = BulkSpy(monkeypatch)
    # A transaction older than the fill's bound commits while the fill runs (its events come after
    # the bound in commit-safe order), and more events are appended meanwhile, before and after the move.
    late = await pool.acquire()
    tx = late.transaction()
    await tx.start()
    await event_log.append(late, workload(rng, range(0, 120), 30))

    async def meanwhile(*_: Any) -> None:
        await tx.commit()
        await append(pool, *workload(rng, range(100, 200), 40))

    async def more(*_: Any) -> None:
        await append(pool, *workload(rng, range(100, 200), 40))

    spy.during.extend([meanwhile, more])  # in the first write of each fill
    try:
        # Two instances: the standby never fills (one bulk phase per projection in all).
        async with projectors(pool, service_url), projectors(pool, service_url):
            await eventually(lambda: _filled(spy))
            await append(pool, *workload(rng, range(150, 250), 60))
            await eventually(lambda: caught_up(admin), deadline_s=20)
    finally:
        await pool.release(late)
    # One attempt per projection that has a bulk phase (the standby made none; item_changes is filled
    # by projections/feed_fill.py, not by a bulk phase; the others are not even tried), and each bulk
    # phase read the log.
    fillable = [p for p in PROJECTIONS.values() if p.tables and bulk_module.has_phase(p)]
    assert sorted(p.name for p in fillable) == FILLED
    assert len(spy.returned) == len(fillable)
    assert min(spy.returned) >= 400
    assert await admin.fetchval("SELECT count(*) FROM pg_class WHERE relpersistence = 't'") == 0
    assert await admin.fetchval("SELECT count(*) FROM bunsync.order_item_status") > 120
    assert await admin.fetchval("SELECT count(*) FROM bunsync.order_item_history") > 120
    assert await admin.fetchval("SELECT count(*) FROM bunsync.orders") > 60
    await assert_as_if_folded_from_scratch(admin, database_url, monkeypatch)


async def _filled(spy: BulkSpy) -> bool:
    return set(FILLED) <= set(spy.filled)


async def test_a_projector_killed_mid_fill_leaves_live_untouched_and_the_next_fills_again(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    service_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(12)
    await append(pool, *workload(rng, range(0, 100), 300))
    spy = BulkSpy(monkeypatch)
    seen: list[tuple[int, int]] = []

    async def killed(conn: asyncpg.Connection, phase: bulk_module.Phase) -> None:
        await append(pool, *workload(rng, range(50, 150), 30))
        other = await asyncpg.connect(database_url)  # the test's `admin` is busy polling
        try:
            seen.append(
                (
                    await other.fetchval(ROWS[phase.table]),
                    await other.fetchval(
                        "SELECT position FROM bunsync.projection_checkpoints WHERE projection = $1",
                        phase.table,
                    ),
                )
            )
            await other.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        finally:
            await other.close()

    spy.during.append(killed)
    async with projectors(pool, service_url):
        await eventually(lambda: _filled(spy), deadline_s=20)
        await eventually(lambda: caught_up(admin), deadline_s=20)
    assert seen == [(0, 0)]  # the live projection was untouched while the killed fill ran
    # The killed one never returned; the next did (and the other projection's fill, once).
    assert sorted(spy.filled) == FILLED
    await assert_as_if_folded_from_scratch(admin, database_url, monkeypatch)


async def test_a_running_rebuild_makes_the_projector_go_on_by_batches(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    service_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await append(pool, *workload(random.Random(13), range(0, 100), 300))
    spy = BulkSpy(monkeypatch)
    # As `bunsync rebuild order_item_status` holds it while it runs.
    assert await admin.fetchval(
        "SELECT pg_try_advisory_lock(hashtext('bunsync.rebuild'), hashtext($1))", "order_item_status"
    )
    async with projectors(pool, service_url):
        await eventually(lambda: caught_up(admin), deadline_s=20)
    await admin.fetchval("SELECT pg_advisory_unlock_all()")
    assert "order_item_status" not in spy.filled
    await assert_as_if_folded_from_scratch(admin, database_url, monkeypatch)


async def test_a_projection_already_under_way_is_not_filled(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    service_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(14)
    await append(pool, *workload(rng, range(0, 50), 20))
    async with projectors(pool, service_url, fill_min_events=10_000):
        await eventually(lambda: caught_up(admin))
    # Back from an outage, far behind but not fresh: batches only (its tables are not replaced).
    await append(pool, *workload(rng, range(0, 100), 300))
    spy = BulkSpy(monkeypatch)
    async with projectors(pool, service_url):
        await eventually(lambda: caught_up(admin), deadline_s=20)
    assert spy.filled == []
    await assert_as_if_folded_from_scratch(admin, database_url, monkeypatch)
