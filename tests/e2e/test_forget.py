"""``bunsync forget`` and ``bunsync migrate --redact-log`` through the real command line, against a
database that real ``bunsync serve`` filled from the sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable

from app.privacy.dump_scan import scan
from app.privacy.personal_data import leaves
from tests.e2e.helpers import SandboxProcess, Serve, bunsync_env, fetch_rows, free_port, wait_in_sync


def _bunsync(database_url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BUNSYNC_DATABASE_URL": database_url, "BUNSYNC_LOG_FORMAT": "json", **extra}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _personal_values(database_url: str) -> dict[int, list[str]]:
    rows = fetch_rows(database_url, "SELECT order_id, fields::text AS f FROM bunsync.personal_data")
    return {r["order_id"]: leaves(json.loads(r["f"])) for r in rows}


def test_forget_erases_through_the_cli_and_the_dump_is_clean(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox_process(
        "--webhook-url", f"http://127.0.0.1:{port}/webhooks/bunjang", "--seed", "7"
    )
    serve = start_serve(bunsync_env(database_url, sandbox, port), "--no-scheduler")
    sandbox.admin("POST", "orders", json={"count": 5})
    assert wait_in_sync(sandbox, database_url, 30) == []
    held = _personal_values(database_url)
    assert len(held) == 5
    target, other = sorted(held)[:2]
    own = [v for v in held[target] if v not in held[other] and len(v.encode()) >= 6]
    assert set(asyncio.run(scan(database_url, own))) == set(own)  # there before

    done = _bunsync(database_url, "forget", "--order", str(target), "--order", "999999999")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert (
        lines[0] == f"bunsync: order {target}: erased (request): /data/delivery/address: address1, "
        "address2, name, phone, zipCode"
    )
    assert lines[1] == "bunsync: order 999999999: unknown (the log has never seen it); nothing erased"
    assert not any(v in done.stdout + done.stderr for v in own)  # says what, never the values
    assert asyncio.run(scan(database_url, own)) == {}
    assert set(asyncio.run(scan(database_url, held[other]))) == set(held[other])

    again = _bunsync(database_url, "forget", "--order", str(target))
    assert again.returncode == 0 and "already forgotten (request" in again.stdout
    # New status changes of the forgotten order are fetched, and still keep nothing personal.
    sandbox.admin("POST", f"orders/{target}/advance")
    assert wait_in_sync(sandbox, database_url, 30) == []
    assert target not in _personal_values(database_url)
    assert asyncio.run(scan(database_url, own)) == {}
    assert not any(v in serve.logs() for v in own)  # nor in the service's logs

    expired = _bunsync(database_url, "forget", "--expired", BUNSYNC_PII_RETENTION_DAYS="36500")
    assert expired.returncode == 0 and "0 order(s) past the 36500-day retention erased" in expired.stdout
    rows = fetch_rows(database_url, "SELECT order_id, reason FROM reporting.erasures")
    assert [tuple(r) for r in rows] == [(target, "request")]


def test_migrate_redact_log_through_the_cli(database_url: str) -> None:
    address = '{"name": "옛날구매자", "phone": "010-3333-4444"}'
    old = '{"data": {"order": {"id": 7}, "delivery": {"address": ' + address + "}}}"
    fetch_rows(
        database_url,
        "INSERT INTO bunsync.event_log (stream, type, payload, source, idempotency_key) "
        "VALUES ('order-7', 'order.observed', $1::jsonb, 'get_order', 'get_order:7:old')",
        old,
    )
    done = _bunsync(database_url, "migrate", "--redact-log")
    assert done.returncode == 0, done.stderr
    assert "redacted the personal data of 1 log row(s)" in done.stdout
    log_text = fetch_rows(database_url, "SELECT string_agg(payload::text, '') AS t FROM bunsync.event_log")[
        0
    ]["t"]
    assert "옛날구매자" not in log_text and "010-3333-4444" not in log_text
    assert (
        "redacted the personal data of 0 log row(s)"
        in _bunsync(database_url, "migrate", "--redact-log").stdout
    )
