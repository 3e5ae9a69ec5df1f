"""The whole product against the sandbox: webhooks, fetches, projections and reconcile reach the truth."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.helpers import SandboxProcess, Serve, bunsync_env, free_port, scalar, wait_in_sync

pytestmark = pytest.mark.e2e


def test_signed_webhooks_become_rows_with_the_api_times(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox_process(
        "--webhook-url", f"http://127.0.0.1:{port}/webhooks/bunjang", "--seed", "3"
    )
    # Without the scheduler: webhooks and the fetches they trigger alone must get it right.
    start_serve(bunsync_env(database_url, sandbox, port), "--no-scheduler")
    sandbox.admin("POST", "orders", json={"count": 10})
    sandbox.admin("POST", "advance", json={"steps": 25})
    # Every delivery in first: a webhook of the current status logged after its order's Get Order
    # answer shows it (no API time) until the fetch it triggers answers, so "in sync" seen before the
    # last deliveries could turn provisional again before the checks below.
    sandbox.admin("POST", "webhooks/settle", params={"timeout": 60})
    assert wait_in_sync(sandbox, database_url, 30) == []
    assert (
        scalar(
            database_url, "SELECT count(*) FROM reporting.order_item_status WHERE status_updated_at IS NULL"
        )
        == 0
    )
    assert (
        scalar(database_url, "SELECT count(*) FROM reporting.order_item_status WHERE source <> 'get_order'")
        == 0
    )
    history = scalar(database_url, "SELECT count(*) FROM reporting.order_item_history")
    assert history >= scalar(database_url, "SELECT count(*) FROM reporting.order_item_status")


def test_thirty_percent_of_webhooks_dropped_are_recovered_by_reconciling(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox_process(
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
    start_serve(bunsync_env(database_url, sandbox, port, BUNSYNC_RECONCILE_INTERVAL_S="2"))
    sandbox.admin("POST", "orders", json={"count": 40})
    for _ in range(4):
        sandbox.admin("POST", "advance", json={"steps": 20})
    counters = sandbox.admin("GET", "counters").json()["webhooks"]
    assert counters["dropped"] > 10
    assert wait_in_sync(sandbox, database_url, 60) == []
    assert scalar(database_url, "SELECT count(*) FROM bunsync.event_log WHERE type = 'order.listed'") > 0
    assert scalar(database_url, "SELECT count(*) FROM bunsync.reconcile_passes WHERE ok") >= 1


def test_an_outage_is_fully_recovered(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox_process(
        "--webhook-url", f"http://127.0.0.1:{port}/webhooks/bunjang", "--seed", "7"
    )
    env = bunsync_env(database_url, sandbox, port, BUNSYNC_RECONCILE_INTERVAL_S="2")
    first = start_serve(env)
    sandbox.admin("POST", "orders", json={"count": 15})
    assert wait_in_sync(sandbox, database_url, 30) == []
    assert first.stop() == 0
    # bunsync is down: every webhook of these changes fails and Bunjang gives up on it.
    sandbox.admin("POST", "advance", json={"steps": 30})
    sandbox.admin("POST", "webhooks/settle", params={"timeout": 60})
    assert sandbox.admin("GET", "counters").json()["webhooks"]["failed"] > 0
    start_serve(env)
    assert wait_in_sync(sandbox, database_url, 60) == []
