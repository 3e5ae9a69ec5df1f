"""Projection ``orders``: one bad order-level field is NULL and an anomaly, never a parked observation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from projections.rebuild import rebuild
from tests.fixtures.events import append, at, observed, observed_body, project_all, table

ORDER = 4242
#: The orders row the factory's Get Order body gives (order_id, then the fact columns).
COLUMNS = (
    "total_price, total_product_price, delivery_price, order_done_at, approved_at, seller_id, "
    "seller_shop_name, invoice_no, invoice_company_code, invoice_company_name, ship_done_at"
)
GOOD = {
    "total_price": 12000,
    "total_product_price": 10000,
    "delivery_price": 2000,
    "order_done_at": datetime(2026, 1, 1, tzinfo=UTC),
    "approved_at": datetime(2025, 12, 31, 15, 0, 1, 250000, tzinfo=UTC),
    "seller_id": 9,
    "seller_shop_name": "shop",
    "invoice_no": "123",
    "invoice_company_code": "04",
    "invoice_company_name": "CJ",
    "ship_done_at": datetime(2026, 1, 2, tzinfo=UTC),
}


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, key = path.split(".")
    node = body["data"]
    for part in parents:
        node = node[part]
    node[key] = value


#: (what is wrong, where in data, the bad value, the columns that become NULL, the anomaly's field)
CASES = [
    ("price out of bigint", "order.totalPrice", 2**70, ["total_price"], "order.totalPrice"),
    ("string for an integer", "order.deliveryPrice", "2000", ["delivery_price"], "order.deliveryPrice"),
    ("not a time", "delivery.shipDoneAt", "yesterday", ["ship_done_at"], "delivery.shipDoneAt"),
    (
        "year 10000 in UTC",
        "order.orderDoneAt",
        "9999-12-31T23:30:00-01:00",
        ["order_done_at"],
        "order.orderDoneAt",
    ),
    ("far future", "order.approvedAt", "2999-01-01T00:00:00Z", ["approved_at"], "order.approvedAt"),
    ("before 2000", "delivery.shipDoneAt", "1970-01-01T00:00:00Z", ["ship_done_at"], "delivery.shipDoneAt"),
    ("seller not an object", "seller", "shop", ["seller_id", "seller_shop_name"], "seller"),
    ("seller id a float", "seller.id", 9.5, ["seller_id"], "seller.id"),
    ("shop name not text", "seller.shopName", {"a": 1}, ["seller_shop_name"], "seller.shopName"),
    (
        "invoice not an object",
        "delivery.invoice",
        [1, 2],
        ["invoice_no", "invoice_company_code", "invoice_company_name"],
        "delivery.invoice",
    ),
    ("invoice number too long", "delivery.invoice.no", "9" * 10_001, ["invoice_no"], "delivery.invoice.no"),
    (
        "delivery not an object",
        "delivery",
        7,
        ["invoice_no", "invoice_company_code", "invoice_company_name", "ship_done_at"],
        "delivery",
    ),
]


def _body(path: str | None = None, value: Any = None) -> dict[str, Any]:
    body = observed_body(ORDER, [(1, "IN_TRANSIT", at(10))])
    body["data"]["delivery"]["shipDoneAt"] = "2026-01-02T00:00:00Z"
    if path is not None:
        _set(body, path, value)
    return body


async def _row(admin: asyncpg.Connection) -> dict[str, Any]:
    row = await admin.fetchrow(f"SELECT {COLUMNS} FROM bunsync.orders WHERE order_id = $1", ORDER)
    assert row is not None
    return dict(row)


async def _anomalies(admin: asyncpg.Connection) -> list[tuple[Any, ...]]:
    return await table(
        admin, "SELECT position, order_id, field, problem, recorded_at FROM bunsync.order_anomalies"
    )


async def _parked(admin: asyncpg.Connection) -> int:
    return int(await admin.fetchval("SELECT count(*) FROM bunsync.parked_events"))


async def test_a_clean_observation_has_every_fact_and_no_anomaly(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await append(pool, observed(ORDER, [], body=_body()))
    await project_all(pool)
    assert await _row(admin) == GOOD
    assert await _anomalies(admin) == []


@pytest.mark.parametrize(("case", "path", "value", "nulled", "field"), CASES, ids=[c[0] for c in CASES])
async def test_one_bad_field_is_null_and_an_anomaly_and_nothing_is_parked(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    case: str,
    path: str,
    value: Any,
    nulled: list[str],
    field: str,
) -> None:
    await append(pool, observed(ORDER, [], body=_body(path, value)))
    await project_all(pool)
    assert await _parked(admin) == 0
    assert await _row(admin) == {**GOOD, **dict.fromkeys(nulled)}
    [(position, order_id, anomaly_field, problem, recorded_at)] = await _anomalies(admin)
    logged = await admin.fetchrow("SELECT position, recorded_at FROM bunsync.event_log")
    assert (position, order_id, anomaly_field, recorded_at) == (
        logged["position"],
        ORDER,
        field,
        logged["recorded_at"],
    )
    assert str(value)[:4] not in problem  # the kind of problem, never the value
    # The item's status came with the same observation and counts.
    status = await admin.fetchval("SELECT status FROM bunsync.order_item_status WHERE order_item_id = 1")
    assert status == "IN_TRANSIT"


async def test_only_an_unusable_order_id_parks_the_observation(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    bad_id = _body()
    bad_id["data"]["order"]["id"] = 2**70
    await append(pool, observed(ORDER, [], body=bad_id))
    await project_all(pool)
    errors = await admin.fetchval(
        "SELECT array_agg(projection ORDER BY projection) FROM bunsync.parked_events"
    )
    assert "orders" in errors
    assert await admin.fetchval("SELECT count(*) FROM bunsync.orders") == 0
    assert await _anomalies(admin) == []


async def test_a_later_clean_observation_fills_the_field_and_the_anomaly_stays(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await append(pool, observed(ORDER, [], body=_body("order.totalPrice", 2**70)))
    await append(pool, observed(ORDER, [], body=_body()))
    await project_all(pool)
    assert await _row(admin) == GOOD
    assert [a[2] for a in await _anomalies(admin)] == ["order.totalPrice"]


async def test_rebuild_reproduces_the_rows_and_the_anomalies(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str
) -> None:
    bodies = [_body(path, value) for _, path, value, _, _ in CASES]
    everything = copy.deepcopy(_body())
    for _, path, value, _, _ in CASES[:6]:  # several bad fields in one observation: one anomaly each
        _set(everything, path, value)
    for n, body in enumerate([*bodies, everything]):
        body["data"]["order"]["id"] = ORDER + n
        await append(pool, observed(ORDER + n, [], body=body))
    await project_all(pool, batch_size=5)
    snapshot = "SELECT * FROM bunsync.orders"
    live = (await table(admin, snapshot), await _anomalies(admin))
    assert len(live[0]) == len(CASES) + 1 and len(live[1]) == len(CASES) + 5  # CASES[:6] has 5 fields
    await admin.execute("TRUNCATE bunsync.orders, bunsync.order_anomalies")
    await rebuild(database_url, ["orders"], batch_size=4)
    assert (await table(admin, snapshot), await _anomalies(admin)) == live
    assert await _parked(admin) == 0
    # The swapped-in table serves as before: the service role writes it.
    await admin.execute("SET ROLE bunsync_service")
    await admin.execute("DELETE FROM bunsync.order_anomalies WHERE order_id = $1", ORDER)
