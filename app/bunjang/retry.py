"""The in-process retry policy of the Bunjang client (tenacity), and its pure parts.

- Only :class:`~app.bunjang.errors.TransientError` is retried; everything else is raised at once.
- The wait before retry *n* is exponential with "equal jitter": uniform in ``[d/2, d]`` where
  ``d = min(max_backoff, base * 2**(n-1))``, so retries of many workers spread out but never collapse
  to zero.
- When Bunjang sent ``Retry-After``, that wait is used instead. If it is longer than ``max_backoff`` the
  client does not sleep on it: it raises at once, and a caller with a persistent queue reschedules.
- Attempts are bounded by ``max_attempts`` (the first request counts).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from app.bunjang.errors import TransientError


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None`` if absent or unusable.

    Accepts both forms of RFC 9110: delay-seconds (``"120"``; fractions tolerated) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, measured from ``now``, Unix seconds). Never negative.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; an offset-less one means the same
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.fromtimestamp(now, UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """The jittered exponential wait after failed attempt number ``attempt`` (1-based)."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)


def _retry_after_of(state: RetryCallState) -> float | None:
    outcome = state.outcome
    if outcome is None:
        return None
    exc = outcome.exception()
    return exc.retry_after if isinstance(exc, TransientError) else None


class BackoffWait(wait_base):
    """``Retry-After`` when the server sent one, else :func:`backoff_delay`."""

    def __init__(self, base_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def __call__(self, retry_state: RetryCallState) -> float:
        retry_after = _retry_after_of(retry_state)
        if retry_after is not None:
            return retry_after
        return backoff_delay(retry_state.attempt_number, self.base_s, self.max_s, self._rng)


class StopPolicy(stop_base):
    """Stop after ``max_attempts``, or at once when ``Retry-After`` asks for more than ``max_wait_s``."""

    def __init__(self, max_attempts: int, max_wait_s: float) -> None:
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number >= self.max_attempts:
            return True
        retry_after = _retry_after_of(retry_state)
        return retry_after is not None and retry_after > self.max_wait_s


def retrying(
    *,
    max_attempts: int,
    base_s: float,
    max_s: float,
    before_sleep: Callable[[RetryCallState], Awaitable[None] | None] | None = None,
    rng: random.Random | None = None,
) -> AsyncRetrying:
    """A fresh tenacity controller for one logical request; raises the last error when it gives up."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        stop=StopPolicy(max_attempts, max_s),
        wait=BackoffWait(base_s, max_s, rng),
        before_sleep=before_sleep,
        reraise=True,
    )
