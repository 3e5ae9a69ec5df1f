"""The sandbox's status graph is the documented one, and its walks follow only documented edges."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from app.sandbox import lifecycle

# BUNJANG_API.md, "Order item statuses", written out again here so the test states the documentation
# independently of the code. A rejected return goes back to IN_TRANSIT or DELIVERY_COMPLETED.
DOCUMENTED = {
    "PAYMENT_RECEIVED": {"SHIP_READY", "REFUNDED"},
    "SHIP_READY": {"IN_TRANSIT", "CANCEL_REQUESTED_BEFORE_SHIPPING", "REFUNDED"},
    "CANCEL_REQUESTED_BEFORE_SHIPPING": {"REFUNDING", "SHIP_READY"},
    "IN_TRANSIT": {"DELIVERY_COMPLETED", "RETURN_REQUESTED"},
    "DELIVERY_COMPLETED": {"PURCHASE_CONFIRM", "RETURN_REQUESTED"},
    "PURCHASE_CONFIRM": set(),
    "RETURN_REQUESTED": {"RETURN_BEFORE_SHIPPING", "IN_TRANSIT", "DELIVERY_COMPLETED"},
    "RETURN_BEFORE_SHIPPING": {"RETURNING", "PURCHASE_CONFIRM"},
    "RETURNING": {"RETURNED", "REFUNDING"},
    "RETURNED": {"REFUNDING"},
    "REFUNDING": {"REFUNDED"},
    "REFUNDED": set(),
}


def test_the_graph_is_the_documented_table() -> None:
    assert {status: set(nxt) for status, nxt in lifecycle.TRANSITIONS.items()} == DOCUMENTED
    assert {"PURCHASE_CONFIRM", "REFUNDED"} == lifecycle.FINAL_STATUSES
    assert lifecycle.INITIAL == "PAYMENT_RECEIVED"


def test_every_status_is_reachable_from_payment() -> None:
    reached, frontier = {lifecycle.INITIAL}, [lifecycle.INITIAL]
    while frontier:
        for nxt in lifecycle.TRANSITIONS[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(DOCUMENTED)


def test_unknown_statuses_have_nowhere_to_go() -> None:
    assert lifecycle.is_final("WAITING_REFUND")
    assert lifecycle.choose_next("WAITING_REFUND", random.Random(0)) is None


@settings(max_examples=300)
@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(min_value=1, max_value=60))
def test_walks_follow_documented_edges_only(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    status, came_from = lifecycle.INITIAL, None
    for _ in range(steps):
        nxt = lifecycle.choose_next(status, rng, came_from)
        if nxt is None:
            assert status in lifecycle.FINAL_STATUSES
            break
        assert nxt in DOCUMENTED[status], f"{status} -> {nxt}"
        if status == "RETURN_REQUESTED" and nxt in {"IN_TRANSIT", "DELIVERY_COMPLETED"}:
            assert nxt == came_from  # a rejected return goes back where the item was
        status, came_from = nxt, status


def test_long_runs_take_every_branch() -> None:
    rng = random.Random(3)
    edges: set[tuple[str, str]] = set()
    for _ in range(3000):
        status, came_from = lifecycle.INITIAL, None
        while (nxt := lifecycle.choose_next(status, rng, came_from)) is not None:
            edges.add((status, nxt))
            status, came_from = nxt, status
    assert edges == {(s, n) for s, nxt in DOCUMENTED.items() for n in nxt}
