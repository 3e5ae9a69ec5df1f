"""The rebuild's bulk phases (SQL) agree with the Python rules on every event set, and do the work.

Each rule lives twice: in projections/rules.py (the live projector: apply_status, apply_history) and
in a bulk_build (the rebuild's bulk phase of order_item_status, of order_item_history). The property:
for random sets of webhooks (unsigned, re-signed late, duplicated, signed before the API time of
their status), Get Order and List Orders results (stale, without a time, an item twice, the same
time seen again), malformed payloads, and transactions that commit out of position order, a rebuild
(bulk phase) gives exactly the rows and parked events that the live projector (Python, event by
event) gave.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import events as catalogue
from app.store import event_log
from app.store.event_log import NewEvent
from projections import bulk as bulk_module
from projections import events
from projections import rebuild as rebuild_module
from projections.rebuild import rebuild
from tests.fixtures.events import at, listed, observed, observed_body, project_all, table, webhook

STATUS = [
    "SELECT * FROM bunsync.order_item_status",
    "SELECT projection, position, events_read FROM bunsync.projection_checkpoints "
    "WHERE projection = 'order_item_status'",
    "SELECT projection, position, error FROM bunsync.parked_events WHERE projection = 'order_item_status'",
    "SELECT position, order_item_id, field, order_id, problem, recorded_at FROM bunsync.item_anomalies",
]
HISTORY = [
    "SELECT * FROM bunsync.order_item_history",
    "SELECT projection, position, events_read FROM bunsync.projection_checkpoints "
    "WHERE projection = 'order_item_history'",
    "SELECT projection, position, error FROM bunsync.parked_events WHERE projection = 'order_item_history'",
]
ORDERS = [
    "SELECT * FROM bunsync.orders",
    "SELECT projection, position, events_read FROM bunsync.projection_checkpoints "
    "WHERE projection = 'orders'",
    "SELECT projection, position, error FROM bunsync.parked_events WHERE projection = 'orders'",
    "SELECT * FROM bunsync.order_anomalies",
]
SNAPSHOTS = {"order_item_status": STATUS, "order_item_history": HISTORY, "orders": ORDERS}
STATUSES = ["PAYMENT_RECEIVED", "SHIP_READY", "IN_TRANSIT", "UNKNOWN_NEW_STATUS"]

#: Times msgspec refuses (an anomaly: read as absent), or reads although the bulk SQL does not (the
#: item is folded in Python), or reads like the SQL does (a leap day, a time without an offset), and
#: implausible ones: far future (year 10000 in UTC), before 2000, a little or far after recording.
ODD_TIMES = [
    "2024-02-29T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-01-01T00:00:07",
    "2026-01-01 00:00:07Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:30:00-01:00",
    "0001-01-01T00:30:00+01:00",
    "1970-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999999Z",
    "2999-01-01T00:00:00+13:59",
    # An hour after recording (tolerance: 15 minutes); the tests run now, so it is computed now.
    (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    "yesterday",
]


def _odd(order: int, item: int, kind: int, time: str) -> dict[str, Any]:
    body = observed_body(order, [(item, "SHIP_READY", at(3))])
    entry = body["data"]["order"]["orderItems"][0]
    if kind == 0:
        entry["statusUpdatedAt"] = time
    elif kind == 1:
        entry["id"] = 1.5
    elif kind == 2:
        body["data"]["order"]["id"] = str(order)
    elif kind == 3:
        entry["product"] = [entry["product"]]
    elif kind == 4:
        entry["status"] = 7 if time < "2026" else "S" * 10_001  # not a string; over msgspec's limit
    elif kind == 5:  # one bad product field: an anomaly, the status still counts
        entry["product"]["price"] = 2**70
    elif kind == 6:
        entry["product"]["id"] = "not a number" if time < "2026" else 1.5
    elif kind == 7:
        entry["product"]["name"] = {"not": "text"}
    elif kind == 8:  # a flaw in a part the status projection does not read: the status still counts
        body["data"]["seller"] = {"id": "not a number"}
        body["data"]["delivery"] = {"shipDoneAt": "yesterday"}
    else:  # the order's own fields (projection orders): read as absent with an anomaly, or as they are
        _odd_order(body["data"], kind, time)
    return body


def _odd_order(data: dict[str, Any], kind: int, time: str) -> None:
    order = data["order"]
    if kind == 9:
        order["totalPrice"] = 2**63 if time < "2026" else 1.5  # past bigint; not an integer
        order.pop("deliveryPrice")
    elif kind == 10:
        order["orderDoneAt"] = time
        order["approvedAt"] = None
    elif kind == 11:
        data["seller"] = [data["seller"]] if time < "2026" else {"id": None, "shopName": "S" * 10_001}
    elif kind == 12:
        data["delivery"] = {"invoice": "123", "shipDoneAt": time} if time < "2026" else None
    elif kind == 13:
        data["delivery"]["invoice"] = {"no": 123, "companyCode": None}
        data["delivery"]["shipDoneAt"] = time
    else:  # a newer observation without some fields: they are absent, not kept from an older one
        data.pop("seller")
        data["delivery"] = {"shipDoneAt": time}
        order["totalPrice"] = 2**62


_erasures = itertools.count()


def erased(order: int, reason: str) -> NewEvent:
    """An ``order.personal_data_erased`` event (a reason that is not a text: the event is parked)."""
    body: dict[str, Any] = {"orderId": order, "reason": reason if reason != "bad" else 7, "erased": []}
    return NewEvent(
        stream=f"order-{order}",
        type=catalogue.PERSONAL_DATA_ERASED,
        source=catalogue.SOURCE_BUNSYNC,
        idempotency_key=f"erased:{next(_erasures)}",
        payload_json=json.dumps(body),
    )


def skew(order: int, item: int, t: int) -> list[NewEvent]:
    """Webhooks of one status signed before and after its API time (one "early": clock skew, or a
    change the fetches missed): the case of apply_history whose result depends on the order the
    webhooks are read in."""
    return [
        webhook(order, [(item, "SHIP_READY")], at(-1)),
        webhook(order, [(item, "SHIP_READY")], at(t + 1)),
        listed(order, [(item, "SHIP_READY", at(t))]),
    ]


@st.composite
def event_sets(draw: st.DrawFn) -> tuple[list[NewEvent], list[NewEvent]]:
    """Two groups of events for 3 items of one order (or, narrowed, 1 item and 1 status, that of the
    odd payloads, seen again and again by webhooks and fetches, after a :func:`skew` in any order);
    the second group commits first when reordered."""
    order = draw(st.integers(1, 10**9))
    narrow = draw(st.booleans())
    items = [order * 10 + k for k in range(1 if narrow else 3)]
    statuses = ["SHIP_READY"] if narrow else STATUSES
    out: list[NewEvent] = []
    if narrow:
        out.extend(draw(st.permutations(skew(order, items[0], draw(st.integers(0, 6))))))
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["webhook", "unsigned", "get_order", "list_orders", "odd", "erased"]))
        item = draw(st.sampled_from(items))
        status = draw(st.sampled_from(statuses))
        t = at(draw(st.integers(0, 6)))
        maybe_t = draw(st.sampled_from([t, t, None]))
        if kind == "webhook":
            out.append(webhook(order, [(item, status)], t))
        elif kind == "unsigned":
            out.append(msgspec.structs.replace(webhook(order, [(item, status)], t), signed_at=None))
        elif kind == "get_order":
            other = draw(st.sampled_from(items))  # may be the same item again
            out.append(
                observed(order, [(item, status, maybe_t), (other, draw(st.sampled_from(STATUSES)), t)])
            )
        elif kind == "list_orders":
            out.append(listed(order, [(item, status, maybe_t)]))
        elif kind == "erased":
            out.append(erased(order, draw(st.sampled_from(["request", "retention", "bad"]))))
        else:
            body = _odd(order, item, draw(st.integers(0, 14)), draw(st.sampled_from(ODD_TIMES)))
            out.append(observed(order, [], body=body))
    split = draw(st.integers(0, len(out)))
    return out[:split], out[split:]


async def append_out_of_order(pool: asyncpg.Pool, first: list[NewEvent], second: list[NewEvent]) -> None:
    """``first`` gets the older transaction id but the later positions: the commit-safe reader
    reads it before ``second``, although ``second`` is earlier in position order."""
    async with pool.acquire() as a, pool.acquire() as b, a.transaction():
        await a.fetchval("SELECT pg_current_xact_id()")
        if second:
            await event_log.append(b, second)
        if first:
            await event_log.append(a, first)


async def status_snapshot(
    admin: asyncpg.Connection, projection: str = "order_item_status"
) -> list[list[tuple[Any, ...]]]:
    return [await table(admin, q) for q in SNAPSHOTS[projection]]


async def rebuild_noting_what_python_folds(
    monkeypatch: pytest.MonkeyPatch, database_url: str, projection: str
) -> Any:
    """Rebuild ``projection``; return what its bulk phase left to Python (``bulk._Left``: items,
    positions)."""
    real, seen = bulk_module._fold, []

    async def spy(conn: asyncpg.Connection, folder: Any, projection: Any, left: Any) -> None:
        seen.append(left)
        await real(conn, folder, projection, left)

    monkeypatch.setattr(bulk_module, "_fold", spy)
    await rebuild(database_url, [projection])
    assert len(seen) == 1, "one bulk phase, one fold"
    return seen[0]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(groups=event_sets(), reorder=st.booleans())
@pytest.mark.parametrize("projection", list(SNAPSHOTS))
async def test_bulk_sql_equals_python_rule(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    database_url: str,
    projection: str,
    groups: tuple[list[NewEvent], list[NewEvent]],
    reorder: bool,
) -> None:
    # Examples share the database: each adds its own order's events, the comparison covers them all.
    first, second = groups
    if reorder:
        await append_out_of_order(pool, first, second)
    else:
        async with pool.acquire() as conn:
            await event_log.append(conn, [*first, *second])
    await project_all(pool, batch_size=7)
    live = await status_snapshot(admin, projection)
    await rebuild(database_url, [projection])
    assert await status_snapshot(admin, projection) == live


async def test_bulk_phase_reads_the_whole_log_and_the_engine_only_catches_up(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ordered = [
        webhook(1, [(10, "SHIP_READY")], at(5)),
        observed(1, [(10, "SHIP_READY", at(4)), (11, "X", at(4))]),
    ]
    await append_out_of_order(
        pool, [listed(2, [(20, "IN_TRANSIT", at(9))])], [webhook(2, [(20, "A")], at(10))]
    )
    async with pool.acquire() as conn:
        await event_log.append(conn, ordered)
        await event_log.append(conn, [observed(3, [], body=json.loads('{"data": {"order": {"id": "x"}}}'))])
    await project_all(pool)
    live = await status_snapshot(admin)
    real = rebuild_module.process_batch
    by_engine = 0

    async def counting(*args: Any, **kwargs: Any) -> int:
        nonlocal by_engine
        n = await real(*args, **kwargs)
        by_engine += n
        return n

    monkeypatch.setattr(rebuild_module, "process_batch", counting)
    await rebuild(database_url, ["order_item_status"])
    assert await status_snapshot(admin) == live
    assert by_engine == 0  # every event was read by the bulk phase (the parked one included)
    assert live[2] and live[2][0][2].startswith("ValidationError")
    assert events.ORDER_OBSERVED  # the poison event is an order.observed


async def test_live_projector_keeps_up_while_the_bulk_phase_reads(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk statement runs read-only (no transaction id): commit-safe readers are not held back."""
    async with pool.acquire() as conn:
        await event_log.append(conn, [webhook(1, [(10, "SHIP_READY")], at(5))])
    real = bulk_module._write
    seen: list[str | None] = []

    async def write_and_look(*args: Any, **kwargs: Any) -> None:
        if not seen:  # in the middle of the bulk phase: a new event reaches the live view
            async with pool.acquire() as conn:
                await event_log.append(conn, [webhook(2, [(20, "IN_TRANSIT")], at(6))])
            await project_all(pool)
            seen.append(
                await admin.fetchval("SELECT status FROM bunsync.order_item_status WHERE order_item_id = 20")
            )
        await real(*args, **kwargs)

    monkeypatch.setattr(bulk_module, "_write", write_and_look)
    await rebuild(database_url, ["order_item_status"])
    assert seen == ["IN_TRANSIT"]
    assert await admin.fetchval("SELECT count(*) FROM reporting.order_item_status") == 2


async def test_bulk_rows_reach_the_build_table_verbatim(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str
) -> None:
    """The bulk phase passes its rows on as COPY text: every character a payload may hold survives."""
    names = ["tab\there", "new\nline", "back\\slash \\N", "\\.", "quote \" ' ,{}", "é 한국어 😀", "", " "]
    bodies = []
    for k, name in enumerate(names):
        body = observed_body(100 + k, [(1000 + k, "SHIP_READY\t\\N", at(3))])
        body["data"]["order"]["orderItems"][0]["product"]["name"] = name
        bodies.append(observed(100 + k, [], body=body))
    async with pool.acquire() as conn:
        await event_log.append(conn, bodies)
    await project_all(pool)
    live = await status_snapshot(admin)
    await rebuild(database_url, ["order_item_status"])
    assert await status_snapshot(admin) == live
    shown = await admin.fetch(
        "SELECT product_name, status FROM bunsync.order_item_status ORDER BY order_item_id"
    )
    assert [(r["product_name"], r["status"]) for r in shown] == [(n, "SHIP_READY\t\\N") for n in names]


async def test_history_bulk_phase_leaves_to_python_only_what_depends_on_the_order(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each case of apply_history in set terms: the SQL writes it, except the order-dependent one."""
    s = "SHIP_READY"
    async with pool.acquire() as conn:
        await event_log.append(
            conn,
            [
                # No API observation of the status: the lowest-position webhook.
                webhook(1, [(10, s)], at(9)),
                webhook(1, [(10, s)], at(3)),
                # Webhooks signed at or after the API time: accounted for by the API row.
                webhook(2, [(20, s)], at(5)),
                observed(2, [(20, s, at(4))]),
                webhook(2, [(20, s)], at(4)),
                # A webhook signed before every API time of its status: a change of its own, kept; the
                # same API time seen twice: one row, the first sighting.
                webhook(3, [(30, s)], at(1)),
                listed(3, [(30, s, at(4))]),
                observed(3, [(30, s, at(4)), (30, s, at(4))]),
                # An API observation without a time accounts for every webhook of its status.
                webhook(4, [(40, s)], at(1)),
                listed(4, [(40, s, None)]),
                # One webhook before the API time, one after: the result depends on the order the
                # fold reads them in (here the later-signed one takes the row, then goes): Python.
                webhook(5, [(50, s)], at(8)),
                webhook(5, [(50, s)], at(1)),
                observed(5, [(50, s, at(4))]),
            ],
        )
    await project_all(pool)
    live = await status_snapshot(admin, "order_item_history")
    left = await rebuild_noting_what_python_folds(monkeypatch, database_url, "order_item_history")
    assert await status_snapshot(admin, "order_item_history") == live
    assert left.items == {50}
    rows = await admin.fetch(
        "SELECT order_item_id, source, signed_at, status_updated_at FROM bunsync.order_item_history "
        "ORDER BY order_item_id, position"
    )
    assert [(r["order_item_id"], r["source"], r["signed_at"] or r["status_updated_at"]) for r in rows] == [
        (10, "webhook", at(9)),
        (20, "get_order", at(4)),
        (30, "webhook", at(1)),
        (30, "list_orders", at(4)),
        (40, "list_orders", None),
        (50, "get_order", at(4)),
    ]


async def test_orders_bulk_phase_reads_every_field_as_python_does(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every odd field and time of every kind, each in an order of its own, then seen again by a clean
    observation (older or newer) and erased (before, after, twice): the rebuild's rows, anomalies and
    parked events are the live projector's, and only the odd events and erasures were left to Python."""
    new: list[NewEvent] = []
    odd_positions_expected = 0
    for n, (kind, time) in enumerate((k, t) for k in range(15) for t in ODD_TIMES):
        order = 7_000_000 + n
        if n % 3 == 0:
            new.append(observed(order, [(order * 10, "SHIP_READY", at(1))]))  # older, clean
        if n % 4 == 0:
            new.append(erased(order, "request"))
        new.append(observed(order, [], body=_odd(order, order * 10, kind, time)))
        odd_positions_expected += 1
        if n % 3 == 1:
            new.append(observed(order, [(order * 10, "SHIP_READY", at(2))]))  # newer, clean
        if n % 5 == 0:
            new.append(erased(order, "retention" if n % 2 else "bad"))
    async with pool.acquire() as conn:
        await event_log.append(conn, new)
    await project_all(pool)
    live = await status_snapshot(admin, "orders")
    assert live[3], "some fields were read as anomalies"
    assert live[2], "some events were parked"
    left = await rebuild_noting_what_python_folds(monkeypatch, database_url, "orders")
    assert await status_snapshot(admin, "orders") == live
    erasures = sum(1 for e in new if e.type == catalogue.PERSONAL_DATA_ERASED)
    # The clean observations were written by the SQL; at most the odd ones and the erasures by Python.
    assert 0 < len(left.positions) <= odd_positions_expected + erasures
