"""The reason texts of explain, for every branch of the status rule (projections/rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.ops.reasons import Step, reason, verdict
from projections.rules import ItemState, Observation, apply_status

T = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
_pos = iter(range(1, 1000))


def api(status: str, at: datetime | None, source: str = "get_order") -> Observation:
    return Observation(
        order_item_id=1,
        order_id=9,
        status=status,
        source=source,
        position=next(_pos),
        recorded_at=T + timedelta(hours=1),
        status_updated_at=at,
    )


def hook(status: str, signed: datetime | None) -> Observation:
    return Observation(
        order_item_id=1,
        order_id=9,
        status=status,
        source="webhook",
        position=next(_pos),
        recorded_at=T + timedelta(hours=1),
        signed_at=signed,
    )


def fold(*observations: Observation) -> tuple[ItemState, list[Step]]:
    state: ItemState | None = None
    steps = []
    for obs in observations:
        after = apply_status(state, obs)
        steps.append(verdict(state, obs, after))
        state = after if after is not None else state
    assert state is not None
    return state, steps


def test_webhook_older_than_the_api_state_is_history_only() -> None:
    state, steps = fold(
        api("SHIP_READY", T + timedelta(seconds=131)), hook("IN_TRANSIT", T + timedelta(seconds=110))
    )
    assert steps[1].text == (
        "webhook IN_TRANSIT signed 2026-01-01 10:01:50Z is older than the API state SHIP_READY "
        "(statusUpdatedAt 2026-01-01 10:02:11Z), so it is history only"
    )
    assert reason(state, steps).startswith(
        "SHIP_READY from Get Order (statusUpdatedAt 2026-01-01 10:02:11Z); webhook"
    )


def test_webhook_newer_than_the_api_state_is_shown_provisionally() -> None:
    state, steps = fold(api("SHIP_READY", T), hook("IN_TRANSIT", T + timedelta(minutes=5)))
    assert state.source == "webhook" and "is later than the API state SHIP_READY" in steps[1].text
    assert "shown provisionally until the next API observation" in steps[1].text
    assert reason(state, steps).startswith(
        "IN_TRANSIT from a webhook signed 2026-01-01 10:05:00Z, provisionally"
    )


def test_webhook_without_api_state() -> None:
    state, steps = fold(hook("PAYMENT_RECEIVED", T))
    assert "no API state yet, so it is shown provisionally until Get Order answers" in steps[0].text
    assert "no API state yet; the fetch it triggered replaces it" in reason(state, steps)


def test_equal_times() -> None:
    _, steps = fold(api("SHIP_READY", T), hook("IN_TRANSIT", T))
    assert "is signed at the same time as the API state SHIP_READY" in steps[1].text
    assert "the API wins a tie" in steps[1].text
    _, steps = fold(api("SHIP_READY", T), api("IN_TRANSIT", T, "list_orders"))
    assert "has the same statusUpdatedAt as the API state SHIP_READY" in steps[1].text
    assert steps[1].changed


def test_api_newer_older_and_replacing_a_webhook() -> None:
    state, steps = fold(
        hook("IN_TRANSIT", T + timedelta(minutes=1)),
        api("DELIVERY_COMPLETED", T + timedelta(minutes=2)),
        api("SHIP_READY", T),
    )
    assert (
        "is the first API state of the item; it also replaces the provisional webhook IN_TRANSIT"
        in steps[1].text
    )
    assert "is older than the API state DELIVERY_COMPLETED" in steps[2].text and not steps[2].changed
    _, steps = fold(api("SHIP_READY", T), api("IN_TRANSIT", T + timedelta(minutes=1)))
    assert "is newer than the API state SHIP_READY" in steps[1].text
    assert state.status == "DELIVERY_COMPLETED"


def test_unknown_status_is_named() -> None:
    state, steps = fold(api("WAITING_REFUND", T))
    assert "WAITING_REFUND is not a status bunsync knows" in steps[0].text
    assert "not a status bunsync knows (kept verbatim)" in reason(state, steps)


def test_duplicate_delivery() -> None:
    _, steps = fold(hook("PAYMENT_RECEIVED", T), hook("PAYMENT_RECEIVED", T + timedelta(seconds=30)))
    assert "repeats the status already shown (a duplicate delivery): nothing changes" in steps[1].text
    assert steps[1].duplicate and not steps[1].changed
    _, steps = fold(api("SHIP_READY", T), api("SHIP_READY", T, "list_orders"))
    assert "repeats the API state (a duplicate observation)" in steps[1].text and steps[1].duplicate
