"""``bunsync demo``: the whole pipeline that exists so far, end to end, on one machine.

It starts an embedded PostgreSQL in a fresh folder, the sandbox Bunjang with webhook faults on (drops,
duplicates, reordering), and ``bunsync serve`` against them; drives orders through their lifecycles;
waits until every webhook delivery is settled; then checks that every event the sandbox delivered is in
bunsync's log exactly once, prints a short report, and stops everything it started.

Webhooks the sandbox dropped are, by design, not in the log: recovering them is the reconciler's job.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import structlog

from app.embedded_pg import EmbeddedPostgres
from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, DEFAULT_WEBHOOK_SECRET

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How big a demo to run."""

    orders: int = 200
    rounds: int = 20
    steps_per_round: int = 60
    drop_rate: float = 0.10
    duplicate_rate: float = 0.05
    reorder_rate: float = 0.10
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
    """Run the demo against the database at ``dsn``; return the exit code (0: no event lost or doubled)."""
    sandbox_port, serve_port = _free_port(), _free_port()
    sandbox_url, serve_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{serve_port}"
    env = {
        **os.environ,
        "BUNSYNC_DATABASE_URL": dsn,
        "BUNSYNC_PORT": str(serve_port),
        "BUNSYNC_WEBHOOK_SECRETS": DEFAULT_WEBHOOK_SECRET,
        "BUNSYNC_BUNJANG_BASE_URL": sandbox_url,
        "BUNSYNC_BUNJANG_ACCESS_KEY": DEFAULT_ACCESS_KEY,
        "BUNSYNC_BUNJANG_SECRET_KEY": DEFAULT_SECRET_KEY,
        "BUNSYNC_LOG_FORMAT": "json",
    }
    me = [sys.executable, "-m", "app.cli"]
    sandbox = await _start(
        [
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
            "--drop-rate",
            str(options.drop_rate),
            "--duplicate-rate",
            str(options.duplicate_rate),
            "--reorder-rate",
            str(options.reorder_rate),
        ],
        env,
        work / "sandbox.log",
    )
    serve = await _start([*me, "serve"], env, work / "serve.log")
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            await _wait_http(client, f"{sandbox_url}/_sandbox/clock", sandbox, "the sandbox")
            await _wait_http(client, f"{serve_url}/health/ready", serve, "bunsync serve")
            _say(
                f"sandbox Bunjang on {sandbox_url} (drop {options.drop_rate:.0%}, duplicate "
                f"{options.duplicate_rate:.0%}, reorder {options.reorder_rate:.0%}); bunsync on {serve_url}"
            )
            await client.post(f"{sandbox_url}/_sandbox/orders", json={"count": options.orders})
            for n in range(1, options.rounds + 1):
                await client.post(f"{sandbox_url}/_sandbox/advance", json={"steps": options.steps_per_round})
                counters = (await client.get(f"{sandbox_url}/_sandbox/counters")).json()["webhooks"]
                stored = await _stored(dsn)
                _say(
                    f"  round {n:>2}/{options.rounds}: sandbox emitted {counters['emitted']:>5}, "
                    f"dropped {counters['dropped']:>4}, delivered {counters['delivered']:>5}; "
                    f"bunsync stored {stored:>5}"
                )
            settle = await client.post(f"{sandbox_url}/_sandbox/webhooks/settle", params={"timeout": 120})
            counters = (await client.get(f"{sandbox_url}/_sandbox/counters")).json()["webhooks"]
        stored = await _stored(dsn)
        return _report(counters, stored, settle.status_code == 200, time.monotonic() - started, dsn)
    finally:
        await _stop(serve)
        await _stop(sandbox)


async def _stored(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM reporting.webhook_events"))
    finally:
        await conn.close()


def _report(counters: dict[str, Any], stored: int, settled: bool, elapsed: float, dsn: str) -> int:
    expected = counters["emitted"] - counters["dropped"]
    ok = settled and counters["failed"] == 0 and stored == expected
    _say("")
    _say(f"done in {elapsed:.1f} s")
    _say(
        f"  sandbox: {counters['emitted']} status changes, {counters['dropped']} webhooks dropped, "
        f"{counters['duplicated']} duplicated, {counters['reordered']} reordered, "
        f"{counters['retried']} retried, {counters['failed']} failed"
    )
    _say(
        f"  bunsync: {stored} events in the log, each delivered eventId exactly once "
        f"(expected {expected}: every change whose webhook was not dropped)"
    )
    _say(f"  {'OK: nothing delivered was lost or doubled' if ok else 'MISMATCH'}")
    _say(
        f"  the {counters['dropped']} dropped changes are what the reconciler (polling List Orders) recovers"
    )
    _say("")
    return 0 if ok else 1


def main(options: DemoOptions) -> int:
    """Set up the folder and the embedded database, run the demo, tear everything down."""
    if options.data_dir is None:
        work = Path(tempfile.mkdtemp(prefix="bunsync-demo-"))
        work.chmod(0o711)  # as root, PostgreSQL runs as an unprivileged user who must reach its folder
    else:
        work = options.data_dir
        work.mkdir(parents=True, exist_ok=True)
    _say(f"bunsync demo: working in {work} (logs: sandbox.log, serve.log, postgresql.log)")
    with EmbeddedPostgres(work / "db") as pg, asyncio.Runner() as runner:
        code = runner.run(run_demo(options, pg.dsn, work))
    _say(f"everything is stopped; the data stays in {work / 'db'}. To look at it, serve it again with")
    _say(f"  BUNSYNC_DATA_DIR={work / 'db'} bunsync serve   (and the sandbox's BUNSYNC_* values above)")
    _say(f"and, while it runs: psql -h {work / 'db' / 'run'} -U bunsync bunsync")
    return code
