"""Chaos: SIGKILL mid-burst, PostgreSQL restarts, Get Order down, three replicas and a lock holder killed.

Each test is bounded in time and traffic and talks only to loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.webhook.signature import sign
from tests.e2e.helpers import (
    SECRET,
    SandboxProcess,
    Serve,
    bunsync_env,
    fetch_rows,
    free_port,
    wait_in_sync,
    webhook_body,
)

pytestmark = pytest.mark.e2e
# The bursts (thousands of webhooks over 64 connections) load both cores; under pytest-xdist they run on
# one worker, one after another (`--dist loadgroup`), so two bursts never compete for the machine and a
# server starved by the other burst does not cut connections the test then counts as lost.
BURST = pytest.mark.xdist_group("bursts")

ROOT = Path(__file__).resolve().parents[2]


async def _send_all(
    urls: list[str],
    bodies: dict[str, bytes],
    *,
    concurrency: int = 64,
    on_ack: Callable[[int], None] | None = None,
    network_retries: int = 0,
) -> dict[str, int | str]:
    """POST every body (round-robin over ``urls``); eventId -> status code, or the error's name.

    ``network_retries``: re-send a delivery that met a network error (no answer at all) up to this many
    times, as Bunjang does (its documented policy: 3 retries). A keep-alive connection the server closes
    just as the client reuses it is such an error, and on a loaded machine it happens."""
    results: dict[str, int | str] = {}
    queue = list(bodies.items())
    async with httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker(n: int) -> None:
            while queue:
                event_id, body = queue.pop()
                for attempt in range(network_retries + 1):
                    headers = {"X-Bun-Webhook-Signature": sign(SECRET, int(time.time()), body)}
                    try:
                        r = await client.post(
                            f"{urls[n % len(urls)]}/webhooks/bunjang", content=body, headers=headers
                        )
                    except httpx.TransportError as exc:
                        results[event_id] = type(exc).__name__
                        if attempt < network_retries:
                            await asyncio.sleep(0.5 * 2**attempt)
                        continue
                    results[event_id] = r.status_code
                    if r.status_code == 204 and on_ack:
                        on_ack(len(results))
                    break

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return results


def _logged_event_ids(dsn: str) -> list[str]:
    return [r["event_id"] for r in fetch_rows(dsn, "SELECT event_id FROM reporting.webhook_events")]


def _synthetic_burst(sandbox: SandboxProcess, n: int, prefix: str) -> dict[str, bytes]:
    """``n`` distinct webhooks about the sandbox's items, each with its current status."""
    items = sandbox.admin("GET", "truth").json()["items"]
    return {
        f"{prefix}{i}": webhook_body(
            f"{prefix}{i}", it["orderId"], status=it["status"], item_id=it["orderItemId"]
        )
        for i, it in ((i, items[i % len(items)]) for i in range(n))
    }


@BURST
def test_sigkill_mid_burst_loses_nothing_acknowledged(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    sandbox = start_sandbox_process("--seed", "11")
    sandbox.admin("POST", "orders", json={"count": 60})
    sandbox.admin("POST", "advance", json={"steps": 60})
    port = free_port()
    env = bunsync_env(database_url, sandbox, port, BUNSYNC_RECONCILE_INTERVAL_S="3")
    serve = start_serve(env)
    bodies = _synthetic_burst(sandbox, 4000, "K")

    def kill_after_some(acked: int) -> None:
        if acked >= 1000 and serve.process.poll() is None:
            serve.process.send_signal(signal.SIGKILL)

    first = asyncio.run(_send_all([serve.url], bodies, on_ack=kill_after_some))
    acked = {e for e, code in first.items() if code == 204}
    assert 1000 <= len(acked) < len(bodies), "the kill must land in the middle of the burst"
    assert {c for c in first.values() if not isinstance(c, int)}, "some requests must have been cut off"
    assert set(c for c in first.values() if isinstance(c, int)) <= {204}  # never an error answer
    assert acked <= set(_logged_event_ids(database_url)), "an acknowledged webhook is missing"

    # Restart and re-send what was not acknowledged, as Bunjang would.
    serve = start_serve(env)
    rest = {e: b for e, b in bodies.items() if e not in acked}
    second = asyncio.run(_send_all([serve.url], rest, network_retries=3))
    assert set(second.values()) == {204}
    logged = _logged_event_ids(database_url)
    assert sorted(logged) == sorted(bodies), "every eventId exactly once"
    assert wait_in_sync(sandbox, database_url, 60) == []


@BURST
def test_postgres_restart_during_a_burst(start_serve: Callable[..., Serve]) -> None:
    top = Path(tempfile.mkdtemp(prefix="bunsync-chaos-", dir="/tmp"))
    top.chmod(0o711)
    try:
        data_dir = top / "data"
        serve = start_serve(
            bunsync_env(None, None, free_port(), BUNSYNC_DATA_DIR=str(data_dir), BUNSYNC_DATABASE_URL=""),
            "--no-fetch",
            "--no-scheduler",
        )
        results: dict[str, int | str] = {}
        stop = threading.Event()

        def restart_postgres() -> None:
            try:
                time.sleep(1.5)
                # -l: the restarted server must not inherit (and hold open) our output.
                argv = [
                    str(ROOT / "scripts" / "pg_ctl_unprivileged"),
                    "restart",
                    "-m",
                    "fast",
                    "-w",
                    "-D",
                    str(data_dir / "pg"),
                    "-l",
                    str(data_dir / "postgresql.log"),
                ]
                subprocess.run(
                    argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
                )
                time.sleep(1.5)
            finally:
                stop.set()

        async def burst() -> None:
            n = 0
            while not stop.is_set():
                batch = {
                    f"P{n + i}": webhook_body(
                        f"P{n + i}", 1 + (n + i) % 97, status="PAYMENT_RECEIVED", item_id=1
                    )
                    for i in range(200)
                }
                n += 200
                results.update(await _send_all([serve.url], batch, concurrency=32))

        restarter = threading.Thread(target=restart_postgres)
        restarter.start()
        asyncio.run(burst())
        restarter.join()
        codes = {c for c in results.values()}
        assert codes <= {204, 503}, f"only 204 (stored) or 503 (retry later) may be answered: {codes}"
        assert 503 in codes, "the restart should have been felt"
        # Recovered by itself: new webhooks are stored again.
        again = asyncio.run(
            _send_all([serve.url], {"after": webhook_body("after", 1, status="SHIP_READY", item_id=1)})
        )
        assert again == {"after": 204}
        acked = {e for e, c in results.items() if c == 204} | {"after"}
        dsn = f"postgresql://bunsync@/bunsync?host={data_dir / 'run'}"
        assert acked <= set(_logged_event_ids(dsn)), "an acknowledged webhook is missing"
        assert "Traceback" not in serve.logs()
        assert serve.stop() == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_get_order_down_backs_off_parks_dead_and_redrive_recovers(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox_process(
        "--webhook-url",
        f"http://127.0.0.1:{port}/webhooks/bunjang",
        "--seed",
        "13",
        "--get-order-error-rate",
        "1",
    )
    env = bunsync_env(database_url, sandbox, port, BUNSYNC_FETCH_MAX_ATTEMPTS="3")
    start_serve(env, "--no-scheduler")  # no reconcile: only Get Order can bring the views in sync
    sandbox.admin("POST", "orders", json={"count": 5})
    end = time.monotonic() + 90
    while (
        fetch_rows(database_url, "SELECT count(*) AS n FROM bunsync.fetch_queue WHERE dead_at IS NOT NULL")[
            0
        ]["n"]
        < 5
    ):
        assert time.monotonic() < end, "fetches were not parked as dead"
        time.sleep(0.5)
    calls = sum(sandbox.admin("GET", "counters").json()["api"]["get_order"].values())
    # Bounded: 5 orders x 3 attempts x at most 4 quick tries inside each attempt; no hot loop.
    assert 15 <= calls <= 60
    # No hot loop on dead jobs: wait until the fetch workers have polled the queue several more times
    # (its scans, as PostgreSQL counts them), then no Get Order call may have been added.
    scans = _fetch_queue_scans(database_url)
    end = time.monotonic() + 30
    while _fetch_queue_scans(database_url) < scans + 8:
        assert time.monotonic() < end, "the fetch workers stopped polling the queue"
        time.sleep(0.2)
    assert sum(sandbox.admin("GET", "counters").json()["api"]["get_order"].values()) == calls
    reasons = fetch_rows(database_url, "SELECT dead_reason FROM bunsync.fetch_queue")
    assert all(r["dead_reason"].startswith("gave up after 3 attempts") for r in reasons)

    sandbox.admin("PATCH", "faults", json={"getOrderErrorRate": 0})
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "redrive"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "re-queued 5" in done.stdout, done.stderr
    assert wait_in_sync(sandbox, database_url, 30) == []


def _projector_holder(dsn: str, projection: str) -> int | None:
    rows = fetch_rows(
        dsn,
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
        "AND l.classid = (hashtext('bunsync.projector')::bigint & 4294967295)::oid "
        "AND l.objid = (hashtext($1)::bigint & 4294967295)::oid",
        projection,
    )
    return int(rows[0]["application_name"].rsplit(":", 1)[1]) if rows else None


@BURST
def test_three_replicas_share_the_work_and_take_over_from_a_killed_one(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    ports = [free_port() for _ in range(3)]
    sandbox = start_sandbox_process(
        "--webhook-url", f"http://127.0.0.1:{ports[0]}/webhooks/bunjang", "--seed", "17"
    )
    replicas = [
        start_serve(bunsync_env(database_url, sandbox, p, BUNSYNC_RECONCILE_INTERVAL_S="1")) for p in ports
    ]
    sandbox.admin("POST", "orders", json={"count": 30})
    sandbox.admin("POST", "advance", json={"steps": 40})
    # Our own deliveries spread over the three, each sent twice to different replicas (a retry that
    # lands elsewhere): stored once.
    bodies = _synthetic_burst(sandbox, 600, "R")
    urls = [r.url for r in replicas]
    assert set(asyncio.run(_send_all(urls, bodies, network_retries=3)).values()) == {204}
    assert set(asyncio.run(_send_all(urls[1:] + urls[:1], bodies, network_retries=3)).values()) == {204}
    assert wait_in_sync(sandbox, database_url, 60) == []
    ids = [e for e in _logged_event_ids(database_url) if e.startswith("R")]
    assert sorted(ids) == sorted(bodies)

    # No double fetch: every successful Get Order call became exactly one observation.
    observed = fetch_rows(
        database_url, "SELECT count(*) AS n FROM bunsync.event_log WHERE type = 'order.observed'"
    )
    assert sandbox.admin("GET", "counters").json()["api"]["get_order"].get("200", 0) == observed[0]["n"]
    # One reconciler at a time: passes never overlap.
    passes = fetch_rows(
        database_url,
        "SELECT started_at, finished_at FROM bunsync.reconcile_passes "
        "WHERE finished_at IS NOT NULL ORDER BY started_at",
    )
    assert len(passes) >= 2
    assert all(a["finished_at"] <= b["started_at"] for a, b in itertools.pairwise(passes))

    # Kill the process holding the order_item_status projector: another takes over, views stay right.
    holder = _projector_holder(database_url, "order_item_status")
    victim = next(r for r in replicas if r.process.pid == holder)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    end = time.monotonic() + 30
    while (new := _projector_holder(database_url, "order_item_status")) in (None, holder):
        assert time.monotonic() < end, "no replica took over the projector"
        time.sleep(0.2)
    assert new in {r.process.pid for r in replicas if r is not victim}
    sandbox.admin("POST", "advance", json={"steps": 40})  # (webhooks to a dead replica: the reconciler helps)
    assert wait_in_sync(sandbox, database_url, 60) == []


@BURST
def test_sigterm_mid_burst_finishes_what_it_accepted_and_exits_cleanly(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    serve = start_serve(bunsync_env(database_url, None, free_port()), "--no-fetch")
    bodies = {
        f"T{i}": webhook_body(f"T{i}", 1 + i % 50, status="PAYMENT_RECEIVED", item_id=1) for i in range(3000)
    }

    stopping: list[bool] = []

    def stop_after_some(acked: int) -> None:
        # One SIGTERM, as a supervisor sends: a second one during a slow shutdown (a loaded machine)
        # could land after the event loop has closed and its handler is gone.
        if acked >= 800 and not stopping:
            stopping.append(True)
            serve.process.send_signal(signal.SIGTERM)

    results = asyncio.run(_send_all([serve.url], bodies, on_ack=stop_after_some))
    assert serve.process.wait(30) == 0
    answered = {c for c in results.values() if isinstance(c, int)}
    assert answered <= {204}, f"a request in flight at shutdown got {answered}"
    acked = {e for e, c in results.items() if c == 204}
    assert 800 <= len(acked) < len(bodies)
    assert acked <= set(_logged_event_ids(database_url))
    logs = serve.logs()
    assert "service_stopped" in logs and "task_died" not in logs


def _fetch_queue_scans(dsn: str) -> int:
    """How many times ``bunsync.fetch_queue`` was scanned (each idle worker's claim is one scan); the
    statistics reach this view within about a second of the scans."""
    rows = fetch_rows(
        dsn,
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS n FROM pg_stat_user_tables"
        " WHERE schemaname = 'bunsync' AND relname = 'fetch_queue'",
    )
    return int(rows[0]["n"])
