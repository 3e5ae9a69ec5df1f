"""The pure status and history rules: examples, and the property over every interleaving."""

from __future__ import annotations

from hypothesis import given, settings

from projections.rules import HistoryRow, ItemState, Observation, apply_history, apply_status
from tests.projections.factory import T0, at
from tests.projections.scenarios import Scenario, Seen, scenarios


def _obs(seen: Seen, position: int, item: int = 1) -> Observation:
    api = seen.kind != "webhook"
    return Observation(
        order_item_id=item,
        order_id=10,
        status=seen.status,
        source=seen.kind,
        position=position,
        recorded_at=T0,
        status_updated_at=at(seen.at) if api else None,
        signed_at=None if api else at(seen.at),
    )


def _run(seen: list[Seen]) -> ItemState | None:
    state: ItemState | None = None
    for position, s in enumerate(seen, start=1):
        state = apply_status(state, _obs(s, position))
    return state


def test_webhook_alone_is_provisional_without_a_time() -> None:
    state = _run([Seen("webhook", "PAYMENT_RECEIVED", 5)])
    assert state is not None
    assert (state.status, state.source, state.status_updated_at) == ("PAYMENT_RECEIVED", "webhook", None)


def test_api_replaces_webhook_and_a_stale_api_result_changes_nothing() -> None:
    state = _run(
        [
            Seen("webhook", "SHIP_READY", 20),
            Seen("get_order", "SHIP_READY", 15),
            Seen("get_order", "PAYMENT_RECEIVED", 5),  # stale
        ]
    )
    assert state is not None
    assert (state.status, state.source, state.status_updated_at) == ("SHIP_READY", "get_order", at(15))


def test_late_webhook_is_shown_over_older_api_state_until_the_next_fetch() -> None:
    seen = [Seen("get_order", "SHIP_READY", 15), Seen("webhook", "IN_TRANSIT", 30)]
    state = _run(seen)
    assert state is not None and (state.status, state.source) == ("IN_TRANSIT", "webhook")
    state = _run([*seen, Seen("list_orders", "IN_TRANSIT", 28)])
    assert state is not None
    assert (state.status, state.source, state.status_updated_at) == ("IN_TRANSIT", "list_orders", at(28))


def test_resigned_retry_of_an_old_change_does_not_stick() -> None:
    # The retry of PAYMENT_RECEIVED is signed at 10, before the API's SHIP_READY time 15: not shown.
    state = _run([Seen("get_order", "SHIP_READY", 15), Seen("webhook", "PAYMENT_RECEIVED", 10)])
    assert state is not None and state.status == "SHIP_READY"


def test_same_time_ties_break_by_log_position_and_unknown_status_is_verbatim() -> None:
    state = _run([Seen("get_order", "SHIP_READY", 15), Seen("list_orders", "WEIRD_NEW_STATUS", 15)])
    assert state is not None and state.status == "WEIRD_NEW_STATUS"


def _key(s: ItemState | None) -> tuple[bool, object, int]:
    if s is None or s.api_position is None:
        return (False, T0, -1)
    return (s.api_updated_at is not None, s.api_updated_at or T0, s.api_position)


def check_scenario(sc: Scenario, states: list[ItemState], history: list[HistoryRow]) -> None:
    """The invariants of the issue, given the state after each observation and the final history."""
    newest: Observation | None = None
    previous: ItemState | None = None
    for position, (seen, state) in enumerate(zip(sc.observations, states, strict=True), start=1):
        o = _obs(seen, position)
        if o.is_api and (
            newest is None or (o.status_updated_at, o.position) > (newest.status_updated_at, newest.position)
        ):
            newest = o
        assert _key(state) >= _key(previous), "the API state went back"
        if state.source != "webhook":
            assert newest is not None
            assert (state.status, state.status_updated_at) == (newest.status, newest.status_updated_at)
        else:
            assert state.status_updated_at is None
            assert newest is None or (state.webhook_signed_at or T0) > (newest.status_updated_at or T0)
        previous = state
    final = states[-1]
    assert (final.status, final.status_updated_at) == (sc.statuses[-1], at(sc.times[-1]))
    assert final.source != "webhook"
    # History: every reported change exactly once; the API-confirmed ones in timeline order.
    reported = {s.status for s in sc.observations}
    assert sorted(r.status for r in history) == sorted(reported)
    confirmed = sorted(
        (r for r in history if r.source != "webhook"), key=lambda r: (r.status_updated_at, r.position)
    )
    order = [sc.statuses.index(r.status) for r in confirmed]
    assert order == sorted(order)
    assert all(r.status_updated_at == at(sc.times[sc.statuses.index(r.status)]) for r in confirmed)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_any_interleaving_converges_never_regresses_and_lists_each_change_once(sc: Scenario) -> None:
    state: ItemState | None = None
    states: list[ItemState] = []
    history: list[HistoryRow] = []
    for position, seen in enumerate(sc.observations, start=1):
        o = _obs(seen, position)
        new = apply_status(state, o)
        if new is None:  # only an unsigned webhook could leave nothing to show
            raise AssertionError("a signed observation must produce a row")
        state = new
        states.append(state)
        history = apply_history(history, o)
    check_scenario(sc, states, history)
