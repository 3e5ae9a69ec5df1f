"""Benchmark the live projectors catching up from checkpoint 0, against the set-based SQL ceiling.

Usage: .venv/bin/python scripts/bench_catchup.py [--events N] [--items N]
(defaults: 1,000,000 events over 100,000 items; scripts/bench.py runs it).

What a new replica, a projector back from an outage, or a projection added by ``migrate`` does: every
projection starts at checkpoint 0 with N events in the log. On a throwaway cluster (durability off,
as in scripts/bench_rebuild.py), loads the same synthetic log and measures the same
``INSERT ... SELECT DISTINCT ON`` ceiling (scripts/benchdata.py), then runs the real engine
(``projections.engine.run_projectors``, every projection, default batch size) in a child process until
every checkpoint is at the log's head, and prints events/s, its ratio to the ceiling (target >= 0.5),
the child's peak RSS, and a final ``BENCH_CATCHUP {json}`` line for scripts/bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

benchlib.reexec_in_venv(__file__)

import benchdata  # noqa: E402

from app.store import db  # noqa: E402

# Projections whose checkpoint is not yet at the log's newest (tx_id, position). A plain comparison
# with the head, not the `lag` query: that one counts the events behind, which costs as much as the lag.
BEHIND = """
SELECT c.projection FROM bunsync.projection_checkpoints AS c
WHERE (c.tx_id, c.position) < (SELECT e.tx_id, e.position FROM bunsync.event_log AS e
                               ORDER BY e.tx_id DESC, e.position DESC LIMIT 1)
"""
POLL_S = 0.25


async def _catch_up(dsn: str, timeout_s: float) -> dict[str, object]:
    """Run every projector from checkpoint 0 until none is behind the head; seconds and projections."""
    from projections.engine import PROJECTIONS, run_projectors

    pool = await db.create_pool(dsn, min_size=2, max_size=len(PROJECTIONS) + 2)
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(run_projectors(pool, dsn, stop, poll_interval_s=0.2))
    done_at: dict[str, float] = {}
    try:
        async with asyncio.timeout(timeout_s):
            # Polling, not an event: the checkpoints move in the projectors' own transactions.
            while behind := {r["projection"] for r in await pool.fetch(BEHIND)}:
                for name in set(PROJECTIONS) - behind - set(done_at):
                    done_at[name] = round(time.monotonic() - started, 1)
                if task.done():
                    await task  # raises what killed the projectors
                    raise RuntimeError("the projectors stopped before reaching the head")
                await asyncio.sleep(POLL_S)
        seconds = time.monotonic() - started
    finally:
        stop.set()
        await task
        await pool.close()
    # When each projection reached the head: the last one sets the figure.
    at_head = {name: done_at.get(name, round(seconds, 1)) for name in sorted(PROJECTIONS)}
    return {"seconds": seconds, "projections": sorted(PROJECTIONS), "at_head_s": at_head}


def child(dsn: str, timeout_s: float) -> None:
    """The measured process: only the engine, so its peak RSS is the projectors' own."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import uvloop

    # On uvloop, as `bunsync serve` runs its projectors (app/commands.py): the default event loop's
    # socket reads were ~20 % of this process's time.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_catch_up(dsn, timeout_s))
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=900, help="seconds the catch-up may take (900)")
    parser.add_argument("--child", metavar="DSN", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.timeout)
        return 0
    base = Path(tempfile.mkdtemp(prefix="bunsync-bench-catchup-"))
    cluster = benchdata.projection_cluster(base)
    try:
        cluster.start()
        dsn = cluster.dsn("postgres")
        _, ceiling_rate = benchdata.load_and_ceiling(dsn, args.events, args.items)
        done = subprocess.run(
            [sys.executable, __file__, "--child", dsn, "--timeout", str(args.timeout)],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if done.returncode:
            print(f"bench_catchup: the projectors failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except benchlib.BenchError as exc:
        print(f"bench_catchup: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    rate = args.events / result["seconds"]
    ratio = rate / ceiling_rate
    print(
        f"catch-up from checkpoint 0, {len(result['projections'])} projections "
        f"({', '.join(result['projections'])}): {result['seconds']:.1f}s, {rate:,.0f} events/s, "
        f"peak RSS {result['peak_mb']} MB"
    )
    print("at the head after: " + ", ".join(f"{k} {v:.1f}s" for k, v in result["at_head_s"].items()))
    print(f"ratio catch-up / ceiling: {ratio:.2f} (target >= 0.5): {'PASS' if ratio >= 0.5 else 'FAIL'}")
    summary = {**result, "events": args.events, "rate": rate, "ceiling_rate": ceiling_rate, "ratio": ratio}
    print("BENCH_CATCHUP " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
