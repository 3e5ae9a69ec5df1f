"""Webhook delivery: envelope, signatures (checked by bunsync's own verifier), retry policy, fault knobs."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import msgspec
import pytest

from app.sandbox.delivery import is_retryable, retry_delays
from app.sandbox.faults import FaultSettings
from app.sandbox.server import bind, url_of
from app.webhook.signature import HEADER, parse_header, verify

pytestmark = pytest.mark.timeout(60)

SECRET = "test-webhook-secret"
FAST = {"webhook_secret": SECRET, "webhook_retry_base_s": 0.05}


def decode(body: bytes) -> dict[str, Any]:
    value: dict[str, Any] = msgspec.json.decode(body)
    return value


def test_default_retry_schedule_is_1_2_4_seconds_with_50_percent_jitter() -> None:
    rng = random.Random(0)
    samples = [retry_delays(rng) for _ in range(2000)]
    assert all(len(s) == 3 for s in samples)
    for i, nominal in enumerate((1.0, 2.0, 4.0)):
        values = [s[i] for s in samples]
        assert nominal * 0.5 <= min(values) and max(values) <= nominal * 1.5
        assert abs(sum(values) / len(values) - nominal) < nominal * 0.05
        assert max(values) - min(values) > nominal * 0.9  # the jitter really spreads them
    assert sum(max(s) for s in zip(*samples, strict=True)) < 60  # well inside the ~60 s bound


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (None, True),
        (500, True),
        (503, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
    ],
)
def test_which_answers_are_retried(status: int | None, retried: bool) -> None:
    assert is_retryable(status) is retried


async def test_delivered_webhooks_are_signed_and_shaped_as_documented(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    receiver = await start_receiver()
    running = await start_sandbox(webhook_url=receiver.url, **FAST)
    sandbox = running.sandbox
    sandbox.create_orders(3, items=2)
    sandbox.random_steps(20)
    sandbox.advance_order(100_001)
    await wait_until(lambda: sandbox.pending == 0)

    emitted = sandbox.counters_snapshot().webhooks.emitted
    assert len(receiver.received) == emitted
    seen: set[tuple[int, str]] = set()
    event_ids = set()
    for request in receiver.received:
        assert request.headers["content-type"] == "application/json"
        t = verify(request.headers[HEADER.lower()], request.body, (SECRET,), now=time.time(), tolerance_s=300)
        assert abs(t - time.time()) < 30
        envelope = decode(request.body)
        assert list(envelope) == ["eventId", "eventType", "payloadVersion", "data"]
        assert envelope["eventType"] == "order.status.changed" and envelope["payloadVersion"] == "v1"
        assert len(envelope["eventId"]) == 26
        event_ids.add(envelope["eventId"])
        assert list(envelope["data"]) == ["orderId", "orderItems"]
        for item in envelope["data"]["orderItems"]:
            assert list(item) == ["orderItemId", "pid", "orderStatus"]
            seen.add((item["orderItemId"], item["orderStatus"]))
    assert len(event_ids) == emitted  # a unique eventId per change
    truth = {(i.id, i.status) for o in sandbox.world.orders() for i in o.items}
    assert truth <= seen  # every current status was announced
    counts = sandbox.counters_snapshot().webhooks
    assert counts.delivered == counts.sent == emitted and counts.failed == counts.retried == 0


async def test_retries_follow_the_schedule_and_are_re_signed(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    receiver = await start_receiver([500, 503, 204])
    running = await start_sandbox(webhook_url=receiver.url, webhook_secret=SECRET, webhook_retry_base_s=0.2)
    running.sandbox.create_orders(1)
    await wait_until(lambda: running.sandbox.pending == 0)

    attempts = receiver.received
    assert len(attempts) == 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert 0.1 - 0.02 <= gaps[0] <= 0.3 + 0.15  # 0.2 s ±50 %, plus scheduling slack
    assert 0.2 - 0.02 <= gaps[1] <= 0.6 + 0.15  # 0.4 s ±50 %
    assert len({a.body for a in attempts}) == 1  # the same event each time
    stamps = [parse_header(a.headers[HEADER.lower()]).t for a in attempts]
    assert stamps == sorted(stamps)
    for attempt in attempts:  # each retry is signed on its own
        verify(attempt.headers[HEADER.lower()], attempt.body, (SECRET,), now=time.time(), tolerance_s=300)
    counts = running.sandbox.counters_snapshot().webhooks
    assert (counts.sent, counts.retried, counts.delivered, counts.failed) == (3, 2, 1, 0)


async def test_retries_are_bounded(start_sandbox: Any, start_receiver: Any, wait_until: Any) -> None:
    receiver = await start_receiver([500])
    running = await start_sandbox(webhook_url=receiver.url, **FAST)
    running.sandbox.create_orders(1)
    await wait_until(lambda: running.sandbox.pending == 0)

    assert len(receiver.received) == 4  # the first try and 3 retries
    counts = running.sandbox.counters_snapshot().webhooks
    assert (counts.sent, counts.retried, counts.delivered, counts.failed) == (4, 3, 0, 1)


@pytest.mark.parametrize(
    ("answers", "attempts", "delivered"), [([400], 1, 0), ([404], 1, 0), ([429, 200], 2, 1)]
)
async def test_only_429_among_4xx_is_retried(
    start_sandbox: Any,
    start_receiver: Any,
    wait_until: Any,
    answers: list[int],
    attempts: int,
    delivered: int,
) -> None:
    receiver = await start_receiver(answers)
    running = await start_sandbox(webhook_url=receiver.url, **FAST)
    running.sandbox.create_orders(1)
    await wait_until(lambda: running.sandbox.pending == 0)

    assert len(receiver.received) == attempts
    assert running.sandbox.counters_snapshot().webhooks.delivered == delivered


async def test_a_slow_receiver_times_out_and_is_retried(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    # A timeout wide enough that the second, prompt answer never misses it on a loaded machine (the suite
    # runs in parallel), and a first answer slower than it by far.
    receiver = await start_receiver([("sleep", 3.0, 204), 204])
    running = await start_sandbox(webhook_url=receiver.url, webhook_timeout_s=1.0, **FAST)
    running.sandbox.create_orders(1)
    await wait_until(lambda: running.sandbox.pending == 0)

    counts = running.sandbox.counters_snapshot().webhooks
    assert (counts.sent, counts.retried, counts.delivered) == (2, 1, 1)


async def test_an_unreachable_target_is_retried_then_failed(start_sandbox: Any, wait_until: Any) -> None:
    sock = bind("127.0.0.1", 0)
    url = url_of(sock) + "/webhooks/bunjang"
    sock.close()
    running = await start_sandbox(webhook_url=url, **FAST)
    running.sandbox.create_orders(1)
    await wait_until(lambda: running.sandbox.pending == 0)

    counts = running.sandbox.counters_snapshot().webhooks
    assert (counts.sent, counts.retried, counts.failed) == (4, 3, 1)


async def test_no_retry_starts_after_the_deadline(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    receiver = await start_receiver([500])
    running = await start_sandbox(webhook_url=receiver.url, webhook_retry_base_s=1.0, webhook_deadline_s=0.4)
    running.sandbox.create_orders(1)
    await wait_until(lambda: running.sandbox.pending == 0)

    assert len(receiver.received) == 1  # the first retry (>= 0.5 s) would start past the deadline


async def test_dropped_and_duplicated_events(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    receiver = await start_receiver()
    running = await start_sandbox(webhook_url=receiver.url, **FAST)
    sandbox = running.sandbox
    sandbox.faults.update({"webhookDropRate": 1.0})
    sandbox.create_orders(2)
    await wait_until(lambda: sandbox.pending == 0)
    assert receiver.received == []

    sandbox.faults.update({"webhookDropRate": 0.0, "webhookDuplicateRate": 1.0})
    sandbox.create_orders(2)
    await wait_until(lambda: sandbox.pending == 0)
    bodies = [r.body for r in receiver.received]
    assert len(bodies) == 4 and len(set(bodies)) == 2  # each event twice, same eventId and body

    counts = sandbox.counters_snapshot().webhooks
    assert (counts.emitted, counts.dropped, counts.duplicated, counts.delivered) == (4, 2, 2, 4)
    assert counts.emitted - counts.dropped + counts.duplicated == counts.delivered + counts.failed


async def test_reordered_events_arrive_after_their_successor(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    receiver = await start_receiver()
    running = await start_sandbox(
        webhook_url=receiver.url, faults=FaultSettings(webhook_reorder_rate=1.0), **FAST
    )
    running.sandbox.create_orders(4, items=1)
    await wait_until(lambda: running.sandbox.pending == 0)

    order_ids = [decode(r.body)["data"]["orderId"] for r in receiver.received]
    assert sorted(order_ids) == [100_001, 100_002, 100_003, 100_004]
    # Events 1 and 3 were held back until events 2 and 4 had made their first attempt.
    assert order_ids.index(100_001) > order_ids.index(100_002)
    assert order_ids.index(100_003) > order_ids.index(100_004)
    assert running.sandbox.counters_snapshot().webhooks.reordered == 2


async def test_a_held_event_without_successor_still_goes_out(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    receiver = await start_receiver()
    running = await start_sandbox(
        webhook_url=receiver.url, faults=FaultSettings(webhook_reorder_rate=1.0), **FAST
    )
    running.sandbox.create_orders(1)
    await wait_until(lambda: running.sandbox.pending == 0, timeout_s=5)
    assert len(receiver.received) == 1


async def test_delayed_events(start_sandbox: Any, start_receiver: Any, wait_until: Any) -> None:
    receiver = await start_receiver()
    running = await start_sandbox(webhook_url=receiver.url, faults=FaultSettings(webhook_delay_s=0.3), **FAST)
    started = time.monotonic()
    running.sandbox.create_orders(5)
    await wait_until(lambda: running.sandbox.pending == 0)

    assert len(receiver.received) == 5
    assert max(r.at for r in receiver.received) - started <= 0.3 + 0.3
    assert running.sandbox.counters_snapshot().webhooks.delayed == 5


async def test_settle_endpoint_waits_for_pending_deliveries(start_sandbox: Any, start_receiver: Any) -> None:
    import httpx

    receiver = await start_receiver([("sleep", 0.3, 204)])
    running = await start_sandbox(webhook_url=receiver.url, **FAST)
    async with httpx.AsyncClient(base_url=running.url) as http:
        await http.post("/_sandbox/orders", json={"count": 3})
        assert (await http.get("/_sandbox/webhooks")).json()["pending"] == 3
        short = await http.post("/_sandbox/webhooks/settle", params={"timeout": "0.05"})
        assert short.status_code == 504 and short.json()["settled"] is False
        settled = await http.post("/_sandbox/webhooks/settle", params={"timeout": "5"})
        assert settled.status_code == 200 and settled.json() == {"settled": True, "pending": 0}
        recent = (await http.get("/_sandbox/webhooks")).json()["recent"]
    assert [(r["delivered"], r["attempts"], r["lastStatus"]) for r in recent] == [(True, 1, 204)] * 3
