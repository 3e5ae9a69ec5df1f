"""The demo's verdict on forwarding (app/sandbox/feed_check.py): every feed row accepted once, in feed
order, each body its row's; redeliveries allowed and counted; every other difference listed."""

from __future__ import annotations

from typing import Any

from app.sandbox.feed_check import FeedRowIn, compare

FEED = [FeedRowIn(p, 100 + p, "SHIP_READY") for p in (3, 5, 8)]


def got(*positions: int, status: str = "SHIP_READY") -> list[dict[str, Any]]:
    return [
        {"webhookId": f"bunsync-change-{p}", "data": {"order_item_id": 100 + p, "status": status}}
        for p in positions
    ]


def test_every_change_once_in_order_with_redeliveries_deduplicated() -> None:
    check = compare(FEED, got(3, 5, 5, 8, 3), requests=9, invalid_signatures=0)
    assert check.ok and check.redeliveries == 2 and check.accepted == 5
    assert (
        check.lines()[-1]
        == "the consumer received every confirmed change once, in order, each signature valid"
    )
    assert "refused 4" in check.lines()[0]


def test_missing_unexpected_reordered_wrong_bodies_and_bad_signatures_are_each_listed() -> None:
    assert compare(FEED, got(3, 8), requests=2, invalid_signatures=0).missing == [5]
    assert compare(FEED, got(3, 5, 8, 9), requests=4, invalid_signatures=0).unexpected == ["bunsync-change-9"]
    reordered = compare(FEED, got(5, 3, 8), requests=3, invalid_signatures=0)
    assert reordered.out_of_order == ["bunsync-change-5", "bunsync-change-3"] and not reordered.ok
    wrong = compare(FEED, got(3, 5, 8, status="REFUNDED"), requests=3, invalid_signatures=0)
    assert len(wrong.wrong_body) == 3
    bad = compare(FEED, got(3, 5, 8), requests=4, invalid_signatures=1)
    assert not bad.ok and "1 requests refused for an invalid signature" in bad.lines()[-1]
    lines = compare(FEED, [], requests=0, invalid_signatures=0).lines()
    assert "did NOT receive" in lines[1] and lines[2] == "  3 missing feed positions: 3, 5, 8"
