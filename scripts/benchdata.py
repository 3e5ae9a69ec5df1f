"""The event log both set-based benchmarks load, and the SQL ceiling they are measured against.

Shared by scripts/bench_rebuild.py (``bunsync rebuild``) and scripts/bench_catchup.py (the live
projectors from checkpoint 0), so both ratios have the same denominator:

- :func:`load`: migrate, then COPY N synthetic events over M items into ``bunsync.event_log`` (round r
  touches every item once: webhooks, Get Order observations, some stale, and List Orders rows), then
  vacuum and analyse it, as autovacuum keeps a live log;
- :func:`ceiling`: one ``INSERT ... SELECT DISTINCT ON (item) ... ORDER BY item, position DESC``
  building a current-status table (``bench_ceiling``) in SQL alone: the set-based build to beat;
- :func:`projection_cluster`: a throwaway cluster tuned for throughput, not durability.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchlib
from benchlib import ROOT

sys.path.insert(0, str(ROOT))

from app.store import db, migrations

STATUSES = ["PAYMENT_RECEIVED", "SHIP_READY", "IN_TRANSIT", "DELIVERY_COMPLETED", "PURCHASE_CONFIRM"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)

CEILING = """
CREATE TABLE bench_ceiling (LIKE bunsync.order_item_status);
INSERT INTO bench_ceiling
    (order_item_id, order_id, status, status_updated_at, source, last_position, synced_at)
SELECT DISTINCT ON (i.item) i.item, i.order_id, i.status, i.updated_at, e.source, e.position, e.recorded_at
FROM bunsync.event_log AS e
CROSS JOIN LATERAL (
    SELECT coalesce((x ->> 'orderItemId'), (x ->> 'id'))::bigint AS item,
           coalesce(e.payload -> 'data' ->> 'orderId', e.payload -> 'data' -> 'order' ->> 'id',
                    e.payload ->> 'id')::bigint AS order_id,
           coalesce(x ->> 'orderStatus', x ->> 'status') AS status,
           (x ->> 'statusUpdatedAt')::timestamptz AS updated_at
    FROM jsonb_array_elements(coalesce(e.payload -> 'data' -> 'orderItems',
                                       e.payload -> 'data' -> 'order' -> 'orderItems',
                                       e.payload -> 'orderItems')) AS x
) AS i
ORDER BY i.item, e.position DESC;
"""


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def records(n_events: int, n_items: int, rng: random.Random) -> Iterator[tuple[str | datetime | None, ...]]:
    """Round r touches every item once (item = i % n_items): webhooks, Get Order (sometimes stale),
    List Orders; statusUpdatedAt moves forward with the round."""
    for i in range(n_events):
        item, rnd = i % n_items + 1, i // n_items
        order = (item + 1) // 2
        status = STATUSES[rnd % len(STATUSES)]
        t = T0 + timedelta(minutes=rnd * 10 + rng.random())
        kind = rnd % 3
        if kind == 0:
            payload: dict[str, object] = {
                "eventId": f"e{i}",
                "eventType": "order.status.changed",
                "payloadVersion": "v1",
                "data": {
                    "orderId": order,
                    "orderItems": [{"orderItemId": item, "pid": item, "orderStatus": status}],
                },
            }
            yield (
                f"order-{order}",
                "webhook.order_status_changed.v1",
                json.dumps(payload),
                "webhook",
                t + timedelta(seconds=5),
                t,
                f"webhook:e{i}",
            )
        elif kind == 1:
            stale = rng.random() < 0.1
            seen = t - timedelta(minutes=20) if stale else t
            payload = {
                "data": {
                    "order": {
                        "id": order,
                        "totalPrice": 1000,
                        "orderItems": [
                            {
                                "id": item,
                                "status": status,
                                "statusUpdatedAt": iso(seen),
                                "product": {"id": item, "name": f"product {item}", "price": 1000},
                            }
                        ],
                    },
                    "seller": {"id": 1, "shopName": "s"},
                    "delivery": None,
                }
            }
            yield (f"order-{order}", "order.observed", json.dumps(payload), "get_order", None, None, f"g{i}")
        else:
            payload = {
                "id": order,
                "orderItems": [
                    {"id": item, "status": status, "statusUpdatedAt": iso(t), "product": {"id": item}}
                ],
            }
            yield (f"order-{order}", "order.listed", json.dumps(payload), "list_orders", None, None, f"l{i}")


async def load(dsn: str, n_events: int, n_items: int) -> float:
    async with db.admin_connection(dsn) as conn:
        await migrations.migrate(conn)
        started = time.monotonic()
        rng = random.Random(1)
        rows = records(n_events, n_items, rng)
        while chunk := [r for _, r in zip(range(100_000), rows, strict=False)]:
            await conn.copy_records_to_table(
                "event_log",
                schema_name="bunsync",
                records=chunk,
                columns=[
                    "stream",
                    "type",
                    "payload",
                    "source",
                    "signed_at",
                    "received_at",
                    "idempotency_key",
                ],
            )
        # A log in its steady state, as autovacuum keeps a live one: vacuumed (hint bits set, pages
        # all-visible) and analysed. Otherwise autovacuum works through the fresh million rows during
        # the first measurements (rebuilds measured +2 to +5 s, or a swap held back behind it) and the
        # first full scan, the ceiling's, pays for writing every page's hint bits.
        await conn.execute("VACUUM (ANALYZE) bunsync.event_log")
        return time.monotonic() - started


async def ceiling(dsn: str) -> float:
    async with db.admin_connection(dsn) as conn:
        started = time.monotonic()
        async with conn.transaction():
            await conn.execute(CEILING)
        return time.monotonic() - started


def projection_cluster(workdir: Path) -> benchlib.Cluster:
    """A throwaway cluster for the set-based benchmarks: the throughput of the projection code, not of
    the disk, so durability is off (fsync, synchronous_commit) and WAL may grow."""
    return benchlib.Cluster(
        workdir,
        settings="-c fsync=off -c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=4GB",
    )


def load_and_ceiling(dsn: str, events: int, items: int) -> tuple[float, float]:
    """Load the log, then time the ceiling; print both; return (load seconds, ceiling events/s)."""
    loaded = asyncio.run(load(dsn, events, items))
    print(f"loaded {events:,} events over {items:,} items with COPY in {loaded:.1f}s", flush=True)
    ceiling_s = asyncio.run(ceiling(dsn))
    rate = events / ceiling_s
    print(f"ceiling (INSERT ... SELECT DISTINCT ON): {ceiling_s:.1f}s, {rate:,.0f} events/s", flush=True)
    return loaded, rate
