"""The order item status graph of BUNJANG_API.md ("Order item statuses"), and a seeded walk along it.

Pure: no I/O, no clock; randomness comes from the ``random.Random`` the caller passes (seeded by the
sandbox), so a seed always produces the same walk.

The graph includes every branch the table documents: cancellation before shipping (accepted or
rejected), refunds, returns (accepted, rejected back to where the item was, or ending in a purchase
confirmation). A rejected return goes back to the status the item had before ``RETURN_REQUESTED``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

PAYMENT_RECEIVED = "PAYMENT_RECEIVED"
SHIP_READY = "SHIP_READY"
CANCEL_REQUESTED_BEFORE_SHIPPING = "CANCEL_REQUESTED_BEFORE_SHIPPING"
IN_TRANSIT = "IN_TRANSIT"
DELIVERY_COMPLETED = "DELIVERY_COMPLETED"
PURCHASE_CONFIRM = "PURCHASE_CONFIRM"
RETURN_REQUESTED = "RETURN_REQUESTED"
RETURN_BEFORE_SHIPPING = "RETURN_BEFORE_SHIPPING"
RETURNING = "RETURNING"
RETURNED = "RETURNED"
REFUNDING = "REFUNDING"
REFUNDED = "REFUNDED"

INITIAL = PAYMENT_RECEIVED

# status -> ((next status, weight), ...). Weights make the happy path the common one, as on a real
# marketplace, while every documented branch still happens in a long run.
EDGES: Mapping[str, tuple[tuple[str, int], ...]] = {
    PAYMENT_RECEIVED: ((SHIP_READY, 9), (REFUNDED, 1)),
    SHIP_READY: ((IN_TRANSIT, 8), (CANCEL_REQUESTED_BEFORE_SHIPPING, 1), (REFUNDED, 1)),
    CANCEL_REQUESTED_BEFORE_SHIPPING: ((REFUNDING, 2), (SHIP_READY, 1)),
    IN_TRANSIT: ((DELIVERY_COMPLETED, 9), (RETURN_REQUESTED, 1)),
    DELIVERY_COMPLETED: ((PURCHASE_CONFIRM, 8), (RETURN_REQUESTED, 2)),
    PURCHASE_CONFIRM: (),
    RETURN_REQUESTED: ((RETURN_BEFORE_SHIPPING, 2), (IN_TRANSIT, 1), (DELIVERY_COMPLETED, 1)),
    RETURN_BEFORE_SHIPPING: ((RETURNING, 4), (PURCHASE_CONFIRM, 1)),
    RETURNING: ((RETURNED, 3), (REFUNDING, 1)),
    RETURNED: ((REFUNDING, 1),),
    REFUNDING: ((REFUNDED, 1),),
    REFUNDED: (),
}

TRANSITIONS: Mapping[str, frozenset[str]] = {
    status: frozenset(s for s, _ in nxt) for status, nxt in EDGES.items()
}
FINAL_STATUSES: frozenset[str] = frozenset(status for status, nxt in EDGES.items() if not nxt)
_RETURN_REJECTED_TO = frozenset({IN_TRANSIT, DELIVERY_COMPLETED})


def is_final(status: str) -> bool:
    """True when no documented edge leaves ``status`` (unknown statuses are final too: nowhere to go)."""
    return not EDGES.get(status)


def successors(status: str, came_from: str | None = None) -> tuple[tuple[str, int], ...]:
    """The weighted next statuses of ``status``; ``came_from`` is the status before it, if any.

    A rejected return goes back where the item was: from ``RETURN_REQUESTED`` the rejection edge leads
    only to ``came_from`` when that is ``IN_TRANSIT`` or ``DELIVERY_COMPLETED``.
    """
    edges = EDGES.get(status, ())
    if status == RETURN_REQUESTED and came_from in _RETURN_REJECTED_TO:
        edges = tuple((s, w) for s, w in edges if s not in _RETURN_REJECTED_TO or s == came_from)
    return edges


def is_allowed(status: str, next_status: str) -> bool:
    """True when ``status -> next_status`` is a documented edge."""
    return next_status in TRANSITIONS.get(status, frozenset())


def choose_next(status: str, rng: random.Random, came_from: str | None = None) -> str | None:
    """A seeded, weighted choice of the next status, or ``None`` when ``status`` is final."""
    edges = successors(status, came_from)
    if not edges:
        return None
    return rng.choices([s for s, _ in edges], weights=[w for _, w in edges], k=1)[0]
