"""The change feed's far-behind fill (projections/feed_fill.py): an entirely fresh feed is filled
set-based with exactly the rows, numbering, heads, parked events and checkpoint that the batches
build; a feed that is not fresh, or a log the SQL cannot vouch for, is left to the batches.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.store import event_log
from app.store.event_log import NewEvent
from projections import feed_fill, item_changes
from projections import fill as fill_module
from projections.engine import PROJECTIONS, process_batch
from tests.fixtures.events import append, at, eventually, listed, observed, observed_body, table
from tests.integration.test_projection_bulk import append_out_of_order, event_sets
from tests.integration.test_projection_fill import caught_up, expected_feed, projectors

FEED = PROJECTIONS["item_changes"]
#: Everything of the change feed but emitted_at (the wall-clock time of the append).
SNAPSHOT = [
    "SELECT feed_position, order_id, order_item_id, status, previous_status, status_updated_at, source, "
    "position, recorded_at FROM bunsync.item_changes",
    "SELECT order_item_id, status_updated_at, emitted_status FROM bunsync.item_change_heads",
    "SELECT projection, position, error, attempts, resolved_at FROM bunsync.parked_events "
    "WHERE projection = 'item_changes'",
    "SELECT tx_id::text, position, events_read FROM bunsync.projection_checkpoints "
    "WHERE projection = 'item_changes'",
]
#: As the database owner: forget the feed, its heads, parked events and checkpoint (the feed is
#: append-only for everyone else, and must stay so: its trigger is re-enabled at once).
RESET = """
ALTER TABLE bunsync.item_changes DISABLE TRIGGER item_changes_append_only;
TRUNCATE bunsync.item_changes, bunsync.item_change_heads;
ALTER TABLE bunsync.item_changes ENABLE ALWAYS TRIGGER item_changes_append_only;
DELETE FROM bunsync.parked_events WHERE projection = 'item_changes';
UPDATE bunsync.projection_checkpoints SET tx_id = '0', position = 0, events_read = 0
WHERE projection = 'item_changes';
"""


async def feed_snapshot(admin: asyncpg.Connection) -> list[list[tuple[Any, ...]]]:
    return [await table(admin, q) for q in SNAPSHOT]


async def by_batches(pool: asyncpg.Pool, batch_size: int = 7) -> None:
    async with pool.acquire() as conn:
        while await process_batch(conn, FEED, batch_size=batch_size):
            pass


class FillSpy:
    """Records what each feed fill returned (0: stepped aside, the batches did it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.returned: list[int] = []
        real = feed_fill.fill

        async def spy(*args: Any) -> int:
            n = await real(*args)
            self.returned.append(n)
            return n

        monkeypatch.setattr(feed_fill, "fill", spy)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(groups=event_sets(), reorder=st.booleans(), twice=st.booleans())
async def test_filled_feed_equals_the_feed_the_batches_build(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    service_url: str,
    groups: tuple[list[NewEvent], list[NewEvent]],
    reorder: bool,
    twice: bool,
) -> None:
    # Examples share the database: each adds its own order's events, the comparison covers them all.
    first, second = groups
    if twice:  # several items in one event, an item twice in one, an item left to Python among others
        order = 10**10 + len(first) * 100 + len(second)
        odd = observed_body(order, [(order * 10 + 2, "F", at(6)), (order * 10 + 3, "G", at(1))])
        odd["data"]["order"]["orderItems"][1]["product"]["price"] = 2**70  # item 3: folded in Python
        first = [
            observed(order, [(order * 10 + 2, "B", at(2)), (order * 10 + 1, "A", at(1))]),
            listed(order, [(order * 10 + 1, "C", at(3)), (order * 10 + 1, "D", at(4))]),
            observed(order, [], body=odd),
            *first,
            observed(
                order,
                [(order * 10 + 3, "H", at(2)), (order * 10 + 1, "A", at(5)), (order * 10 + 2, "E", at(7))],
            ),
        ]
    if reorder:
        await append_out_of_order(pool, first, second)
    else:
        async with pool.acquire() as conn:
            await event_log.append(conn, [*first, *second])
    await admin.execute(RESET)
    await by_batches(pool)
    batches = await feed_snapshot(admin)
    await admin.execute(RESET)
    filled = await fill_module.fill(service_url, FEED)
    assert filled == await admin.fetchval("SELECT count(*) FROM bunsync.event_log")
    await by_batches(pool)  # nothing left to read
    assert await feed_snapshot(admin) == batches
    assert await admin.fetchval("SELECT count(*) FROM pg_class WHERE relpersistence = 't'") == 0


async def test_events_appended_while_the_feed_fills_are_applied_once_after_it(
    pool: asyncpg.Pool, admin: asyncpg.Connection, service_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await append(pool, *_history(range(0, 60), at(0)))
    spy = FillSpy(monkeypatch)
    # A transaction older than the fill's bound commits while the fill runs (its events come after the
    # bound in commit-safe order), and more events are appended meanwhile.
    late = await pool.acquire()
    tx = late.transaction()
    await tx.start()
    await event_log.append(late, _history(range(0, 40), at(100)))
    real = feed_fill._fold_left

    async def meanwhile(*args: Any) -> None:
        await tx.commit()
        await append(pool, *_history(range(30, 90), at(200)))
        await real(*args)

    monkeypatch.setattr(feed_fill, "_fold_left", meanwhile)
    try:
        async with projectors(pool, service_url, fill_min_events=50):
            await eventually(lambda: _returned(spy))
            await append(pool, *_history(range(80, 120), at(300)))
            await eventually(lambda: caught_up(admin), deadline_s=20)
    finally:
        await pool.release(late)
    assert spy.returned and spy.returned[0] >= 120  # the fill did the first events' work
    await _assert_feed_is_the_rule(admin)


async def _returned(spy: FillSpy) -> bool:
    return bool(spy.returned)


async def _assert_feed_is_the_rule(admin: asyncpg.Connection) -> None:
    feed = await admin.fetch(
        "SELECT feed_position, order_item_id, status, position FROM bunsync.item_changes"
    )
    feed = sorted(feed, key=lambda r: r["feed_position"])
    assert [r["feed_position"] for r in feed] == list(range(1, len(feed) + 1)), "a gap in the feed"
    assert [(r["order_item_id"], r["status"], r["position"]) for r in feed] == await expected_feed(admin)


def _history(orders: range, t0: Any) -> list[NewEvent]:
    """Two fetches of each order (two items each, moving forward), one with a stale item."""
    out: list[NewEvent] = []
    for o in orders:
        out.append(observed(o, [(o * 10, "PAYMENT_RECEIVED", t0), (o * 10 + 1, "PAYMENT_RECEIVED", t0)]))
        t1 = t0 + (at(1) - at(0)) * (o % 3 + 1)
        out.append(listed(o, [(o * 10 + 1, "SHIP_READY", t1), (o * 10, "PAYMENT_RECEIVED", t0)]))
    return out


@pytest.mark.parametrize("taken", ["row", "head"])
async def test_a_feed_that_is_not_fresh_is_left_to_the_batches(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    service_url: str,
    monkeypatch: pytest.MonkeyPatch,
    taken: str,
) -> None:
    await append(pool, *_history(range(0, 60), at(0)))
    async with admin.transaction():
        if taken == "row":
            await admin.execute("SELECT pg_advisory_xact_lock(bunsync.feed_lock_key())")
            await admin.execute(
                "INSERT INTO bunsync.item_changes (feed_position, order_id, order_item_id, status, "
                "status_updated_at, source, position, recorded_at) "
                "VALUES (1, 99999, 999990, 'KEPT', $1, 'get_order', 1, $1)",
                at(0),
            )
        else:  # item 10 already seen at a later time with its status: its first changes are not emitted
            await admin.execute(
                "INSERT INTO bunsync.item_change_heads VALUES (10, $1, 'PAYMENT_RECEIVED')", at(30)
            )
    before = await admin.fetch("SELECT * FROM bunsync.item_changes")
    spy = FillSpy(monkeypatch)
    async with projectors(pool, service_url, fill_min_events=50):
        await eventually(lambda: caught_up(admin), deadline_s=20)
    assert spy.returned == []  # not even tried
    feed = await admin.fetch("SELECT * FROM bunsync.item_changes ORDER BY feed_position")
    assert feed[: len(before)] == before  # the row consumers may have read is untouched
    heads = {10: item_changes.Head(status_updated_at=at(30), emitted_status="PAYMENT_RECEIVED")}
    expected = await _rule(admin, heads if taken == "head" else {})
    got = [(r["order_item_id"], r["status"], r["position"]) for r in feed[len(before) :]]
    assert got == expected
    assert [r["feed_position"] for r in feed] == list(range(1, len(feed) + 1))


async def _rule(admin: asyncpg.Connection, heads: dict[int, item_changes.Head]) -> list[tuple[int, str, int]]:
    """The changes the rule emits over the whole log from ``heads``."""
    observed_ = []
    for event in await event_log.read_after(admin, event_log.START, 1_000_000):
        if event.type in FEED.handles:
            observed_.extend(FEED.decode(event))
    _, changes = item_changes.fold(dict(heads), observed_)
    return [(c.order_item_id, c.status, c.position) for c in changes]


async def test_an_event_the_sql_skips_but_python_reads_makes_the_fill_step_aside(
    pool: asyncpg.Pool, admin: asyncpg.Connection, service_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await append(pool, *_history(range(0, 60), at(0)))
    # An order id within bigint but beyond what the SQL vouches for (1e18): Python reads it.
    big = 2**62
    body = observed_body(big, [(big + 1, "SHIP_READY", at(4))])
    unparseable = json.loads('{"data": {"order": {"id": "x"}}}')  # parked, by either path
    await append(pool, observed(big, [], body=body), observed(3, [], body=unparseable))
    await append(pool, *_history(range(60, 70), at(9)))
    spy = FillSpy(monkeypatch)
    async with projectors(pool, service_url, fill_min_events=50):
        await eventually(lambda: caught_up(admin), deadline_s=20)
    assert spy.returned == [0]  # tried, stepped aside
    await _assert_feed_is_the_rule(admin)
    assert (big + 1, "SHIP_READY") in [
        (r["order_item_id"], r["status"]) for r in await admin.fetch("SELECT * FROM bunsync.item_changes")
    ]
    parked = await admin.fetch("SELECT error FROM bunsync.parked_events WHERE projection = 'item_changes'")
    assert len(parked) == 1 and parked[0]["error"].startswith("ValidationError")
