"""The sandbox's simulated clock: real time scaled by a speed factor, plus explicit jumps.

Only the world's business times (``statusUpdatedAt`` and friends) use it. JWT ``iat`` checks and webhook
signature times use the real clock, as Bunjang's would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta


class SimClock:
    """``now() = start + jumps + (elapsed real seconds) * speed``; never goes backwards."""

    def __init__(
        self, start: datetime, speed: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs a timezone-aware start")
        if speed < 0:
            raise ValueError("clock speed must be >= 0")
        self._start = start
        self._speed = speed
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._jumped = timedelta(0)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        """The current simulated time."""
        elapsed = (self._monotonic() - self._t0) * self._speed
        return self._start + self._jumped + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Jump forward by ``seconds`` of simulated time; return the new now."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        self._jumped += timedelta(seconds=seconds)
        return self.now()
