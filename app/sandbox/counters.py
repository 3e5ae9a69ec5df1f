"""What the sandbox counts, for tests, the demo and ``GET /_sandbox/counters``.

Webhooks (one *event* is one change; a *delivery* is one copy of an event; an *attempt* is one POST):

- ``emitted``: events the world produced (counted even without a webhook target);
- ``dropped`` / ``duplicated`` / ``delayed`` / ``reordered``: events the fault knobs touched;
- ``sent``: POST attempts, first tries and retries; ``retried``: the retries among them;
- ``delivered``: deliveries answered 2xx; ``failed``: deliveries given up (a non-retryable answer, or
  retries exhausted).

Once everything is settled (``pending == 0``): ``emitted - dropped + duplicated == delivered + failed``
(when a webhook target is configured).

REST calls are counted per endpoint (``get_order``, ``list_orders``) and answered status code.
"""

from __future__ import annotations

from typing import Literal

import msgspec

WebhookCounter = Literal[
    "emitted", "sent", "retried", "delivered", "failed", "dropped", "duplicated", "delayed", "reordered"
]


class WebhookCountsOut(msgspec.Struct, frozen=True, kw_only=True):
    """The webhook counters, plus deliveries not yet settled."""

    emitted: int
    sent: int
    retried: int
    delivered: int
    failed: int
    dropped: int
    duplicated: int
    delayed: int
    reordered: int
    pending: int


class CountersOut(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /_sandbox/counters``: ``api`` maps endpoint -> status code (as a string) -> calls."""

    webhooks: WebhookCountsOut
    api: dict[str, dict[str, int]]


class Counters:
    """Mutable counters (single event loop: no locking needed)."""

    def __init__(self) -> None:
        self._webhooks: dict[str, int] = {}
        self._api: dict[str, dict[str, int]] = {}

    def webhook(self, counter: WebhookCounter, n: int = 1) -> None:
        """Add ``n`` to a webhook counter."""
        self._webhooks[counter] = self._webhooks.get(counter, 0) + n

    def api_call(self, endpoint: str, status: int) -> None:
        """Count one REST answer."""
        by_status = self._api.setdefault(endpoint, {})
        by_status[str(status)] = by_status.get(str(status), 0) + 1

    def api_calls(self, endpoint: str) -> int:
        """All answers of one endpoint, whatever the status."""
        return sum(self._api.get(endpoint, {}).values())

    def snapshot(self, pending: int) -> CountersOut:
        """A consistent copy for the admin API."""
        w = self._webhooks
        return CountersOut(
            webhooks=WebhookCountsOut(
                emitted=w.get("emitted", 0),
                sent=w.get("sent", 0),
                retried=w.get("retried", 0),
                delivered=w.get("delivered", 0),
                failed=w.get("failed", 0),
                dropped=w.get("dropped", 0),
                duplicated=w.get("duplicated", 0),
                delayed=w.get("delayed", 0),
                reordered=w.get("reordered", 0),
                pending=pending,
            ),
            api={endpoint: dict(sorted(by.items())) for endpoint, by in sorted(self._api.items())},
        )
