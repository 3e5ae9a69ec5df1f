"""The sandbox world: strictly increasing stamps, documented edges only, determinism by seed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.sandbox import lifecycle
from app.sandbox.clock import SimClock
from app.sandbox.world import Change, World, WorldError

T0 = datetime(2026, 1, 1, tzinfo=UTC)

Op = tuple[str, int]
OPS = st.lists(
    st.tuples(st.sampled_from(["create", "item", "order", "steps", "clock"]), st.integers(0, 1000)),
    max_size=60,
)


def frozen_world(seed: int) -> World:
    return World(random.Random(seed), SimClock(T0, 0.0))


def apply(world: World, op: Op) -> list[Change]:
    kind, n = op
    orders = world.orders()
    if kind == "create" or not orders:
        return [world.create_order()]
    order = orders[n % len(orders)]
    if kind == "item":
        item = order.items[n % len(order.items)]
        try:
            return [world.advance_item(order.id, item.id)]
        except WorldError as exc:
            assert exc.kind == "final" and lifecycle.is_final(item.status)
            return []
    if kind == "order":
        change = world.advance_order(order.id)
        return [change] if change else []
    if kind == "clock":
        world.clock.advance(n)
        return []
    return world.random_steps(n % 5 + 1)


@settings(max_examples=150)
@given(seed=st.integers(0, 2**16), ops=OPS)
def test_every_change_is_a_documented_edge_with_a_strictly_later_stamp(seed: int, ops: list[Op]) -> None:
    world = frozen_world(seed)
    current: dict[int, tuple[str, datetime]] = {}
    last_stamp = T0 - timedelta(days=1)
    for op in ops:
        for change in apply(world, op):
            assert len(change.items) >= 1
            for item in change.items:
                assert item.status_updated_at > last_stamp  # strictly increasing across the world
                last_stamp = item.status_updated_at
                if item.order_item_id in current:
                    before, _ = current[item.order_item_id]
                    assert lifecycle.is_allowed(before, item.status), f"{before} -> {item.status}"
                else:
                    assert item.status == lifecycle.INITIAL
                current[item.order_item_id] = (item.status, item.status_updated_at)
    truth = {i.id: (i.status, i.status_updated_at) for o in world.orders() for i in o.items}
    assert truth == current  # the changes told the whole story
    assert all(1 <= len(o.items) <= 3 for o in world.orders())


@given(seed=st.integers(0, 2**16), ops=OPS)
@settings(max_examples=30)
def test_the_same_seed_and_calls_give_the_same_world(seed: int, ops: list[Op]) -> None:
    def run() -> list[tuple[int, int, int, str, datetime]]:
        world = frozen_world(seed)
        for op in ops:
            apply(world, op)
        return [(o.id, i.id, i.pid, i.status, i.status_updated_at) for o in world.orders() for i in o.items]

    assert run() == run()


def test_stamps_follow_the_simulated_clock_at_millisecond_precision() -> None:
    ticks = iter([0.0, 0.0, 10.0001234])
    world = World(random.Random(1), SimClock(T0, 2.0, monotonic=lambda: next(ticks)))
    first = world.create_order(1).items[0].status_updated_at
    second = world.create_order(1).items[0].status_updated_at
    assert first == T0
    assert second == T0 + timedelta(seconds=20)  # 10.0001234 real s at speed 2, truncated to ms
    assert second.microsecond % 1000 == 0


def test_forced_moves_and_refusals() -> None:
    world = frozen_world(0)
    order_id = world.create_order(2).order_id
    item_id = world.get(order_id).items[0].id  # type: ignore[union-attr]
    with pytest.raises(WorldError) as refused:
        world.advance_item(order_id, item_id, "PURCHASE_CONFIRM")
    assert refused.value.kind == "not_allowed"
    world.advance_item(order_id, item_id, "WAITING_REFUND", force=True)  # an undocumented status, on purpose
    with pytest.raises(WorldError) as final:
        world.advance_item(order_id, item_id)
    assert final.value.kind == "final"
    with pytest.raises(WorldError) as missing:
        world.advance_item(order_id, 1)
    assert missing.value.kind == "not_found"


def test_updated_between_is_inclusive_and_uses_current_times() -> None:
    world = frozen_world(0)
    a = world.create_order(1).order_id
    world.clock.advance(60)
    b = world.create_order(1).order_id
    assert [o.id for o in world.updated_between(T0, T0)] == [a]
    assert [o.id for o in world.updated_between(T0, T0 + timedelta(seconds=60))] == [a, b]
    world.clock.advance(60)
    world.advance_order(a)  # a's only item now changed at T0 + 120 s
    assert [o.id for o in world.updated_between(T0, T0 + timedelta(seconds=60))] == [b]
