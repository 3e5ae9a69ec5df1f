"""Benchmark one full reconcile backfill against the minimum number of List Orders pages.

What it measures, in ONE run on a throwaway PostgreSQL cluster (fsync and synchronous_commit on) and a
sandbox Bunjang served over real HTTP by `bunsync sandbox` in its own process:

  set-up:   N orders (default 100,000; 1-3 items each) created through the sandbox's admin API in 100
            batches with the sandbox clock frozen, the clock jumped 9.6 h between batches, so the items'
            statusUpdatedAt span ~40 days: three 15-day List Orders windows. The truth
            (GET /_sandbox/truth) gives, per window of the backfill range, how many orders List Orders
            must return, hence the MINIMUM number of pages: ceil(orders / 100), at least 1 per window.
  (r) reconcile: ONE `reconciler.run_pass(..., since=<start>)` on an empty, migrated database, with the
            service's BunjangClient: wall time, List Orders calls answered (the sandbox's counters),
            orders seen, differences recorded, events appended and fetches enqueued.
  (p) paging ceiling: the same windows paged with the same client and nothing else (no database):
            what listing alone costs on this machine and this sandbox, measured in the same run.

Then one table: calls vs the minimum (ratio), orders/s, (r)/(p) time, and PASS/FAIL checks: calls <= the
minimum and all answered 200, orders seen == N, differences == N, events appended == N (a fresh
database differs from the sandbox in every order, and each order is listed in exactly one window), and
the pass finished within --timeout. The last line, `BENCH_RECONCILE {json}`, is for scripts/bench.

Everything listens on 127.0.0.1; the cluster, the sandbox and the files are removed at the end, also on
Ctrl-C or failure. Needs the project's venv (.venv: it re-executes itself with .venv/bin/python) and the
PostgreSQL server binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib
from benchlib import ROOT, BenchError, Cluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the sandbox's frozen clock at start; the backfill starts here
FIRST_BATCH_S = 1800  # first batch half an hour after T0: batch times stay clear of window boundaries
BATCHES = 100
SPAN_DAYS = 40  # batches 9.6 h apart: the last one ~39.6 days after T0 (windows of 15, 15, 9.6 days)
PAGE_SIZE = 100
DATABASE = "bench_reconcile"


@dataclass(frozen=True)
class Figures:
    """What one run measured (printed, and emitted as JSON for scripts/bench)."""

    orders: int
    items: int
    windows: int
    orders_per_window: list[int]
    min_pages: int
    setup_s: float
    reconcile_s: float
    calls: int
    calls_by_status: dict[str, int]
    orders_seen: int
    differences: int
    events: int
    fetches_enqueued: int
    paging_s: float | None
    paging_calls: int | None
    timed_out: bool

    @property
    def orders_per_s(self) -> float:
        return self.orders_seen / self.reconcile_s if self.reconcile_s else 0.0


# ------------------------------------------------------------------------------------------- sandbox


@contextlib.contextmanager
def sandbox_process(workdir: Path, port: int, seed: int) -> Iterator[str]:
    """`bunsync sandbox` in its own process with a frozen clock at T0; its base URL once it answers."""
    cmd = [
        str(ROOT / ".venv" / "bin" / "bunsync"),
        "sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--seed",
        str(seed),
        "--start-time",
        T0.isoformat(),
        "--clock-speed",
        "0",
        "--token-validity",
        "300",
    ]
    url = f"http://127.0.0.1:{port}"
    env = benchlib.clean_env(BUNSYNC_LOG_FORMAT="json")
    ready = f"{url}/_sandbox/clock"
    with benchlib.serve(
        cmd, env=env, ready_url=ready, logfile=workdir / "sandbox.log", name="bunsync sandbox"
    ):
        yield url


def populate(url: str, orders: int) -> tuple[float, datetime]:
    """Create ``orders`` orders in BATCHES batches spread over SPAN_DAYS; seconds taken, sandbox now."""
    import httpx

    started = time.monotonic()
    step = SPAN_DAYS * 86_400 / BATCHES
    per_batch = math.ceil(orders / BATCHES)
    with httpx.Client(base_url=url, timeout=120) as http:
        _admin(http, "/_sandbox/clock", {"advanceSeconds": FIRST_BATCH_S})
        left = orders
        while left:
            count = min(per_batch, left)
            _admin(http, "/_sandbox/orders", {"count": count})
            left -= count
            if left:
                _admin(http, "/_sandbox/clock", {"advanceSeconds": step})
        now = datetime.fromisoformat(http.get("/_sandbox/clock").raise_for_status().json()["now"])
    return time.monotonic() - started, now


def _admin(http: Any, path: str, body: dict[str, Any]) -> None:
    response = http.post(path, json=body)
    if response.status_code >= 300:
        raise BenchError(f"sandbox {path} answered {response.status_code}: {response.text[:500]}")


def truth(url: str) -> dict[int, list[datetime]]:
    """From the sandbox's truth: each order's items' current ``statusUpdatedAt``."""
    import httpx

    body = httpx.get(f"{url}/_sandbox/truth", timeout=300).raise_for_status().json()
    times: dict[int, list[datetime]] = {}
    for item in body["items"]:
        times.setdefault(item["orderId"], []).append(datetime.fromisoformat(item["statusUpdatedAt"]))
    return times


def window_counts(times: dict[int, list[datetime]], start: datetime, end: datetime) -> list[int]:
    """How many orders List Orders returns for each window of ``[start, end]`` (bounds inclusive)."""
    from app.bunjang.windows import split_windows

    return [
        sum(1 for ts in times.values() if any(w.start <= t <= w.end for t in ts))
        for w in split_windows(start, end)
    ]


def list_orders_calls(url: str) -> dict[str, int]:
    """List Orders answers so far, by status code."""
    import httpx

    counters = httpx.get(f"{url}/_sandbox/counters", timeout=30).raise_for_status().json()
    return dict(counters["api"].get("list_orders", {}))


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# -------------------------------------------------------------------------------------------- phases


def _client(url: str) -> Any:
    from app.bunjang.client import BunjangClient
    from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY

    return BunjangClient(url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)


async def migrate(dsn: str) -> None:
    from app.store import db, migrations

    async with db.admin_connection(dsn) as conn:
        await migrations.migrate(conn)


async def reconcile(
    dsn: str, url: str, start: datetime, end: datetime, timeout_s: float
) -> tuple[float, Any, int, int, bool]:
    """ONE backfill pass over [start, end]: (seconds, PassResult or None, events, fetches, timed out)."""
    from app import reconciler
    from app.store import db, roles

    # As serve's sessions log in (bunsync_app), not as the cluster's superuser.
    pool = await db.create_pool(await roles.service_dsn(dsn, None), min_size=1, max_size=4)
    started = time.monotonic()

    def progress(done: int, total: int, seen: int) -> None:
        print(
            f"bench_reconcile:   window {done}/{total} done, {seen:,} orders seen, "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )

    result, timed_out = None, False
    try:
        async with _client(url) as client:
            try:
                async with asyncio.timeout(timeout_s):
                    result = await reconciler.run_pass(
                        pool,
                        client,
                        now=end,
                        overlap=timedelta(minutes=10),
                        lookback=timedelta(days=3),
                        since=start,
                        progress=progress,
                    )
            except TimeoutError:
                timed_out = True
            except Exception as exc:  # a benchmark reports why the pass failed in one line, and stops
                raise BenchError(f"the reconcile pass failed: {type(exc).__name__}: {exc}") from exc
        seconds = time.monotonic() - started
        events = await pool.fetchval("SELECT count(*) FROM bunsync.event_log")
        fetches = await pool.fetchval("SELECT count(*) FROM bunsync.fetch_queue")
    finally:
        await pool.close()
    return seconds, result, int(events), int(fetches), timed_out


async def paging_only(url: str, start: datetime, end: datetime) -> tuple[float, int]:
    """Every page of every window with the same client and no database: (seconds, orders listed)."""
    from app.bunjang.windows import split_windows

    listed = 0
    started = time.monotonic()
    async with _client(url) as client:
        for window in split_windows(start, end):
            page = 0
            while True:
                result = await client.list_page(window, page, PAGE_SIZE)
                listed += len(result.data)
                page += 1
                if page >= result.total_pages or not result.data:
                    break
    return time.monotonic() - started, listed


# -------------------------------------------------------------------------------------------- report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(f: Figures, machine: dict[str, str], pg_version: str) -> bool:
    """Print the table and the checks; whether every check passed."""
    print()
    print(
        f"machine: nproc={machine['nproc']}, CPU {machine['cpu']}, {pg_version}, Python {machine['python']}, "
        f"{machine['kernel']}, load {machine['load']} (1/5/15 min) at start"
    )
    print(
        f"data: {f.orders:,} orders, {f.items:,} items over ~{SPAN_DAYS} days: {f.windows} windows of "
        f"<= 15 days with {', '.join(f'{n:,}' for n in f.orders_per_window)} orders; "
        f"sandbox filled in {f.setup_s:.1f} s"
    )
    print()
    head = f"{'':38} {'seconds':>9} {'orders/s':>10} {'List Orders calls':>18} {'minimum':>8} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    ratio = f.calls / f.min_pages if f.min_pages else float("nan")
    print(
        f"{'(r) reconcile backfill (run_pass)':38} {f.reconcile_s:9.1f} {f.orders_per_s:10.0f} "
        f"{f.calls:>18,} {f.min_pages:>8,} {ratio:6.2f}"
    )
    if f.paging_s is not None and f.paging_calls is not None:
        print(
            f"{'(p) paging only, no database':38} {f.paging_s:9.1f} {f.orders / f.paging_s:10.0f} "
            f"{f.paging_calls:>18,} {f.min_pages:>8,} {f.paging_calls / f.min_pages:6.2f}"
        )
    print()
    if f.paging_s:
        print(f"(r)/(p) time = {f.reconcile_s / f.paging_s:.2f} (what the database side adds to listing)")
    print(
        f"orders seen {f.orders_seen:,}, differences {f.differences:,}, events appended {f.events:,}, "
        f"fetches enqueued {f.fetches_enqueued:,}; List Orders answers by status {f.calls_by_status}"
    )
    print()
    answered_200 = f.calls_by_status.get("200", 0) == f.calls
    checks = [
        ("pass finished in time", "timed out" if f.timed_out else f"{f.reconcile_s:.1f} s", not f.timed_out),
        ("calls <= minimum pages", f"{f.calls} / {f.min_pages}", f.calls <= f.min_pages),
        ("every call answered 200", str(f.calls_by_status), answered_200 and f.calls > 0),
        ("orders seen == N", f"{f.orders_seen:,}", f.orders_seen == f.orders),
        ("differences == N", f"{f.differences:,}", f.differences == f.orders),
        ("events appended == N", f"{f.events:,}", f.events == f.orders),
        ("one window per order", f"{sum(f.orders_per_window):,}", sum(f.orders_per_window) == f.orders),
    ]
    for name, value, ok in checks:
        print(f"  {name:26} {value:>22}   {_verdict(ok)}")
    return all(ok for _, _, ok in checks)


# ---------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench_reconcile",
        description=__doc__,
        epilog="Exit status: 0 every check passes, 1 a check fails, 2 the benchmark could not run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def positive(value: str) -> int:
        n = int(value)
        if not BATCHES <= n <= 10_000 * BATCHES:
            raise argparse.ArgumentTypeError(f"must be {BATCHES}..{10_000 * BATCHES:,}")
        return n

    parser.add_argument("--orders", type=positive, default=100_000, help="orders in the sandbox (100000)")
    parser.add_argument("--seed", type=int, default=1, help="the sandbox's seed (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=1200, help="seconds the backfill pass may take (default 1200)"
    )
    parser.add_argument(
        "--no-paging-ceiling", action="store_true", help="skip (p), the paging-only measurement"
    )
    return parser.parse_args()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, workdir: Path) -> int:
    import logging

    from app import logs

    logs.configure("console", logging.WARNING)  # the reconciler's INFO lines would drown the table
    machine = benchlib.machine()
    cluster = Cluster(workdir)
    try:
        print(f"bench_reconcile: starting PostgreSQL on 127.0.0.1:{cluster.port} in {workdir}", flush=True)
        cluster.start()
        admin_dsn, dsn = cluster.dsn("postgres"), cluster.dsn(DATABASE)
        pg_version = asyncio.run(
            _fetchval(admin_dsn, "SELECT 'PostgreSQL ' || current_setting('server_version')")
        )
        asyncio.run(_fetchval(admin_dsn, f"CREATE DATABASE {DATABASE}"))
        asyncio.run(migrate(dsn))
        with sandbox_process(workdir, benchlib.free_port(), args.seed) as url:
            print(f"bench_reconcile: creating {args.orders:,} orders in the sandbox ({url}) ...", flush=True)
            setup_s, sandbox_now = populate(url, args.orders)
            times = truth(url)
            orders, items = len(times), sum(len(ts) for ts in times.values())
            # With the clock frozen, the world stamps each change 1 ms after the previous one, so the
            # last batch's stamps run ahead of the clock: the range ends after the newest stamp.
            newest = max(t for ts in times.values() for t in ts)
            start, end = T0, max(sandbox_now, newest) + timedelta(seconds=1)
            per_window = window_counts(times, start, end)
            min_pages = sum(max(1, math.ceil(n / PAGE_SIZE)) for n in per_window)
            print(
                f"bench_reconcile: {orders:,} orders, {items:,} items in {setup_s:.1f} s; minimum "
                f"{min_pages:,} List Orders pages; (r) backfill {start:%Y-%m-%d} .. {end:%Y-%m-%d} ...",
                flush=True,
            )
            before = list_orders_calls(url)
            seconds, result, events, fetches, timed_out = asyncio.run(
                reconcile(dsn, url, start, end, args.timeout)
            )
            calls = _delta(list_orders_calls(url), before)
            paging_s = paging_calls = None
            if not args.no_paging_ceiling and not timed_out:
                print("bench_reconcile: (p) paging only ...", flush=True)
                before = list_orders_calls(url)
                paging_s, _ = asyncio.run(paging_only(url, start, end))
                paging_calls = sum(_delta(list_orders_calls(url), before).values())
        figures = Figures(
            orders=args.orders,
            items=items,
            windows=len(per_window),
            orders_per_window=per_window,
            min_pages=min_pages,
            setup_s=setup_s,
            reconcile_s=seconds,
            calls=sum(calls.values()),
            calls_by_status=calls,
            orders_seen=result.orders_seen if result else 0,
            differences=result.differences if result else 0,
            events=events,
            fetches_enqueued=fetches,
            paging_s=paging_s,
            paging_calls=paging_calls,
            timed_out=timed_out,
        )
        ok = report(figures, machine, pg_version)
        print(
            "BENCH_RECONCILE "
            + json.dumps(
                {**asdict(figures), "orders_per_s": figures.orders_per_s, "ok": ok, "pg": pg_version}
            )
        )
        return 0 if ok else 1
    finally:
        cluster.stop()


async def _fetchval(dsn: str, statement: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


def main() -> int:
    args = parse_args()
    load = benchlib.load_average()[0]
    if load > 0.5:
        print(
            f"bench_reconcile: warning: 1-min load average is {load:.2f} before starting; other work on this "
            "machine skews the figures (rerun when it is idle)",
            flush=True,
        )
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="bench_reconcile-"))
    try:
        return run(args, workdir)
    except BenchError as exc:
        print(f"bench_reconcile: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_reconcile: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    benchlib.reexec_in_venv(__file__)
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
