"""Benchmark `bunsync rebuild` of each projection against a set-based SQL ceiling on a throwaway cluster.

Usage: .venv/bin/python scripts/bench_rebuild.py [--events N] [--items N] [--projections a,b]
(defaults: 1,000,000 events over 100,000 items; order_item_status, order_item_history, orders;
scripts/bench.py runs it).

Starts a throwaway PostgreSQL cluster, loads N events over M items with COPY (scripts/benchdata.py),
then measures in the same run (a) the ceiling: one INSERT ... SELECT DISTINCT ON (item) ... ORDER BY
item, position DESC building a current-status table in SQL alone, and (b) the real rebuild of each
projection in turn (each in a child process, so its peak RSS is its own), and prints the events/s
ratio and peak memory of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib
from benchlib import ROOT

benchlib.reexec_in_venv(__file__)

import benchdata  # noqa: E402

from app.store import db  # noqa: E402

PROJECTIONS = ("order_item_status", "order_item_history", "orders")

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
import uvloop  # as `bunsync rebuild` runs (app/commands.py)
with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
    runner.run(rebuild(sys.argv[1], [sys.argv[3]]))
seconds = time.monotonic() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
q = [s[1] for s in samples]
print(json.dumps({"seconds": seconds, "peak_mb": peak,
                  "rss_mb_at_quarters": [q[len(q) * k // 4] for k in range(1, 4)] + [q[-1]] if q else []}))
"""


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


def rebuild_one(dsn: str, name: str, events: int, ceiling_rate: float) -> None:
    """Rebuild one projection in a child process and print its line (parsed by scripts/bench.py)."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, dsn, str(ROOT), name],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    rate = events / result["seconds"]
    print(
        f"rebuild {name}: {result['seconds']:.1f}s, {rate:,.0f} events/s, "
        f"peak RSS {result['peak_mb']} MB (RSS at 1/4, 1/2, 3/4, end: {result['rss_mb_at_quarters']} MB)",
        flush=True,
    )
    print(
        f"ratio rebuild {name} / ceiling: {rate / ceiling_rate:.2f} (target >= 0.5); "
        f"peak memory {result['peak_mb']} MB (target < 300 MB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--projections", default=",".join(PROJECTIONS), help="comma-separated (%(default)s)")
    args = parser.parse_args()
    names = [n for n in args.projections.split(",") if n]
    base = Path(tempfile.mkdtemp(prefix="bunsync-bench-"))
    cluster = benchdata.projection_cluster(base)
    cluster.start()
    dsn = cluster.dsn("postgres")
    try:
        _, ceiling_rate = benchdata.load_and_ceiling(dsn, args.events, args.items)
        for name in names:
            rebuild_one(dsn, name, args.events, ceiling_rate)
        if "order_item_status" in names:
            differ = asyncio.run(check_same(dsn))
            print(f"items where the ceiling's last-event status differs from the rule's: {differ:,}")
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
