"""List Orders time windows: pure functions shared by the client and the reconciler.

Bunjang accepts a List Orders window of at most 15 days [field] and documents neither whether the bounds
are inclusive nor how a page is sorted. So a range is cut into contiguous windows where each window ends
exactly where the next begins: whichever bound is inclusive, no instant falls between two windows, and
an order seen in both is de-duplicated by the caller.

Bunjang's example dates are whole seconds (``2026-11-01T19:12:00Z``). Ranges are widened outwards to
whole seconds (start floored, end ceiled) *before* splitting, so formatting never narrows a window and
never pushes one past the limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

MAX_WINDOW = timedelta(days=15)


class Window(msgspec.Struct, frozen=True):
    """A closed time range ``[start, end]`` in UTC, whole seconds, at most the maximum window."""

    start: datetime
    end: datetime

    def query(self) -> dict[str, str]:
        """The List Orders query parameters naming this window."""
        return {
            "statusUpdateStartDate": format_time(self.start),
            "statusUpdateEndDate": format_time(self.end),
        }


def format_time(value: datetime) -> str:
    """``value`` as Bunjang's query dates: UTC, whole seconds, ``Z`` (``2026-11-01T19:12:00Z``)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _ceil_second(value: datetime) -> datetime:
    floored = value.replace(microsecond=0)
    return floored if floored == value else floored + timedelta(seconds=1)


def split_windows(start: datetime, end: datetime, max_span: timedelta = MAX_WINDOW) -> tuple[Window, ...]:
    """Cut ``[start, end]`` into consecutive windows of at most ``max_span``, in order.

    Both times must be timezone-aware and ``start <= end``; the result is in UTC, widened to whole
    seconds. ``start == end`` gives one zero-length window (still a valid question to ask).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("split_windows needs timezone-aware datetimes")
    if start > end:
        raise ValueError(f"window start {start.isoformat()} is after its end {end.isoformat()}")
    if max_span < timedelta(seconds=1):
        raise ValueError("max_span must be at least one second")
    span = timedelta(seconds=int(max_span.total_seconds()))
    lo = _floor_second(start.astimezone(UTC))
    hi = _ceil_second(end.astimezone(UTC))
    windows: list[Window] = []
    while True:
        upper = min(lo + span, hi)
        windows.append(Window(lo, upper))
        if upper >= hi:
            return tuple(windows)
        lo = upper
