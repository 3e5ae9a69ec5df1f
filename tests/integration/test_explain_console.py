"""explain and the console against a real PostgreSQL: explain equals the views for orders whose
deliveries were dropped, duplicated and reordered; GET /api/orders/{id} equals it; pages answer 200 /
404; redrive from the console re-queues a dead fetch, and needs the token when one is set."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import httpx
import msgspec

from app.console.routes import console_handlers
from app.http.operator_app import create_admin_app
from app.http.refusals import RefusalLog
from app.http.webhook_app import Services
from app.ops import explain
from app.settings import Settings
from tests.fixtures.events import append, at, listed, observed, project_all, webhook

TOKEN = "console-test-token-0123456789"
LIFECYCLE = ["PAYMENT_RECEIVED", "SHIP_READY", "IN_TRANSIT", "DELIVERY_COMPLETED", "PURCHASE_CONFIRM"]


def _events(rng: random.Random, order_id: int) -> list[Any]:
    """One order of two items through its lifecycle: a webhook and a fetch per change, some webhooks
    dropped, some deliveries repeated, a stale fetch, an unknown status, all in shuffled order."""
    items = [order_id * 10 + 1, order_id * 10 + 2]
    out: list[Any] = []
    steps = LIFECYCLE[: rng.randint(2, len(LIFECYCLE))] + (["WAITING_REFUND"] if order_id % 3 == 0 else [])
    for n, status in enumerate(steps):
        t = at(100 * n)
        if rng.random() > 0.3:  # 30 % of webhooks dropped
            hook = webhook(order_id, [(i, status) for i in items], at(100 * n + 2))
            out += [hook, hook] if rng.random() < 0.3 else [hook]  # duplicates: the same event again
        if rng.random() > 0.2 or n == len(steps) - 1:
            out.append(observed(order_id, [(i, status, t) for i in items]))
        if rng.random() < 0.3:
            out.append(listed(order_id, [(items[0], status, t)]))
    if rng.random() < 0.5:  # a late webhook of an old state, re-signed later than the API state
        out.append(webhook(order_id, [(items[1], steps[0])], at(100 * len(steps) + 50)))
    rng.shuffle(out)
    return out


async def _drive(pool: asyncpg.Pool, orders: range) -> None:
    rng = random.Random(12)
    for order_id in orders:
        for event in _events(rng, order_id):
            await append(pool, event)
    await project_all(pool)


async def test_explain_json_equals_the_views_for_every_item(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await _drive(pool, range(1, 31))
    for order_id in range(1, 31):
        found = await explain.explain(pool, order_id)
        assert found is not None
        shown = msgspec.json.decode(explain.encode_json(found[0]))
        view = await admin.fetch(
            "SELECT order_item_id, status, source, status_updated_at FROM reporting.order_item_status "
            "WHERE order_id = $1 ORDER BY order_item_id",
            order_id,
        )
        assert [(i["order_item_id"], i["status"], i["source"]) for i in shown["items"]] == [
            (r["order_item_id"], r["status"], r["source"]) for r in view
        ]
        for item, row in zip(found[0].items, view, strict=True):
            assert item.status_updated_at == row["status_updated_at"]
            assert item.reason.startswith(item.status)
        assert [e["position"] for e in shown["events"]] == sorted(e["position"] for e in shown["events"])
    assert await explain.explain(pool, 999_999) is None


def AsyncTestClient(app: Any) -> httpx.AsyncClient:
    """A client calling the app on this test's event loop (the pool belongs to it)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


def _app(pool: asyncpg.Pool, token: str | None) -> Any:
    env = {"BUNSYNC_ADMIN_TOKEN": token} if token else {}
    services = Services(settings=Settings.from_env(env, is_tty=False), pool=pool, refusals=RefusalLog())
    return create_admin_app(services, extra_handlers=console_handlers(services))


async def test_api_equals_cli_and_pages_answer(pool: asyncpg.Pool) -> None:
    await _drive(pool, range(1, 4))
    async with AsyncTestClient(_app(pool, None)) as client:
        api = await client.get("/api/orders/2")
        found = await explain.explain(pool, 2)
        assert found is not None and api.status_code == 200
        assert api.json() == msgspec.json.decode(explain.encode_json(found[0]))
        assert (await client.get("/api/orders/77")).status_code == 404
        for path in (
            "/",
            "/orders/2",
            "/dead-letters",
            "/parked",
            "/reconcile",
            "/sign-in",
            "/static/console.css",
        ):
            assert (await client.get(path)).status_code == 200, path
        for path in ("/orders/77", "/search?q=nothing-here", "/static/other.js"):
            assert (await client.get(path)).status_code == 404, path
        page = (await client.get("/orders/2")).text
        assert "<personal>" in page or "&lt;personal&gt;" in page  # the log's markers, masked payloads
        item = await client.get("/search?q=21", follow_redirects=False)
        assert item.status_code == 303 and item.headers["location"] == "/orders/2"


async def _dead(admin: asyncpg.Connection, order_id: int) -> None:
    await admin.execute(
        "INSERT INTO bunsync.fetch_queue (order_id, attempts, dead_at, dead_reason) "
        "VALUES ($1, 12, now(), 'gone')",
        order_id,
    )


async def test_redrive_from_the_console_needs_the_token_and_requeues(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    await _dead(admin, 5)
    async with AsyncTestClient(_app(pool, TOKEN)) as client:
        assert (await client.get("/dead-letters")).status_code == 401
        html = await client.get("/dead-letters", headers={"Accept": "text/html"}, follow_redirects=False)
        assert html.status_code == 303 and html.headers["location"] == "/sign-in"
        refused = await client.post("/dead-letters/redrive", data={"order_id": "5", "confirmed": "yes"})
        assert refused.status_code == 401
        assert await admin.fetchval("SELECT dead_at IS NOT NULL FROM bunsync.fetch_queue WHERE order_id = 5")
        # Sign in with the form: the session cookie then authorises pages and (with the CSRF token) POSTs.
        form = (await client.get("/sign-in")).text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        wrong = await client.post("/sign-in", data={"csrf": csrf, "token": "nope"}, follow_redirects=False)
        assert wrong.headers["location"] == "/sign-in?error=1"
        ok = await client.post("/sign-in", data={"csrf": csrf, "token": TOKEN}, follow_redirects=False)
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
        assert (await client.get("/dead-letters")).status_code == 200
        no_csrf = await client.post("/dead-letters/redrive", data={"order_id": "5", "confirmed": "yes"})
        assert no_csrf.status_code == 403
        confirm = await client.post("/dead-letters/redrive", data={"order_id": "5", "csrf": csrf})
        assert confirm.status_code == 200 and "Re-queue the dead fetch of order 5?" in confirm.text
        assert await admin.fetchval("SELECT dead_at IS NOT NULL FROM bunsync.fetch_queue WHERE order_id = 5")
        done = await client.post(
            "/dead-letters/redrive",
            data={"order_id": "5", "csrf": csrf, "confirmed": "yes"},
            follow_redirects=False,
        )
        assert done.status_code == 303
    row = await admin.fetchrow("SELECT dead_at, attempts FROM bunsync.fetch_queue WHERE order_id = 5")
    assert row is not None and row["dead_at"] is None and row["attempts"] == 0  # pending again


def test_the_cli_prints_the_same_json_and_exits_1_for_an_unknown_order(database_url: str) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    from app.store import db

    async def seed() -> None:
        pool = await db.create_pool(database_url, min_size=1, max_size=2)
        try:
            await append(pool, webhook(42, [(421, "PAYMENT_RECEIVED")], at(0)))
            await append(pool, observed(42, [(421, "SHIP_READY", at(60))]))
            await project_all(pool)
        finally:
            await pool.close()

    asyncio.run(seed())
    env = {**os.environ, "BUNSYNC_DATABASE_URL": database_url, "BUNSYNC_LOG_FORMAT": "json"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "explain", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    unknown = cli("77")
    assert unknown.returncode == 1 and "never seen order 77" in unknown.stderr
    shown = cli("42", "--json")
    assert shown.returncode == 0, shown.stderr
    items = msgspec.json.decode(shown.stdout)["items"]
    assert [(i["order_item_id"], i["status"], i["source"]) for i in items] == [
        (421, "SHIP_READY", "get_order")
    ]
    text = cli("42")
    assert text.returncode == 0 and "SHIP_READY from Get Order" in text.stdout
