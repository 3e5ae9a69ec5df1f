"""The change feed's rule (projections/item_changes.py), signing and the forwarder's pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.feed import forwarder, signing
from projections.item_changes import Change, Head, fold
from projections.rules import ItemState, Observation, apply_status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ["PAYMENT_RECEIVED", "SHIP_READY", "IN_TRANSIT", "PURCHASE_CONFIRM"]

# One item's true history: statuses at strictly increasing times (what Bunjang did).
truth = st.lists(st.sampled_from(STATUSES), min_size=1, max_size=6).map(
    lambda ss: [(s, T0 + timedelta(minutes=10 * i)) for i, s in enumerate(ss)]
)


@st.composite
def sightings(draw: st.DrawFn) -> tuple[list[tuple[str, datetime]], list[Observation]]:
    """A history, and the observations bunsync happened to log of it: API ones duplicated, reordered,
    late, plus webhooks (provisional) and API answers without a time, in any order."""
    history = draw(truth)
    picks = draw(st.lists(st.integers(0, len(history) - 1), min_size=1, max_size=20))
    obs: list[Observation] = []
    for n, i in enumerate(picks):
        status, t = history[i]
        kind = draw(st.sampled_from(["get_order", "list_orders", "webhook", "untimed"]))
        obs.append(
            Observation(
                order_item_id=1,
                order_id=1,
                status=status,
                source="get_order" if kind == "untimed" else kind,
                position=n + 1,
                recorded_at=T0 + timedelta(days=1),
                status_updated_at=t if kind in ("get_order", "list_orders") else None,
                signed_at=t + timedelta(seconds=1) if kind == "webhook" else None,
            )
        )
    return history, obs


def expected(obs: list[Observation]) -> list[tuple[str, datetime]]:
    """The confirmed advances, as a reader of the log in this order sees them: each timed API
    observation later than every earlier one, whose status differs from the last advance."""
    out: list[tuple[str, datetime]] = []
    newest: datetime | None = None
    for o in obs:
        t = o.status_updated_at
        if o.source == "webhook" or t is None or (newest is not None and t <= newest):
            continue
        newest = t
        if not out or out[-1][0] != o.status:
            out.append((o.status, t))
    return out


@settings(max_examples=400, deadline=None)
@given(sightings())
def test_feed_is_exactly_the_confirmed_advances(
    case: tuple[list[tuple[str, datetime]], list[Observation]],
) -> None:
    history, obs = case
    heads: dict[int, Head] = {}
    changes: list[Change] = []
    # Arbitrary batch boundaries do not matter: fold one observation at a time and in one go agree.
    for o in obs:
        changes += fold(heads, [o])[1]
    _, at_once = fold({}, obs)
    assert changes == at_once
    assert [(c.status, c.status_updated_at) for c in changes] == expected(obs)
    times = [c.status_updated_at for c in changes]
    assert times == sorted(set(times)), "strictly increasing: no change twice, none older than the last"
    assert all(c.source != "webhook" for c in changes)
    assert [c.previous_status for c in changes] == [None, *[c.status for c in changes]][: len(changes)]
    assert all((c.status, c.status_updated_at) in history for c in changes)
    # The feed ends where the status rule (the authority) puts the item's API state.
    state: ItemState | None = None
    for o in obs:
        state = apply_status(state, o) or state
    if changes and state is not None and state.api_updated_at is not None:
        assert changes[-1].status == state.api_status
    # Seen again (a replay, as a rebuild does), nothing is emitted twice.
    assert fold(heads, obs)[1] == []


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    key = signing.parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    header = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == header
    assert signing.verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, f"v1,bad {header}")
    assert not signing.verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, header)


def test_forwarder_outcomes_and_capped_growing_delays() -> None:
    assert [forwarder.outcome(c) for c in (200, 204, 301, 404, 410, 500)] == [
        "delivered",
        "delivered",
        "retry",
        "retry",
        "gone",
        "retry",
    ]
    delays = [forwarder.retry_delay(a, 0.5, 60.0) for a in range(1, 12)]
    assert delays == sorted(delays) and delays[0] == 0.5 and delays[-1] == 60.0
    assert (
        forwarder.describe("https://u:p@shop.example:8443/hook?token=x") == "https://shop.example:8443/hook"
    )
