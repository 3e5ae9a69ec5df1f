"""Hypothesis strategies: an item's true status timeline and what bunsync observes of it.

Each change i has a distinct status S_i at time T_i. A webhook for change i may be dropped,
duplicated or delivered late (its signature time t >= T_i: a retry is re-signed when sent). A Get Order
or List Orders made at any time F returns the latest change with T_i <= F (stale results included,
since the log order is shuffled). The last event is the fetch that follows the last webhook.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

STATUSES = [
    "PAYMENT_RECEIVED",
    "SHIP_READY",
    "IN_TRANSIT",
    "DELIVERY_COMPLETED",
    "PURCHASE_CONFIRM",
    "SOME_FUTURE_STATUS",
]


@dataclass(frozen=True)
class Seen:
    """One observation: kind is webhook, get_order or list_orders; at = t (webhook) or statusUpdatedAt."""

    kind: str
    status: str
    at: int


@dataclass(frozen=True)
class Scenario:
    statuses: list[str]
    times: list[int]
    observations: list[Seen]


@st.composite
def scenarios(draw: st.DrawFn, max_changes: int = 5) -> Scenario:
    n = draw(st.integers(1, max_changes))
    statuses = draw(st.permutations(STATUSES))[:n]
    gaps = draw(st.lists(st.integers(1, 100), min_size=n, max_size=n))
    times = [sum(gaps[: i + 1]) for i in range(n)]
    seen: list[Seen] = []
    for status, changed in zip(statuses, times, strict=True):
        for _ in range(draw(st.integers(0, 3))):  # dropped, delivered, duplicated
            seen.append(Seen("webhook", status, changed + draw(st.integers(0, 400))))
    for fetched in draw(st.lists(st.integers(0, times[-1] + 100), max_size=6)):
        known = [i for i, t in enumerate(times) if t <= fetched]
        if known:
            kind = draw(st.sampled_from(["get_order", "list_orders"]))
            seen.append(Seen(kind, statuses[known[-1]], times[known[-1]]))
    shuffled = draw(st.permutations(seen))
    return Scenario(statuses, times, [*shuffled, Seen("get_order", statuses[-1], times[-1])])
