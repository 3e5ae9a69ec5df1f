"""Benchmark `bunsync rebuild order_item_status` against a set-based SQL ceiling on a throwaway cluster.

Usage: .venv/bin/python scripts/bench_rebuild.py [--events N] [--items N]
(defaults: 1,000,000 events over 100,000 items; scripts/bench.py runs it).

Starts a throwaway PostgreSQL cluster, loads N events over M items with COPY, then measures in the
same run (a) the ceiling: one INSERT ... SELECT DISTINCT ON (item) ... ORDER BY item, position DESC
building a current-status table in SQL alone, and (b) the real rebuild of order_item_status (in a
child process, so its peak RSS is its own), and prints the events/s ratio and peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchlib
from benchlib import ROOT

benchlib.reexec_in_venv(__file__)
sys.path.insert(0, str(ROOT))

from app.store import db, migrations  # noqa: E402

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

CHILD = """
import asyncio, json, resource, sys, threading, time
sys.path.insert(0, sys.argv[2])
from projections.rebuild import rebuild
samples = []
def sample():
    while True:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    samples.append((time.monotonic(), int(line.split()[1]) // 1024))
        time.sleep(0.25)
threading.Thread(target=sample, daemon=True).start()
started = time.monotonic()
asyncio.run(rebuild(sys.argv[1], ['order_item_status']))
seconds = time.monotonic() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
q = [s[1] for s in samples]
print(json.dumps({"seconds": seconds, "peak_mb": peak,
                  "rss_mb_at_quarters": [q[len(q) * k // 4] for k in range(1, 4)] + [q[-1]] if q else []}))
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
        await conn.execute("ANALYZE bunsync.event_log")
        return time.monotonic() - started


async def ceiling(dsn: str) -> float:
    async with db.admin_connection(dsn) as conn:
        started = time.monotonic()
        async with conn.transaction():
            await conn.execute(CEILING)
        return time.monotonic() - started


async def check_same(dsn: str) -> int:
    """Items whose status differs between the ceiling and the rebuild (the rule differs on stale
    Get Order results: the ceiling takes the last event, the rebuild the newest API time)."""
    async with db.admin_connection(dsn) as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM bench_ceiling c JOIN bunsync.order_item_status s USING (order_item_id) "
                "WHERE c.status <> s.status"
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bunsync-bench-"))
    # Throughput of the rebuild itself, not of the disk: durability off on this throwaway cluster.
    cluster = benchlib.Cluster(
        base, settings="-c fsync=off -c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=4GB"
    )
    cluster.start()
    dsn = cluster.dsn("postgres")
    try:
        loaded = asyncio.run(load(dsn, args.events, args.items))
        print(f"loaded {args.events:,} events over {args.items:,} items with COPY in {loaded:.1f}s")
        ceiling_s = asyncio.run(ceiling(dsn))
        ceiling_rate = args.events / ceiling_s
        print(f"ceiling (INSERT ... SELECT DISTINCT ON): {ceiling_s:.1f}s, {ceiling_rate:,.0f} events/s")
        child = subprocess.run(
            [sys.executable, "-c", CHILD, dsn, str(ROOT)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rate = args.events / result["seconds"]
        print(
            f"rebuild order_item_status: {result['seconds']:.1f}s, {rate:,.0f} events/s, "
            f"peak RSS {result['peak_mb']} MB (RSS at 1/4, 1/2, 3/4, end: {result['rss_mb_at_quarters']} MB)"
        )
        print(
            f"ratio rebuild / ceiling: {rate / ceiling_rate:.2f} (target >= 0.5); "
            f"peak memory {result['peak_mb']} MB (target < 300 MB)"
        )
        differ = asyncio.run(check_same(dsn))
        print(f"items where the ceiling's last-event status differs from the rule's: {differ:,}")
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
