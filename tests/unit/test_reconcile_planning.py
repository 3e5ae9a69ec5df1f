"""Reconcile planning: the range of a pass, when the watermark may move, and what counts as a difference."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.bunjang.types import ListedOrder, OrderItem
from app.reconciler import differences, listed_event, plan_range

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(minutes=10)
LOOKBACK = timedelta(days=3)


def test_first_pass_on_an_empty_database_looks_back() -> None:
    plan = plan_range(None, NOW, overlap=OVERLAP, lookback=LOOKBACK)
    assert (plan.start, plan.end, plan.advances_watermark) == (NOW - LOOKBACK, NOW, True)


def test_later_passes_start_at_the_watermark_minus_the_overlap() -> None:
    watermark = NOW - timedelta(minutes=5)
    plan = plan_range(watermark, NOW, overlap=OVERLAP, lookback=LOOKBACK)
    assert (plan.start, plan.end, plan.advances_watermark) == (watermark - OVERLAP, NOW, True)


def test_a_long_outage_is_covered_whole_in_15_day_windows() -> None:
    watermark = NOW - timedelta(days=40)
    windows = plan_range(watermark, NOW, overlap=OVERLAP, lookback=LOOKBACK).windows()
    assert len(windows) == 3
    assert windows[0].start == watermark - OVERLAP and windows[-1].end == NOW
    assert all(w.end - w.start <= timedelta(days=15) for w in windows)
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))


def test_a_backfill_covers_what_it_is_asked_and_moves_the_watermark_only_without_a_gap() -> None:
    since, until = NOW - timedelta(days=30), NOW - timedelta(days=20)
    old = plan_range(
        NOW - timedelta(days=1), NOW, overlap=OVERLAP, lookback=LOOKBACK, since=since, until=until
    )
    assert (old.start, old.end, old.advances_watermark) == (since, until, True)
    gap = plan_range(NOW - timedelta(days=40), NOW, overlap=OVERLAP, lookback=LOOKBACK, since=since)
    assert gap.advances_watermark is False  # [watermark, since] would be skipped
    assert plan_range(None, NOW, overlap=OVERLAP, lookback=LOOKBACK, since=since).advances_watermark


def test_until_never_reaches_into_the_future() -> None:
    plan = plan_range(None, NOW, overlap=OVERLAP, lookback=LOOKBACK, until=NOW + timedelta(days=1))
    assert plan.end == NOW


def test_an_inverted_range_is_refused() -> None:
    with pytest.raises(ValueError, match="after it ends"):
        plan_range(None, NOW, overlap=OVERLAP, lookback=LOOKBACK, since=NOW + timedelta(hours=1))


def _order(order_id: int, *items: tuple[int, str, datetime | None]) -> ListedOrder:
    return ListedOrder(
        id=order_id, order_items=tuple(OrderItem(id=i, status=s, status_updated_at=t) for i, s, t in items)
    )


def test_differences_are_orders_with_any_item_not_as_shown() -> None:
    t1, t2 = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    same = _order(1, (11, "SHIP_READY", t1))
    newer = _order(2, (21, "SHIP_READY", t1), (22, "IN_TRANSIT", t2))
    unseen = _order(3, (31, "PAYMENT_RECEIVED", t1))
    provisional = _order(4, (41, "IN_TRANSIT", t2))
    shown = {11: ("SHIP_READY", t1), 21: ("SHIP_READY", t1), 22: ("SHIP_READY", t1), 41: ("IN_TRANSIT", None)}
    assert [o.id for o in differences([same, newer, unseen, provisional], shown, NOW)] == [2, 3, 4]


def test_the_same_observation_always_has_the_same_key() -> None:
    t1 = NOW - timedelta(hours=2)
    a, b = listed_event(_order(5, (51, "SHIP_READY", t1))), listed_event(_order(5, (51, "SHIP_READY", t1)))
    c = listed_event(_order(5, (51, "IN_TRANSIT", t1)))
    assert a.idempotency_key == b.idempotency_key != c.idempotency_key
    assert (a.type, a.source, a.stream) == ("order.listed", "list_orders", "order-5")
