"""This host's clock against Bunjang's, measured from every answer's ``Date`` header.

Bunjang's tokens are valid 5 s after their ``iat``, so a host clock a few seconds off makes every
request fail with ``EXPIRED_AUTH_TOKEN``: the skew is kept (:attr:`SkewWatch.reading`, shown by
``bunsync status``), exported as ``bunsync_clock_skew_seconds`` and warned about beyond
:data:`CLOCK_SKEW_WARN_S`, at most every five minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import structlog

from app.ops import metrics

log = structlog.get_logger(__name__)

#: A clock further than this from Bunjang's is warned about (tokens live 5 s).
CLOCK_SKEW_WARN_S = 2.0
_CLOCK_WARN_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class ClockReading:
    """This host's clock minus Bunjang's (seconds; positive: ours is ahead), measured at ``at``
    (Unix seconds, this host's clock) from an answer's ``Date`` header (whole seconds, so the
    measurement is good to about ±0.5 s plus half the round trip)."""

    skew_s: float
    at: float


def measure_skew(date_header: str | None, sent: float, received: float) -> float | None:
    """The skew from one answer: the request's midpoint minus the middle of the ``Date`` second.

    ``None`` when there is no usable ``Date`` (absent, unparsable, without a zone).
    """
    if not date_header:
        return None
    try:
        server = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if server.tzinfo is None:
        return None
    return (sent + received) / 2 - (server.timestamp() + 0.5)


class SkewWatch:
    """The latest reading, the gauge and the throttled warning."""

    def __init__(self) -> None:
        self.reading: ClockReading | None = None
        self._warned_at = 0.0

    def observe(self, date_header: str | None, sent: float, received: float) -> None:
        skew = measure_skew(date_header, sent, received)
        if skew is None:
            return
        self.reading = ClockReading(skew_s=skew, at=received)
        metrics.CLOCK_SKEW.set(skew)
        if abs(skew) > CLOCK_SKEW_WARN_S and received - self._warned_at >= _CLOCK_WARN_EVERY_S:
            self._warned_at = received
            log.warning(
                "clock_skew",
                skew_s=round(skew, 2),
                limit_s=CLOCK_SKEW_WARN_S,
                hint="Bunjang's tokens are valid 5 s after iat: synchronise this host's clock (NTP)",
            )
