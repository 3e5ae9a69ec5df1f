"""Helpers shared by the end-to-end tests: signed webhooks, the service's environment, database reads,
and waiting until the views equal the sandbox's truth."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from app.sandbox.demo import Mismatch, mismatches_against_truth
from app.webhook.signature import sign
from tests.e2e.conftest import SECRET, SandboxProcess, Serve


def webhook_body(
    event_id: str,
    order_id: int = 100,
    *,
    status: str = "PAYMENT_RECEIVED",
    version: str = "v1",
    item_id: int | None = None,
) -> bytes:
    """An ``order.status.changed`` body for one item (item id ``<order_id>1`` unless given)."""
    item = item_id if item_id is not None else int(f"{order_id}1")
    return (
        f'{{"eventId":"{event_id}","eventType":"order.status.changed","payloadVersion":"{version}",'
        f'"data":{{"orderId":{order_id},"orderItems":[{{"orderItemId":{item},"pid":5,"orderStatus":"{status}"}}]}}}}'
    ).encode()


def post_webhook(
    serve: Serve,
    body: bytes,
    *,
    secret: str = SECRET,
    t: int | None = None,
    header: str | None = None,
    **headers: str,
) -> httpx.Response:
    """POST ``body`` signed at ``t`` (default now) with ``secret``, or with the raw ``header`` given."""
    signature = header if header is not None else sign(secret, int(time.time()) if t is None else t, body)
    return httpx.post(
        f"{serve.url}/webhooks/bunjang",
        content=body,
        headers={"X-Bun-Webhook-Signature": signature, "Content-Type": "application/json", **headers},
        timeout=10,
    )


def bunsync_env(
    database_url: str | None, sandbox: SandboxProcess | None, port: int, **extra: str
) -> dict[str, str]:
    """Environment for ``bunsync serve`` on ``port``, against the database and sandbox given."""
    env = {"BUNSYNC_PORT": str(port), **extra}
    if database_url:
        env["BUNSYNC_DATABASE_URL"] = database_url
    if sandbox:
        env.update(
            BUNSYNC_BUNJANG_BASE_URL=sandbox.url,
            BUNSYNC_BUNJANG_ACCESS_KEY=DEFAULT_ACCESS_KEY,
            BUNSYNC_BUNJANG_SECRET_KEY=DEFAULT_SECRET_KEY,
        )
    return env


def fetch_rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of one query (from a synchronous test)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def scalar(dsn: str, sql: str) -> int:
    """The integer one query returns."""
    return int(fetch_rows(dsn, sql)[0][0])


def wait_in_sync(sandbox: SandboxProcess, dsn: str, deadline_s: float) -> list[Mismatch]:
    """Wait until ``reporting.order_item_status`` equals the sandbox's truth; the mismatches left."""
    end = time.monotonic() + deadline_s
    while True:
        truth = sandbox.admin("GET", "truth").json()["items"]
        wrong = asyncio.run(mismatches_against_truth(truth, dsn))
        if not wrong or time.monotonic() > end:
            return wrong
        time.sleep(0.3)
