"""Per-minute counts of what never reaches the log (rejected webhooks), for the console's chart.

Accepted and unrecognised webhooks are counted from the log itself (app/console/pages.py); a rejected
one (bad signature, wrong method) is refused before anything is stored, so this process counts it here:
one slot per minute for the last hour, constant memory whatever the rate. Per process: each replica's
console shows what its own webhook listener refused (the Prometheus counter
``bunsync_webhooks_total{outcome="rejected"}`` sums them across replicas).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

MINUTES = 60


class MinuteCounter:
    """Counts per wall-clock minute over the last :data:`MINUTES` minutes."""

    def __init__(self) -> None:
        self._slots: dict[int, int] = {}

    def add(self, n: int = 1, now: float | None = None) -> None:
        """Count ``n`` now."""
        minute = int((now if now is not None else time.time()) // 60)
        self._slots[minute] = self._slots.get(minute, 0) + n
        if len(self._slots) > MINUTES:
            for old in [m for m in self._slots if m <= minute - MINUTES]:
                del self._slots[old]

    def per_minute(self, now: float | None = None) -> dict[datetime, int]:
        """Minute (UTC, start of the minute) → count, for the last hour."""
        current = int((now if now is not None else time.time()) // 60)
        return {
            datetime.fromtimestamp(m * 60, UTC): n for m, n in self._slots.items() if m > current - MINUTES
        }


#: Webhooks this process refused (401 signature, 405 method).
REJECTED_WEBHOOKS = MinuteCounter()
