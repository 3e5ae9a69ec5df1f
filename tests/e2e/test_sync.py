"""The whole product against the sandbox: webhooks, fetches, projections and reconcile reach the truth."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest

from app.demo import Mismatch, mismatches_against_truth
from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from tests.e2e.conftest import SandboxProcess, Serve, free_port

pytestmark = pytest.mark.e2e


def _env(database_url: str, sandbox: SandboxProcess, port: int, **extra: str) -> dict[str, str]:
    return {
        "BUNSYNC_DATABASE_URL": database_url,
        "BUNSYNC_PORT": str(port),
        "BUNSYNC_BUNJANG_BASE_URL": sandbox.url,
        "BUNSYNC_BUNJANG_ACCESS_KEY": DEFAULT_ACCESS_KEY,
        "BUNSYNC_BUNJANG_SECRET_KEY": DEFAULT_SECRET_KEY,
        **extra,
    }


def _wait_in_sync(sandbox: SandboxProcess, database_url: str, deadline_s: float) -> list[Mismatch]:
    end = time.monotonic() + deadline_s
    while True:
        truth = sandbox.admin("GET", "truth").json()["items"]
        wrong = asyncio.run(mismatches_against_truth(truth, database_url))
        if not wrong or time.monotonic() > end:
            return wrong
        time.sleep(0.3)


def _scalar(database_url: str, sql: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_signed_webhooks_become_rows_with_the_api_times(
    database_url: str, start_sandbox: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox("--webhook-url", f"http://127.0.0.1:{port}/webhooks/bunjang", "--seed", "3")
    # Without the scheduler: webhooks and the fetches they trigger alone must get it right.
    start_serve(_env(database_url, sandbox, port), "--no-scheduler")
    sandbox.admin("POST", "orders", json={"count": 10})
    sandbox.admin("POST", "advance", json={"steps": 25})
    assert _wait_in_sync(sandbox, database_url, 30) == []
    assert (
        _scalar(
            database_url, "SELECT count(*) FROM reporting.order_item_status WHERE status_updated_at IS NULL"
        )
        == 0
    )
    assert (
        _scalar(database_url, "SELECT count(*) FROM reporting.order_item_status WHERE source <> 'get_order'")
        == 0
    )
    history = _scalar(database_url, "SELECT count(*) FROM reporting.order_item_history")
    assert history >= _scalar(database_url, "SELECT count(*) FROM reporting.order_item_status")


def test_thirty_percent_of_webhooks_dropped_are_recovered_by_reconciling(
    database_url: str, start_sandbox: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox(
        "--webhook-url",
        f"http://127.0.0.1:{port}/webhooks/bunjang",
        "--seed",
        "5",
        "--drop-rate",
        "0.3",
        "--duplicate-rate",
        "0.1",
        "--reorder-rate",
        "0.2",
    )
    start_serve(_env(database_url, sandbox, port, BUNSYNC_RECONCILE_INTERVAL_S="2"))
    sandbox.admin("POST", "orders", json={"count": 40})
    for _ in range(4):
        sandbox.admin("POST", "advance", json={"steps": 20})
    counters = sandbox.admin("GET", "counters").json()["webhooks"]
    assert counters["dropped"] > 10
    assert _wait_in_sync(sandbox, database_url, 60) == []
    assert _scalar(database_url, "SELECT count(*) FROM bunsync.event_log WHERE type = 'order.listed'") > 0
    assert _scalar(database_url, "SELECT count(*) FROM bunsync.reconcile_passes WHERE ok") >= 1


def test_an_outage_is_fully_recovered(
    database_url: str, start_sandbox: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox("--webhook-url", f"http://127.0.0.1:{port}/webhooks/bunjang", "--seed", "7")
    env = _env(database_url, sandbox, port, BUNSYNC_RECONCILE_INTERVAL_S="2")
    first = start_serve(env)
    sandbox.admin("POST", "orders", json={"count": 15})
    assert _wait_in_sync(sandbox, database_url, 30) == []
    assert first.stop() == 0
    # bunsync is down: every webhook of these changes fails and Bunjang gives up on it.
    sandbox.admin("POST", "advance", json={"steps": 30})
    sandbox.admin("POST", "webhooks/settle", params={"timeout": 60})
    assert sandbox.admin("GET", "counters").json()["webhooks"]["failed"] > 0
    start_serve(env)
    assert _wait_in_sync(sandbox, database_url, 60) == []
