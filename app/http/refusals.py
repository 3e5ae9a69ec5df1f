"""Refused HTTP traffic: counted per request, logged as one summary line per interval.

Anyone on the internet can make the webhook listener refuse something (a bad signature, a slow header,
a path that does not exist) as fast as they can send it. Logging one line per refusal would let them
fill the disk and spend the CPU on logging (the issue measured 14 MB of WARNING lines in 8 s from one
client), so a refusal only increments a counter here; while refusals keep coming, one
``http_refused_summary`` line per interval gives the counts by reason, and the Prometheus counters
(``bunsync_webhooks_total``, ``bunsync_http_refusals_total``) give them exactly.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import structlog

from app.ops import metrics

log = structlog.get_logger(__name__)

SUMMARY_INTERVAL_S = 10.0


class RefusalLog:
    """Counts refusals by ``listener:reason`` and logs their summary at most once per interval."""

    def __init__(self, interval_s: float = SUMMARY_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._counts: Counter[str] = Counter()
        self._flush_handle: asyncio.TimerHandle | None = None

    def refused(self, listener: str, reason: str) -> None:
        """One refusal by the transport or the framework (counted in ``bunsync_http_refusals_total``)."""
        metrics.HTTP_REFUSALS.labels(listener, reason).inc()
        self.note(listener, reason)

    def note(self, listener: str, reason: str) -> None:
        """One refusal whose metric the caller counts itself: only the summary line counts it here."""
        self._counts[f"{listener}:{reason}"] += 1
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): summarise at once
                self.flush()
                return
            self._flush_handle = loop.call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        """Log the counts gathered since the last summary (if any) and start over."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._counts:
            return
        counts, self._counts = dict(sorted(self._counts.items())), Counter()
        # WARNING: refused traffic is either an attack or a misconfigured sender (a secret rotation gone
        # wrong shows as webhook:signature-invalid); the counts say which.
        log.warning(
            "http_refused_summary", interval_s=self._interval_s, total=sum(counts.values()), counts=counts
        )
