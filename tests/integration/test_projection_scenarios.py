"""The projections on a real database: rows and views from webhook, Get Order and List Orders events."""

from __future__ import annotations

import asyncio

import asyncpg
from hypothesis import HealthCheck, given, settings

from app.store import db
from projections.rules import HistoryRow, ItemState
from tests.fixtures.events import append, at, listed, observed, project_all, webhook
from tests.fixtures.scenarios import Scenario, check_scenario, scenarios


async def test_views_show_current_status_history_and_order_facts(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await append(pool, webhook(100, [(1, "PAYMENT_RECEIVED"), (2, "PAYMENT_RECEIVED")], at(10)))
    await append(pool, observed(100, [(1, "PAYMENT_RECEIVED", at(5)), (2, "SHIP_READY", at(8))]))
    await append(pool, listed(100, [(1, "BRAND_NEW_STATUS", at(20))]))
    await project_all(pool)
    rows = await admin.fetch(
        "SELECT order_item_id, status, status_updated_at, source, product_name, price "
        "FROM reporting.order_item_status ORDER BY order_item_id"
    )
    assert [tuple(r) for r in rows] == [
        (1, "BRAND_NEW_STATUS", at(20), "list_orders", "product 1", 10000),
        (2, "SHIP_READY", at(8), "get_order", "product 2", 10000),
    ]
    history = await admin.fetch(
        "SELECT status, previous_status, status_updated_at, source FROM reporting.order_item_history "
        "WHERE order_item_id = 1 ORDER BY coalesce(status_updated_at, 'infinity'), position"
    )
    assert [tuple(r) for r in history] == [
        ("PAYMENT_RECEIVED", None, at(5), "get_order"),
        ("BRAND_NEW_STATUS", "PAYMENT_RECEIVED", at(20), "list_orders"),
    ]
    assert await admin.fetchval("SELECT items FROM reporting.status_counts WHERE status = 'SHIP_READY'") == 1
    stay = await admin.fetchrow(
        "SELECT entered_at, left_at, duration FROM reporting.time_in_status "
        "WHERE order_item_id = 1 AND status = 'PAYMENT_RECEIVED'"
    )
    assert (stay["entered_at"], stay["left_at"]) == (at(5), at(20))
    order = await admin.fetchrow("SELECT total_price, seller_shop_name, invoice_no FROM bunsync.orders")
    assert tuple(order) == (12000, "shop", "123")
    # The log (and so no projection) holds no address: it is kept apart by the fetcher (app.privacy.erasure).
    assert await admin.fetchval("SELECT personal_data_erased_at FROM bunsync.orders") is None


async def test_reporting_role_reads_views_but_no_buyer_data(admin: asyncpg.Connection) -> None:
    await admin.execute("SET ROLE bunsync_reporting")
    for view in ("order_item_status", "order_item_history", "sync_health", "status_counts", "time_in_status"):
        await admin.fetch(f"SELECT * FROM reporting.{view} LIMIT 1")
    for secret in ("bunsync.personal_data", "bunsync.orders", "bunsync.order_item_status"):
        try:
            await admin.fetch(f"SELECT * FROM {secret}")
        except asyncpg.InsufficientPrivilegeError:
            continue
        raise AssertionError(f"bunsync_reporting can read {secret}")


async def test_sync_health_has_the_spec_columns_then_parked_events(admin: asyncpg.Connection) -> None:
    row = await admin.fetchrow("SELECT * FROM reporting.sync_health")
    assert list(row.keys()) == [
        "events_total",
        "last_event_at",
        "max_projection_lag",
        "fetch_pending",
        "fetch_dead",
        "unrecognized_events",
        "webhook_conflicts",
        "last_reconcile_at",
        "last_reconcile_ok",
        "parked_events",
    ]
    assert row["events_total"] == 0 and row["parked_events"] == 0


async def _project_scenario(dsn: str, sc: Scenario, item: int) -> tuple[list[ItemState], list[HistoryRow]]:
    """Append the scenario's events for ``item`` and project them one at a time, recording each state."""
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        states: list[ItemState] = []
        order = item * 10
        for seen in sc.observations:
            if seen.kind == "webhook":
                event = webhook(order, [(item, seen.status)], at(seen.at))
            elif seen.kind == "get_order":
                event = observed(order, [(item, seen.status, at(seen.at))])
            else:
                event = listed(order, [(item, seen.status, at(seen.at))])
            await append(pool, event)
            await project_all(pool)
            async with pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT * FROM bunsync.order_item_status WHERE order_item_id = $1", item
                )
            states.append(ItemState(**dict(row)))
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM bunsync.order_item_history WHERE order_item_id = $1", item)
        return states, [HistoryRow(**dict(r)) for r in rows]
    finally:
        await pool.close()


def test_property_holds_on_the_database(database_url: str) -> None:
    items = iter(range(1, 10_000))

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(scenarios(max_changes=4))
    def run(sc: Scenario) -> None:
        states, history = asyncio.run(_project_scenario(database_url, sc, next(items)))
        check_scenario(sc, states, history)

    run()
