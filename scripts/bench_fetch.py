"""Benchmark the cost of keeping buyer personal data out of the log, on the fetch path.

Fetch -> observed-event throughput of the real fetch workers (app/fetcher.py, BUNSYNC_FETCH_CONCURRENCY
4) against a sandbox Bunjang in its own process (`bunsync sandbox --orders N`, over real HTTP, every
Get Order answer with a Korean buyer's delivery address), into a throwaway PostgreSQL cluster (fsync
on), in two variants on fresh databases, alternated ROUNDS times:

  (with)     the shipped fetcher: split each answer (app/personal_data.py), log the order facts, keep
             the personal data in bunsync.personal_data (bunsync.keep_personal_data) in the same
             transaction;
  (without)  the same workers logging the answer as received (what bunsync did before): the ceiling.

Each run enqueues every order and times until the queue is empty and N events are logged. Best of the
rounds per variant; cost = 1 - with/without. Target: cost < 10 %. The last line, `BENCH_FETCH {json}`,
is for scripts/bench. Loopback only; bounded (a run that exceeds --timeout fails).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import ROOT

benchlib.reexec_in_venv(__file__)
sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

import structlog  # noqa: E402

from app.bunjang.client import BunjangClient  # noqa: E402
from app.fetcher import Fetcher  # noqa: E402
from app.privacy.personal_data import Split  # noqa: E402
from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY  # noqa: E402
from app.store import db, migrations  # noqa: E402


class _Unsplit(Fetcher):
    """The fetcher before personal-data handling: every answer logged as received (the reference)."""

    def _split(self, raw: bytes) -> Split:
        return Split(facts_json=raw.decode("utf-8"), personal={})


async def _one_run(dsn: str, sandbox_url: str, orders: int, split: bool, timeout_s: float) -> float:
    # As serve gives the fetch workers (app/service.py): a pool of their own, no reset on release.
    pool = await db.create_pool(dsn, min_size=4, max_size=8, keep_session=True)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "SELECT bunsync.enqueue_fetches($1::bigint[])", list(range(100_001, 100_001 + orders))
            )
        async with BunjangClient(sandbox_url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY) as client:
            cls = Fetcher if split else _Unsplit
            fetcher = cls(pool, client, concurrency=4, max_attempts=3, worker_id="bench", idle_poll_s=0.05)
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(fetcher.run(stop))
            async with asyncio.timeout(timeout_s):
                # Polling, not an event: the queue empties in another task's transactions.
                while await pool.fetchval("SELECT count(*) FROM bunsync.fetch_queue"):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - started
            stop.set()
            await task
        logged = await pool.fetchval("SELECT count(*) FROM bunsync.event_log WHERE type = 'order.observed'")
        kept = await pool.fetchval("SELECT count(*) FROM bunsync.personal_data")
        if logged != orders or kept != (orders if split else 0):
            raise benchlib.BenchError(
                f"run logged {logged} events, kept {kept} personal rows; expected {orders}"
            )
        return orders / elapsed
    finally:
        await pool.close()


async def _main(args: argparse.Namespace, cluster: benchlib.Cluster, sandbox_url: str) -> dict[str, object]:
    async with db.admin_connection(cluster.dsn("postgres")) as conn:
        await conn.execute("CREATE DATABASE bench_template")
    async with db.admin_connection(cluster.dsn("bench_template")) as conn:
        await migrations.migrate(conn)
    best = {True: 0.0, False: 0.0}
    for n in range(args.rounds):
        for split in (False, True) if n % 2 == 0 else (True, False):
            name = f"run_{n}_{int(split)}"
            async with db.admin_connection(cluster.dsn("postgres")) as conn:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE bench_template')
            rate = await _one_run(cluster.dsn(name), sandbox_url, args.orders, split, args.timeout)
            best[split] = max(best[split], rate)
            print(
                f"  round {n + 1} {'with' if split else 'without'} personal-data handling: "
                f"{rate:,.0f} orders/s",
                flush=True,
            )
    cost = 1 - best[True] / best[False]
    return {"orders": args.orders, "with": best[True], "without": best[False], "cost": cost}


def _sandbox_command(port: int, orders: int) -> list[str]:
    """``bunsync sandbox`` with ``orders`` orders and a frozen clock, on ``port``."""
    return [
        sys.executable,
        "-m",
        "app.cli",
        "sandbox",
        "--port",
        str(port),
        "--seed",
        "1",
        "--clock-speed",
        "0",
        "--orders",
        str(orders),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=3000, help="orders fetched per run (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant, alternated (default 3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per run (default 60)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cluster and sandbox are cleaned up
    # The workers' per-fetch log lines would measure the terminal, not the fetch path.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    work = Path(tempfile.mkdtemp(prefix="bunsync-bench-fetch-"))
    work.chmod(0o711)
    (work / "pglog").mkdir()
    cluster = benchlib.Cluster(work)
    try:
        cluster.start()
        port = benchlib.free_port()
        url = f"http://127.0.0.1:{port}"
        with benchlib.serve(
            _sandbox_command(port, args.orders),
            env=benchlib.clean_env(),
            ready_url=f"{url}/_sandbox/clock",
            logfile=work / "sandbox.log",
            name="bunsync sandbox",
        ):
            print(
                f"bench_fetch: {args.orders:,} orders, {args.rounds} rounds per variant, 4 fetch workers",
                flush=True,
            )
            result = asyncio.run(_main(args, cluster, url))
    except benchlib.BenchError as exc:
        print(f"bench_fetch: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    cost = float(result["cost"])  # type: ignore[arg-type]
    print(
        f"fetch -> observed event: with personal-data handling {result['with']:,.0f} orders/s, without "
        f"{result['without']:,.0f} orders/s: cost {cost:.1%} (target < 10 %): "
        f"{'PASS' if cost < 0.10 else 'FAIL'}"
    )
    print("BENCH_FETCH " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
