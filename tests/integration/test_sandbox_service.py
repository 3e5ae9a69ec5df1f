"""The sandbox service: its schedule in simulated time, clock jumps, event ids, whole-order webhooks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app.sandbox.config import SandboxConfig
from app.sandbox.delivery import new_event_id
from app.sandbox.service import Sandbox

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_the_schedule_runs_in_simulated_time_and_jumps_do_not_catch_up() -> None:
    real = [0.0]
    config = SandboxConfig(
        start_time=T0, clock_speed=2.0, create_every_s=60, advance_every_s=30, max_orders=4
    )
    sandbox = Sandbox(config, monotonic=lambda: real[0])
    await sandbox.start()
    try:
        real[0] = 150.0  # 300 simulated seconds
        made = sandbox.tick()
        assert sandbox.world.order_count == 4  # 5 were due at 60..300 s, capped by max_orders
        assert made == 4 + 10  # and one random step every 30 s
        assert sandbox.tick() == 0

        sandbox.advance_clock(86_400)  # a day later, in one jump
        assert sandbox.tick() == 0  # ... sets off no backlog
        real[0] = 165.0  # 30 more simulated seconds
        assert sandbox.tick() == 1
    finally:
        await sandbox.stop()


def test_event_ids_are_ulid_shaped_seeded_and_time_ordered() -> None:
    a = [new_event_id(random.Random(1), T0 + timedelta(milliseconds=i)) for i in range(3)]
    b = [new_event_id(random.Random(1), T0 + timedelta(milliseconds=i)) for i in range(3)]
    assert a == b
    assert a == sorted(a)
    assert all(len(i) == 26 and set(i) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in a)


async def test_webhooks_can_list_every_item_of_the_order(
    start_sandbox: Any, start_receiver: Any, wait_until: Any
) -> None:
    receiver = await start_receiver()
    running = await start_sandbox(webhook_url=receiver.url, webhook_all_items=True)
    order_id = running.sandbox.create_orders(1, items=3)[0].order_id
    item_id = running.sandbox.world.get(order_id).items[1].id
    running.sandbox.advance_item(order_id, item_id, "SHIP_READY")
    await wait_until(lambda: running.sandbox.pending == 0)

    bodies = [msgspec.json.decode(r.body) for r in receiver.received]
    last = max(bodies, key=lambda b: [i["orderStatus"] for i in b["data"]["orderItems"]].count("SHIP_READY"))
    assert [i["orderStatus"] for i in last["data"]["orderItems"]] == [
        "PAYMENT_RECEIVED",
        "SHIP_READY",
        "PAYMENT_RECEIVED",
    ]
