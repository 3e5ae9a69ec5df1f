"""The pure status and history rules: examples, and the property over every interleaving."""

from __future__ import annotations

from hypothesis import given, settings

from projections.rules import HistoryRow, ItemState, apply_history, apply_status
from tests.fixtures.events import at
from tests.fixtures.scenarios import Scenario, Seen, check_scenario, observation, scenarios


def _run(seen: list[Seen]) -> ItemState | None:
    state: ItemState | None = None
    for position, s in enumerate(seen, start=1):
        state = apply_status(state, observation(s, position))
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


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_any_interleaving_converges_never_regresses_and_lists_each_change_once(sc: Scenario) -> None:
    state: ItemState | None = None
    states: list[ItemState] = []
    history: list[HistoryRow] = []
    for position, seen in enumerate(sc.observations, start=1):
        o = observation(seen, position)
        new = apply_status(state, o)
        if new is None:  # only an unsigned webhook could leave nothing to show
            raise AssertionError("a signed observation must produce a row")
        state = new
        states.append(state)
        history = apply_history(history, o)
    check_scenario(sc, states, history)
