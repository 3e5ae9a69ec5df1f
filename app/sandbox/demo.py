"""``bunsync demo``: the whole product, end to end, under faults, on one machine.

It starts an embedded PostgreSQL in a fresh folder, the sandbox Bunjang with faults on (webhooks dropped,
duplicated and reordered; Get Order failing with 5xx and 429), and ``bunsync serve`` against them (a
short reconcile interval); drives orders through their lifecycles; shows live progress; then waits until
every item of ``reporting.order_item_status`` matches the sandbox's truth, and reports what the sandbox
did, what bunsync recovered by reconciling, the time to converge and the mismatches (exit 1 if any).
It ends by forgetting one order's buyer with the real ``bunsync forget`` and proving, with a data-only
``pg_dump`` of the whole database, that none of that buyer's values is left (exit 1 otherwise).
It stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import structlog

from app.ops import status
from app.privacy import dump_scan, personal_data
from app.sandbox import feed_check
from app.sandbox.config import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_SECRET_KEY,
    DEFAULT_WEBHOOK_SECRET,
)
from app.store import db
from app.store.embedded_pg import EmbeddedPostgres
from app.store.sqlfiles import queries

log = structlog.get_logger(__name__)
_Q = queries("demo")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How big a demo to run."""

    orders: int = 300
    rounds: int = 20
    steps_per_round: int = 60
    drop_rate: float = 0.10
    duplicate_rate: float = 0.05
    reorder_rate: float = 0.10
    get_order_error_rate: float = 0.05
    get_order_429_rate: float = 0.05
    reconcile_interval_s: int = 5
    converge_timeout_s: float = 90.0
    consumer_down_s: float = 3.0
    consumer_fail_rate: float = 0.05
    """While orders are driven, the change-feed consumer answers 500 at random this often."""
    data_dir: Path | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(argv: list[str], env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    with log_path.open("ab") as out:
        return await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=out)


async def _wait_http(
    client: httpx.AsyncClient, url: str, proc: asyncio.subprocess.Process, what: str
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready within 60 s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(options: DemoOptions, dsn: str, work: Path) -> int:
    """Run the demo against the database at ``dsn``; return the exit code (0: converged, no mismatch)."""
    sandbox_port, serve_port = _free_port(), _free_port()
    sandbox_url, serve_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{serve_port}"
    env = {
        **os.environ,
        "BUNSYNC_DATABASE_URL": dsn,
        "BUNSYNC_PORT": str(serve_port),
        "BUNSYNC_ADMIN_PORT": str(_free_port()),  # the operator listener, off the default 8081
        "BUNSYNC_WEBHOOK_SECRETS": DEFAULT_WEBHOOK_SECRET,
        "BUNSYNC_BUNJANG_BASE_URL": sandbox_url,
        "BUNSYNC_BUNJANG_ACCESS_KEY": DEFAULT_ACCESS_KEY,
        "BUNSYNC_BUNJANG_SECRET_KEY": DEFAULT_SECRET_KEY,
        "BUNSYNC_RECONCILE_INTERVAL_S": str(options.reconcile_interval_s),
        "BUNSYNC_RECONCILE_LOOKBACK_S": "3600",
        "BUNSYNC_LOG_FORMAT": "json",
        # The change feed goes to the sandbox's consumer, which verifies it with the same secret.
        "BUNSYNC_FORWARD_URL": f"{sandbox_url}/_sandbox/consumer",
        "BUNSYNC_FORWARD_SECRET": DEFAULT_CONSUMER_SECRET,
    }
    me = [sys.executable, "-m", "app.cli"]
    faults = {
        "--drop-rate": options.drop_rate,
        "--duplicate-rate": options.duplicate_rate,
        "--reorder-rate": options.reorder_rate,
        "--get-order-error-rate": options.get_order_error_rate,
        "--get-order-429-rate": options.get_order_429_rate,
    }
    sandbox_argv = [
        *me,
        "sandbox",
        "--port",
        str(sandbox_port),
        "--seed",
        "1",
        "--webhook-url",
        f"{serve_url}/webhooks/bunjang",
        "--webhook-retry-base",
        "0.2",
        "--consumer-secret",
        DEFAULT_CONSUMER_SECRET,
    ]
    for flag, value in faults.items():
        sandbox_argv += [flag, str(value)]
    sandbox = await _start(sandbox_argv, env, work / "sandbox.log")
    serve = await _start([*me, "serve"], env, work / "serve.log")
    try:
        async with httpx.AsyncClient(timeout=60) as client, _pool(dsn) as pool:
            await _wait_http(client, f"{sandbox_url}/_sandbox/clock", sandbox, "the sandbox")
            await _wait_http(client, f"{serve_url}/health/ready", serve, "bunsync serve")
            _say(
                f"sandbox Bunjang on {sandbox_url}: webhooks dropped {options.drop_rate:.0%}, duplicated "
                f"{options.duplicate_rate:.0%}, reordered {options.reorder_rate:.0%}; Get Order 5xx "
                f"{options.get_order_error_rate:.0%}, 429 {options.get_order_429_rate:.0%}"
            )
            _say(f"bunsync serve on {serve_url}, reconciling every {options.reconcile_interval_s} s")
            consumer_faults = {"downForS": options.consumer_down_s, "failRate": options.consumer_fail_rate}
            await client.patch(f"{sandbox_url}/_sandbox/consumer", json=consumer_faults)
            _say(
                f"change feed forwarded to {sandbox_url}/_sandbox/consumer: down for the first "
                f"{options.consumer_down_s:g} s, then 500 at random {options.consumer_fail_rate:.0%} while "
                "orders move"
            )
            started = time.monotonic()
            await client.post(f"{sandbox_url}/_sandbox/orders", json={"count": options.orders})
            for n in range(1, options.rounds + 1):
                await client.post(f"{sandbox_url}/_sandbox/advance", json={"steps": options.steps_per_round})
                await asyncio.sleep(0.2)
                if n % 5 == 0 or n == options.rounds:
                    _say(f"  round {n:>2}/{options.rounds}  " + await _progress(client, sandbox_url, pool))
            driven = time.monotonic()
            await client.patch(f"{sandbox_url}/_sandbox/consumer", json={"failRate": 0.0})
            await client.post(f"{sandbox_url}/_sandbox/webhooks/settle", params={"timeout": 60})
            mismatches = await _converge(client, sandbox_url, pool, options.converge_timeout_s)
            converged = time.monotonic()
            counters = (await client.get(f"{sandbox_url}/_sandbox/counters")).json()
            recovered = int(await pool.fetchval(_Q["listed_events"]))
            code = _report(counters, recovered, mismatches, driven - started, converged - driven)
            forwarded = await _forwarded(client, sandbox_url, pool, options.converge_timeout_s)
            for line in forwarded.lines():
                _say(line)
            code = code or (0 if forwarded.ok else 1)
            await _show_examples(pool)
            return code if await _forget_one(me, env, dsn, pool) else 1
    finally:
        await _stop(serve)
        await _stop(sandbox)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """An item whose row in ``reporting.order_item_status`` is not the sandbox's truth."""

    order_item_id: int
    truth: tuple[str, datetime | None]
    shown: tuple[str, datetime | None] | None


@contextlib.asynccontextmanager
async def _pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """The demo's connection to bunsync's database, for its whole run (reused by every read)."""
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def mismatches_against_truth(
    truth_items: list[dict[str, Any]], database: str | asyncpg.Pool
) -> list[Mismatch]:
    """Compare every item of the truth (``GET /_sandbox/truth``) with ``reporting.order_item_status``
    (read through ``database``: a pool, or a DSN to connect to once)."""
    if isinstance(database, str):
        async with _pool(database) as pool:
            return await mismatches_against_truth(truth_items, pool)
    rows = await database.fetch(_Q["item_statuses"])
    shown = {r["order_item_id"]: (r["status"], r["status_updated_at"]) for r in rows}
    found: list[Mismatch] = []
    for item in truth_items:
        at = item.get("statusUpdatedAt")
        expected = (item["status"], datetime.fromisoformat(at) if at else None)
        if shown.get(item["orderItemId"]) != expected:
            found.append(Mismatch(item["orderItemId"], expected, shown.get(item["orderItemId"])))
    return found


async def _truth(client: httpx.AsyncClient, sandbox_url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get(f"{sandbox_url}/_sandbox/truth")).json()["items"]
    return items


async def _progress(client: httpx.AsyncClient, sandbox_url: str, pool: asyncpg.Pool) -> str:
    """One progress line: the sandbox's counters, ``bunsync status``'s snapshot, and the items in sync."""
    webhooks = (await client.get(f"{sandbox_url}/_sandbox/counters")).json()["webhooks"]
    truth = await _truth(client, sandbox_url)
    wrong = await mismatches_against_truth(truth, pool)
    report = await status.collect(pool)
    last = report.last_reconcile
    reconciled = "none yet" if last is None else "ok" if last.ok else "failed"
    return (
        f"webhooks delivered {webhooks['delivered']:>5} (dropped {webhooks['dropped']:>4}) | "
        f"events {report.events_total:>6} | fetches pending {report.fetch_queue.pending:>4} | "
        f"last reconcile {reconciled:<8} | items in sync {len(truth) - len(wrong):>4}/{len(truth)}"
    )


async def _converge(
    client: httpx.AsyncClient, sandbox_url: str, pool: asyncpg.Pool, timeout_s: float
) -> list[Mismatch]:
    """Wait until the view equals the truth (or the deadline); the mismatches left (none: converged)."""
    deadline = time.monotonic() + timeout_s
    last_said = 0.0
    while True:
        wrong = await mismatches_against_truth(await _truth(client, sandbox_url), pool)
        if not wrong or time.monotonic() > deadline:
            return wrong
        if time.monotonic() - last_said >= 3:
            last_said = time.monotonic()
            _say("  converging  " + await _progress(client, sandbox_url, pool))
        await asyncio.sleep(0.5)


async def _forwarded(
    client: httpx.AsyncClient, sandbox_url: str, pool: asyncpg.Pool, timeout_s: float
) -> feed_check.FeedCheck:
    """Wait until the feed is complete and forwarded (no projection lag, no forwarding lag) or the
    deadline; then compare what the consumer accepted with the feed."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = await status.collect(pool)
        caught_up = report.max_projection_lag == 0 and (
            report.forwarding is not None and report.forwarding.lag_changes == 0
        )
        if caught_up or time.monotonic() > deadline:
            feed = [feed_check.FeedRowIn(*r) for r in await pool.fetch(_Q["feed"])]
            url = f"{sandbox_url}/_sandbox/consumer/received"
            got = (await client.get(url, params={"accepted": "true"})).json()
            check = feed_check.compare(
                feed, got["received"], requests=got["requests"], invalid_signatures=got["invalidSignatures"]
            )
            if not check.missing or time.monotonic() > deadline:
                return check
        await asyncio.sleep(0.2)


async def _show_examples(pool: asyncpg.Pool) -> None:
    """Two of the README's analyst queries, run on the demo's data."""
    _say("")
    _say(_Q["status_counts"])
    for r in await pool.fetch(_Q["status_counts"]):
        _say(f"  {r['status']:<34} {r['items']:>5}")
    _say(_Q["sources"])
    for r in await pool.fetch(_Q["sources"]):
        _say(f"  {r['source']:<34} {r['n']:>5}")


async def _forget_one(me: list[str], env: dict[str, str], dsn: str, pool: asyncpg.Pool) -> bool:
    """Forget one order through the real ``bunsync forget`` and prove a whole-database dump clean."""
    rows = await pool.fetch(_Q["personal_data"])
    if not rows:
        _say("no order holds personal data: nothing to forget")
        return False
    values = {r["order_id"]: set(personal_data.leaves(json.loads(r["fields"]))) for r in rows}
    order_id = rows[0]["order_id"]
    others = set().union(*(v for k, v in values.items() if k != order_id))
    # Values another buyer shares (a common name) legitimately stay; zip codes are too short to tell.
    own = sorted(v for v in values[order_id] - others if len(v.encode()) >= 6)
    before = await dump_scan.scan(dsn, own)
    proc = await asyncio.create_subprocess_exec(
        *me, "forget", "--order", str(order_id), env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    after = await dump_scan.scan(dsn, own)
    _say("")
    _say(f"bunsync forget --order {order_id}  (exit {proc.returncode})")
    _say("  " + out.decode(errors="replace").strip())
    _say(
        f"data-only pg_dump of the whole database, {len(own)} of the buyer's values searched as text, "
        f"bytea hex and JSON \\u escapes: {len(before)} found before, {len(after)} after"
    )
    clean = proc.returncode == 0 and len(before) == len(own) > 0 and not after
    _say("  clean: no byte of the forgotten buyer's data is left" if clean else "  NOT CLEAN")
    return clean


def _report(
    counters: dict[str, Any], recovered: int, mismatches: list[Mismatch], drive_s: float, converge_s: float
) -> int:
    w = counters["webhooks"]
    calls = counters["api"].get("get_order", {})
    failed_calls = sum(n for code, n in calls.items() if code != "200")
    _say("")
    _say(f"the sandbox made {w['emitted']} status changes in {drive_s:.1f} s and, on the way to bunsync,")
    _say(
        f"  dropped {w['dropped']} webhooks, duplicated {w['duplicated']}, reordered {w['reordered']}, "
        f"retried {w['retried']} deliveries; answered {failed_calls} of {sum(calls.values())} Get Order "
        "calls with 5xx/429"
    )
    _say(f"bunsync's reconciler recorded {recovered} List Orders observations that differed from its views")
    _say(f"  (changes whose webhook was lost, or still in flight), and it converged {converge_s:.1f} s after")
    _say("  the last change")
    if not mismatches:
        _say("0 mismatches: every item in reporting.order_item_status equals the sandbox's truth")
        return 0
    _say(f"{len(mismatches)} MISMATCHES (item: truth / shown):")
    for m in mismatches[:20]:
        _say(f"  {m.order_item_id}: {m.truth} / {m.shown}")
    return 1


def main(options: DemoOptions) -> int:
    """Set up the folder and the embedded database, run the demo, tear everything down."""
    if options.data_dir is None:
        work = Path(tempfile.mkdtemp(prefix="bunsync-demo-"))
        work.chmod(0o711)  # as root, PostgreSQL runs as an unprivileged user who must reach its folder
    else:
        work = options.data_dir
        work.mkdir(parents=True, exist_ok=True)
    _say(f"bunsync demo: working in {work} (logs: sandbox.log, serve.log, db/postgresql.log)")
    with EmbeddedPostgres(work / "db") as pg, asyncio.Runner() as runner:
        code = runner.run(run_demo(options, pg.dsn, work))
    _say("")
    _say(f"everything is stopped; the data stays in {work / 'db'}. To look at it, run bunsync on it")
    _say(f"(BUNSYNC_DATA_DIR={work / 'db'} bunsync serve, with the sandbox's BUNSYNC_* values printed in")
    _say(f"README.md) and: psql -h {work / 'db' / 'run'} -U bunsync bunsync")
    return code
