"""End to end: ``bunsync serve`` forwards the change feed to a consumer over real HTTP.

The consumer here is a small threaded HTTP server in the test (loopback only): it verifies each
Standard Webhooks signature, can be down or answer 500 at random, and records what it got.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import pytest

from app.feed import signing
from app.feed.forwarder import MAX_UNRECORDED
from app.store import event_log
from tests.e2e.helpers import Serve, bunsync_env, free_port, scalar
from tests.fixtures.events import at, listed, observed, webhook

pytestmark = pytest.mark.e2e
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = signing.parse_secret(SECRET)
STATUSES = ["PAYMENT_RECEIVED", "SHIP_READY", "IN_TRANSIT", "DELIVERY_COMPLETED", "PURCHASE_CONFIRM"]


class Consumer:
    """The partner's endpoint: records (webhook-id, body, signature valid) of every request it got."""

    def __init__(self, port: int, fail_rate: float = 0.0, delay_s: float = 0.0) -> None:
        self.port, self.fail_rate, self.delay_s = port, fail_rate, delay_s
        self.received: list[tuple[str, dict[str, Any], bool]] = []  # accepted (2xx) only
        self.requests = 0
        self.lock = threading.Lock()
        self.rng = random.Random(5)
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                msg_id = self.headers["webhook-id"]
                valid = signing.verify(
                    KEY,
                    msg_id,
                    int(self.headers["webhook-timestamp"]),
                    body,
                    self.headers["webhook-signature"],
                )
                time.sleep(consumer.delay_s)
                with consumer.lock:
                    consumer.requests += 1
                    fail = consumer.rng.random() < consumer.fail_rate
                    if not fail:
                        consumer.received.append((msg_id, json.loads(body), valid))
                self.send_response(500 if fail else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def ids(self) -> list[str]:
        with self.lock:
            return [i for i, _, _ in self.received]


def append_workload(dsn: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    events = []
    for k in range(n):
        item = rng.choice(range(10, 30))
        status, t = rng.choice(STATUSES), at(rng.randint(0, 5000))
        kind = rng.random()
        if kind < 0.2:
            events.append(webhook(item // 2, [(item, status)], t))
        elif kind < 0.7:
            events.append(observed(item // 2, [(item, status, t)]))
        else:
            events.append(listed(item // 2, [(item, status, t)]))
        del k

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for i in range(0, len(events), 10):
                await event_log.append(conn, events[i : i + 10])
        finally:
            await conn.close()

    asyncio.run(run())


def wait_for(check: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        time.sleep(0.05)


def feed(dsn: str) -> list[int]:
    from tests.e2e.helpers import fetch_rows

    return [r[0] for r in fetch_rows(dsn, "SELECT feed_position FROM bunsync.item_changes ORDER BY 1")]


def test_a_consumer_down_then_failing_at_random_gets_every_change_in_order_signed(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    consumer = Consumer(free_port(), fail_rate=0.3)
    env = bunsync_env(
        database_url,
        None,
        free_port(),
        BUNSYNC_FORWARD_URL=f"http://127.0.0.1:{consumer.port}/hook",
        BUNSYNC_FORWARD_SECRET=SECRET,
    )
    serve = start_serve(env, "--no-scheduler")
    append_workload(database_url, 120, seed=1)
    wait_for(lambda: len(feed(database_url)) > 20, 30, "the projector fills the feed")
    # The consumer has been down all along: the forwarder retries, the feed waits, /status says so.
    assert serve.admin_url
    wait_for(
        lambda: httpx.get(f"{serve.admin_url}/status").json()["forwarding"]["state"] == "retrying",
        20,
        "the forwarder reports retrying",
    )
    status = httpx.get(f"{serve.admin_url}/status").json()["forwarding"]
    assert status["delivered_through"] == 0 and status["last_error"]
    consumer.start()
    try:
        positions = feed(database_url)
        wait_for(lambda: len(set(consumer.ids())) >= len(positions), 120, "every change delivered")
        got = consumer.received
        assert all(valid for _, _, valid in got), "every request carries a valid signature"
        ids = [i for i, _, _ in got]
        assert ids == [f"bunsync-change-{p}" for p in positions], "in feed order, each once once accepted"
        per_item: dict[int, list[str]] = {}
        for _, body, _ in got:
            assert body["type"] == "order_item.status_changed"
            per_item.setdefault(body["data"]["order_item_id"], []).append(body["data"]["status_updated_at"])
        assert all(ts == sorted(ts) for ts in per_item.values())
        wait_for(
            lambda: httpx.get(f"{serve.admin_url}/status").json()["forwarding"]["lag_changes"] == 0,
            10,
            "no lag left",
        )
        page = httpx.get(f"{serve.admin_url}/feed", params={"after": 0, "limit": 1000}).json()
        assert [c["feed_position"] for c in page["changes"]] == positions and page["next"] == positions[-1]
    finally:
        consumer.stop()


def test_sigkill_mid_forwarding_resends_at_most_the_unrecorded_changes_in_order_with_the_same_id(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    consumer = Consumer(free_port(), delay_s=0.05)
    consumer.start()
    env = bunsync_env(
        database_url,
        None,
        free_port(),
        BUNSYNC_FORWARD_URL=f"http://127.0.0.1:{consumer.port}/hook",
        BUNSYNC_FORWARD_SECRET=SECRET,
    )
    try:
        serve = start_serve(env, "--no-scheduler")
        append_workload(database_url, 200, seed=2)
        wait_for(lambda: len(consumer.ids()) >= 10, 60, "forwarding under way")
        serve.stop(signal.SIGKILL)
        sent_before = len(consumer.ids())
        start_serve({**env, "BUNSYNC_PORT": str(free_port())}, "--no-scheduler")
        positions = feed(database_url)
        wait_for(lambda: len(set(consumer.ids())) >= len(positions), 120, "every change delivered")
        ids = consumer.ids()
        repeats = len(ids) - len(set(ids))
        # The change in flight, and those acknowledged but not yet recorded (the cursor is written
        # beside the sending, at most MAX_UNRECORDED behind): the run just before the kill, in order.
        assert repeats <= MAX_UNRECORDED + 1, f"{repeats} changes sent twice"
        expected = [f"bunsync-change-{p}" for p in positions]
        again = [i for k, i in enumerate(ids) if i in ids[:k]]  # the second copies, in arrival order
        if again:
            start = expected.index(again[0])
            assert again == expected[start : start + len(again)], "one run of consecutive changes, in order"
        assert sorted(set(ids), key=lambda i: int(i.rsplit("-", 1)[1])) == expected
        if repeats:
            bodies = [b for i, b, _ in consumer.received if ids.count(i) == 2]
            assert bodies[0] == bodies[1], "a re-sent change is the same message"
        assert sent_before < len(positions)
        assert scalar(database_url, "SELECT delivered_through FROM bunsync.feed_forwarder") == positions[-1]
    finally:
        consumer.stop()
