"""The demo's check of forwarding: did the consumer receive every confirmed change once, in order?

:func:`compare` (pure) takes the change feed (``reporting.item_changes`` in feed order) and what the
sandbox's consumer accepted (``GET /_sandbox/consumer/received?accepted=true``, arrival order). A
change is identified by its ``webhook-id`` (``bunsync-change-<feed_position>``); a second acceptance of
the same id is a redelivery (allowed: at least once), counted and dropped before the order is checked.
The result lists every difference: changes missing, accepted ids that are not in the feed, a body that
does not match its feed row, changes first accepted out of feed order, requests refused for a bad
signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from app.feed.forwarder import webhook_id_of

_SHOWN = 10  # differences listed per kind


class FeedRowIn(msgspec.Struct, frozen=True):
    """One row of the feed, as the demo reads it."""

    feed_position: int
    order_item_id: int
    status: str


class FeedCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The comparison's outcome; :attr:`ok` when there is no difference."""

    changes: int
    requests: int
    accepted: int
    redeliveries: int
    missing: list[int]
    unexpected: list[str]
    wrong_body: list[str]
    out_of_order: list[str]
    invalid_signatures: int

    @property
    def ok(self) -> bool:
        return not (
            self.missing or self.unexpected or self.wrong_body or self.out_of_order or self.invalid_signatures
        )

    def lines(self) -> list[str]:
        """The report's lines: the verdict, then the differences (at most a few of each kind)."""
        head = (
            f"the change feed has {self.changes} confirmed changes; the forwarder made {self.requests} "
            f"requests, the consumer refused {self.requests - self.accepted} (down, failing or a bad "
            f"signature) and accepted {self.accepted} ({self.redeliveries} redeliveries, deduplicated by "
            "webhook-id)"
        )
        if self.ok:
            return [head, "the consumer received every confirmed change once, in order, each signature valid"]
        out = [head, "the consumer did NOT receive every confirmed change once, in order:"]
        for label, values, total in (
            ("missing feed positions", self.missing, len(self.missing)),
            ("accepted ids not in the feed", self.unexpected, len(self.unexpected)),
            ("bodies unlike their feed row", self.wrong_body, len(self.wrong_body)),
            ("first accepted out of feed order", self.out_of_order, len(self.out_of_order)),
        ):
            if total:
                out.append(f"  {total} {label}: {', '.join(map(str, values[:_SHOWN]))}")
        if self.invalid_signatures:
            out.append(f"  {self.invalid_signatures} requests refused for an invalid signature")
        return out


def compare(
    feed: Sequence[FeedRowIn], accepted: Sequence[dict[str, Any]], *, requests: int, invalid_signatures: int
) -> FeedCheck:
    """Compare the feed with the consumer's accepted receipts (``webhookId``, ``data``, in arrival
    order); ``requests`` and ``invalid_signatures`` are the consumer's counts of every request."""
    by_id = {webhook_id_of(r.feed_position): r for r in feed}
    first: dict[str, dict[str, Any]] = {}
    for receipt in accepted:
        first.setdefault(str(receipt.get("webhookId")), receipt)
    arrived = [i for i in first if i in by_id]
    expected = [i for i in by_id if i in first]  # feed order, restricted to what arrived
    wrong = [
        i
        for i in arrived
        if (first[i].get("data") or {}).get("order_item_id") != by_id[i].order_item_id
        or (first[i].get("data") or {}).get("status") != by_id[i].status
    ]
    return FeedCheck(
        changes=len(feed),
        requests=requests,
        accepted=len(accepted),
        redeliveries=len(accepted) - len(first),
        missing=[r.feed_position for r in feed if webhook_id_of(r.feed_position) not in first],
        unexpected=[i for i in first if i not in by_id],
        wrong_body=wrong,
        out_of_order=[got for got, want in zip(arrived, expected, strict=True) if got != want],
        invalid_signatures=invalid_signatures,
    )
