#!/usr/bin/env python3
"""Benchmark: the console's overview page renders in < 200 ms with 1,000,000 events in the log.

Starts a throwaway PostgreSQL cluster (loopback), migrates it, loads N events (default 1,000,000:
webhooks received over the last two hours, Get Order observations, a few unrecognised ones) with one
INSERT ... SELECT, marks the projections caught up (as on a healthy service), adds dead fetches, parked
events and reconcile passes, then renders GET / through the real operator application in-process
(Litestar over ASGI, the real pool) 30 times after 5 warm-ups. Prints the median and p95, and the median
as a ratio to the 200 ms target: `console overview: median X ms, p95 Y ms, ratio Z vs 200 ms target`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib

TARGET_MS = 200.0
LOAD_SQL = """
INSERT INTO bunsync.event_log (stream, type, payload, source, signed_at, received_at, idempotency_key)
SELECT 'order-' || (g % 100000), CASE WHEN g % 10 < 6 THEN 'webhook.order_status_changed.v1'
                                    WHEN g % 97 = 0 THEN 'webhook.unrecognized' ELSE 'order.observed' END,
       jsonb_build_object('data', jsonb_build_object('orderId', g % 100000)),
       CASE WHEN g % 10 < 6 OR g % 97 = 0 THEN 'webhook' ELSE 'get_order' END,
       now() - make_interval(secs => (($1 - g) * 7200.0 / $1)),
       CASE WHEN g % 10 < 6 OR g % 97 = 0 THEN now() - make_interval(secs => (($1 - g) * 7200.0 / $1)) END,
       'bench:' || g
FROM generate_series(1, $1) AS g
"""
CATCH_UP_SQL = """
UPDATE bunsync.projection_checkpoints AS c
SET tx_id = h.tx_id, position = h.position, events_read = h.n
FROM (SELECT max(tx_id) AS tx_id, max(position) AS position, count(*) AS n FROM bunsync.event_log) AS h
"""
EXTRAS_SQL = """
INSERT INTO bunsync.fetch_queue (order_id, attempts, dead_at, dead_reason)
SELECT g, 12, now() - make_interval(mins => g), 'NotFound: order gone' FROM generate_series(1, 300) AS g;
INSERT INTO bunsync.parked_events (projection, position, error)
SELECT 'orders', g, 'bench: cannot apply' FROM generate_series(1, 40) AS g;
INSERT INTO bunsync.reconcile_passes
    (started_at, finished_at, range_start, range_end, orders_seen, differences, ok)
SELECT now() - make_interval(mins => 5 * g), now() - make_interval(mins => 5 * g - 1),
       now() - make_interval(mins => 5 * g + 10), now() - make_interval(mins => 5 * g), 100, 1, true
FROM generate_series(1, 2000) AS g;
ANALYZE;
"""


async def measure(dsn: str, events: int, runs: int) -> list[float]:
    import httpx

    from app.console.routes import console_handlers
    from app.http.operator_app import create_admin_app
    from app.http.refusals import RefusalLog
    from app.http.webhook_app import Services
    from app.settings import Settings
    from app.store import db, migrations

    async with db.admin_connection(dsn) as conn:
        await migrations.migrate(conn)
        started = time.monotonic()
        await conn.execute(LOAD_SQL, events)
        await conn.execute(CATCH_UP_SQL)
        await conn.execute(EXTRAS_SQL)
        print(f"loaded {events:,} events in {time.monotonic() - started:.1f} s", flush=True)
    pool = await db.create_pool(dsn, min_size=1, max_size=4)
    try:
        services = Services(settings=Settings.from_env({}, is_tty=False), pool=pool, refusals=RefusalLog())
        app = create_admin_app(services, extra_handlers=console_handlers(services))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]  # Litestar's ASGI types are narrower than httpx's
            base_url="http://bench",
        ) as client:
            timings = []
            for n in range(runs + 5):
                t0 = time.perf_counter()
                answer = await client.get("/")
                elapsed = (time.perf_counter() - t0) * 1000
                if answer.status_code != 200:
                    raise SystemExit(f"GET / answered {answer.status_code}")
                if n >= 5:
                    timings.append(elapsed)
            return timings
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=30, help="measured renders (default 30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bunsync-bench-console-") as tmp:
        (Path(tmp) / "pglog").mkdir()
        cluster = benchlib.Cluster(Path(tmp), settings="-c shared_buffers=256MB -c max_wal_size=4GB")
        try:
            cluster.start()
            timings = asyncio.run(measure(cluster.dsn("postgres"), args.events, args.runs))
        finally:
            cluster.stop()
    median = statistics.median(timings)
    p95 = sorted(timings)[int(0.95 * (len(timings) - 1))]
    verdict = "PASS" if median < TARGET_MS else "FAIL"
    print(
        f"console overview ({args.events:,} events): median {median:.1f} ms, p95 {p95:.1f} ms, "
        f"ratio {median / TARGET_MS:.2f} vs {TARGET_MS:.0f} ms target  {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    benchlib.reexec_in_venv(__file__)
    sys.path.insert(0, str(benchlib.ROOT))
    sys.exit(main())
