"""The facts every event carries (bunsync.event_log.facts, migration 0014) and the two ways the bulk
phases read an event (sql/queries/order_item_status.sql, bunsync_observations).

- No payload makes an append fail: the facts are computed by PostgreSQL on every INSERT, so a value
  they raised on would refuse a webhook (or a fetch's answer) whatever its signature.
- The facts are kept exactly when the event has one item whose every field the checks vouch for.
- Every event reads the same from its facts as from its JSON: the bulk phases' rows (and so the
  rebuilds, fills and the change feed's fill, whose own SQL == Python tests run on top) do not depend
  on which way an event was read.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import events as catalogue
from app.store import event_log
from app.store.event_log import NewEvent
from app.store.sqlfiles import queries
from tests.fixtures.events import append, at, listed, observed, observed_body, webhook
from tests.integration.test_projection_bulk import ODD_TIMES, append_out_of_order, event_sets

_Q = queries("order_item_status")
#: bunsync_observations reading every event from its JSON (its facts ignored), as pg_temp.by_json.
_FAST, _SLOW = "AND (e.facts).item IS NOT NULL", "AND (e.facts).item IS NULL"
ITEM_TYPES = [catalogue.WEBHOOK_STATUS_CHANGED, catalogue.ORDER_OBSERVED, catalogue.ORDER_LISTED]

#: Any JSON value, nested a little: what a forger or a broken API could put anywhere (but NUL and lone
#: surrogates, which jsonb refuses: such bodies are kept as raw bytes before they reach the log,
#: app/webhook/payloads.py).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
    | st.sampled_from([t for t in ODD_TIMES if isinstance(t, str)] + ["2026-01-01T00:00:00+99:99", "٢٠٢٦"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


def by_json() -> str:
    """The bulk functions, plus pg_temp.by_json: bunsync_observations with every event read from its
    JSON (the replacements are checked: a renamed condition must fail here, not pass vacuously)."""
    functions = _Q["bulk_functions"]
    start = functions.index("CREATE OR REPLACE FUNCTION pg_temp.bunsync_observations")
    end = functions.index("$$;", start) + 3
    slow = functions[start:end].replace("pg_temp.bunsync_observations(", "pg_temp.by_json(")
    assert slow.count(_FAST) == 1 and slow.count(_SLOW) == 1
    return functions + ";\n" + slow.replace(_FAST, "AND false").replace(_SLOW, "AND true") + ";"


ROWS = """
SELECT * FROM pg_temp.{name}((SELECT pg_snapshot_xmin(pg_current_snapshot())::text)) AS o
WHERE o.position > $1
ORDER BY o.position, o.ord NULLS FIRST, o.item NULLS FIRST
"""


async def both_ways(admin: asyncpg.Connection, after: int) -> tuple[list[Any], list[Any]]:
    """The observations of the events after position ``after``, read with their facts and from JSON."""
    await admin.execute(by_json())
    async with admin.transaction(readonly=True):
        await admin.execute("SELECT set_config('TimeZone', 'UTC', true)")
        fast = await admin.fetch(ROWS.format(name="bunsync_observations"), after)
        slow = await admin.fetch(ROWS.format(name="by_json"), after)
    return [tuple(r) for r in fast], [tuple(r) for r in slow]


async def head(admin: asyncpg.Connection) -> int:
    return int(await admin.fetchval("SELECT coalesce(max(position), 0) FROM bunsync.event_log"))


def hostile(kind: str, value: Any, where: int) -> NewEvent:
    """An event of type ``kind`` whose skeleton is valid except ``value`` at one place (``where``)."""
    if kind == catalogue.WEBHOOK_STATUS_CHANGED:
        body: Any = json.loads(webhook(7, [(70, "SHIP_READY")], at(1)).payload_json or "")
        item = body["data"]["orderItems"][0]
        targets = [
            (body, None),
            (body, "data"),
            (body["data"], "orderId"),
            (body["data"], "orderItems"),
            (item, "orderItemId"),
            (item, "orderStatus"),
            (item, "pid"),
        ]
    elif kind == catalogue.ORDER_OBSERVED:
        body = observed_body(7, [(70, "SHIP_READY", at(1))])
        item = body["data"]["order"]["orderItems"][0]
        targets = [
            (body, None),
            (body["data"], "order"),
            (body["data"]["order"], "id"),
            (body["data"]["order"], "orderItems"),
            (item, "id"),
            (item, "status"),
            (item, "statusUpdatedAt"),
            (item, "product"),
            (item["product"], "id"),
            (item["product"], "name"),
            (item["product"], "price"),
        ]
    else:
        body = json.loads(listed(7, [(70, "SHIP_READY", at(1))]).payload_json or "")
        item = body["orderItems"][0]
        targets = [
            (body, None),
            (body, "id"),
            (body, "orderItems"),
            (item, "id"),
            (item, "status"),
            (item, "statusUpdatedAt"),
            (item, "product"),
        ]
    parent, key = targets[where % len(targets)]
    if key is None:
        body = value  # the whole payload
    else:
        parent[key] = value
    base = webhook(7, [], at(1)) if kind == catalogue.WEBHOOK_STATUS_CHANGED else observed(7, [])
    return NewEvent(
        stream="order-7",
        type=kind,
        source=base.source,
        idempotency_key=f"hostile:{base.idempotency_key}",
        payload_json=json.dumps(body),
        signed_at=base.signed_at,
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kind=st.sampled_from(ITEM_TYPES), value=JSON, where=st.integers(0, 10))
async def test_no_payload_makes_an_append_fail_and_facts_read_as_json_does(
    pool: asyncpg.Pool, admin: asyncpg.Connection, kind: str, value: Any, where: int
) -> None:
    after = await head(admin)
    async with pool.acquire() as conn:
        result = await event_log.append(conn, [hostile(kind, value, where)])
    assert len(result.inserted) == 1
    fast, slow = await both_ways(admin, after)
    assert fast == slow


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(groups=event_sets(), reorder=st.booleans())
async def test_every_event_reads_the_same_from_its_facts_as_from_its_json(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    groups: tuple[list[NewEvent], list[NewEvent]],
    reorder: bool,
) -> None:
    after = await head(admin)
    first, second = groups
    if reorder:
        await append_out_of_order(pool, first, second)
    else:
        await append(pool, *first, *second)
    fast, slow = await both_ways(admin, after)
    assert fast == slow


async def test_every_odd_time_reads_the_same_both_ways(pool: asyncpg.Pool, admin: asyncpg.Connection) -> None:
    """Times that are implausible (the item is left to Python, its time not returned), unreadable or
    odd, in facts and in JSON, for Get Order and List Orders, and unsigned webhooks."""
    after = await head(admin)
    odd = []
    for n, time in enumerate(ODD_TIMES):
        body = observed_body(4, [(40 + n, "SHIP_READY", at(1))])
        body["data"]["order"]["orderItems"][0]["statusUpdatedAt"] = time
        listing = json.loads(listed(4, [(60 + n, "SHIP_READY", at(1))]).payload_json or "")
        listing["orderItems"][0]["statusUpdatedAt"] = time
        odd += [
            observed(4, [], body=body),
            NewEvent(**{**msgspec.structs.asdict(listed(4, [])), "payload_json": json.dumps(listing)}),
        ]
    unsigned = msgspec.structs.replace(webhook(4, [(99, "SHIP_READY")], at(1)), signed_at=None)
    await append(pool, *odd, unsigned)
    fast, slow = await both_ways(admin, after)
    assert fast == slow
    unsure = [r for r in fast if r[12]]
    assert len(unsure) >= 8, "implausible times (4 of them, in both types) are left to Python"


@pytest.mark.parametrize(
    ("event", "kept"),
    [
        (webhook(3, [(30, "SHIP_READY")], at(1)), (30, "SHIP_READY", None, 530, None, None, 3)),
        (
            observed(3, [(30, "IN_TRANSIT", at(2))]),
            (30, "IN_TRANSIT", "2026-01-01T00:00:02Z", 530, "product 30", 10000, 3),
        ),
        (listed(3, [(30, "SHIP_READY", None)]), (30, "SHIP_READY", None, 530, None, None, 3)),
        # Two items, none, or one field not vouched for: read the long way.
        (webhook(3, [(30, "SHIP_READY"), (31, "SHIP_READY")], at(1)), None),
        (observed(3, []), None),
        (
            observed(
                3,
                [(30, "IN_TRANSIT", at(2))],
                body={
                    "data": {
                        "order": {
                            "id": 3,
                            "orderItems": [
                                {"id": 30, "status": "IN_TRANSIT", "statusUpdatedAt": "yesterday"}
                            ],
                        }
                    }
                },
            ),
            None,
        ),
        (
            observed(
                3,
                [(30, "IN_TRANSIT", at(2))],
                body={"data": {"order": {"id": 3, "orderItems": [{"id": 30, "status": None}]}}},
            ),
            None,
        ),
    ],
)
async def test_facts_are_kept_for_one_item_whose_every_field_is_vouched_for(
    pool: asyncpg.Pool, admin: asyncpg.Connection, event: NewEvent, kept: tuple[Any, ...] | None
) -> None:
    await append(pool, event)
    facts = await admin.fetchrow(
        "SELECT (facts).* FROM bunsync.event_log WHERE idempotency_key = $1", event.idempotency_key
    )
    assert facts is not None
    assert (tuple(facts) if facts["item"] is not None else None) == kept
