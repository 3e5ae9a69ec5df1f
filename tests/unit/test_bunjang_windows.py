"""Unit tests of List Orders window splitting (pure; the reconciler reuses it)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.bunjang.windows import MAX_WINDOW, Window, format_time, split_windows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_forty_days_make_three_windows_of_at_most_fifteen_days() -> None:
    windows = split_windows(T0, T0 + timedelta(days=40))
    assert windows == (
        Window(T0, T0 + timedelta(days=15)),
        Window(T0 + timedelta(days=15), T0 + timedelta(days=30)),
        Window(T0 + timedelta(days=30), T0 + timedelta(days=40)),
    )


def test_exactly_fifteen_days_is_one_window() -> None:
    assert split_windows(T0, T0 + MAX_WINDOW) == (Window(T0, T0 + MAX_WINDOW),)


def test_empty_range_is_one_zero_length_window() -> None:
    assert split_windows(T0, T0) == (Window(T0, T0),)


def test_fractional_bounds_widen_to_whole_seconds_and_stay_within_the_limit() -> None:
    start = T0 + timedelta(microseconds=500_000)
    end = start + MAX_WINDOW
    windows = split_windows(start, end)
    assert windows[0].start == T0
    assert windows[-1].end == T0 + MAX_WINDOW + timedelta(seconds=1)
    assert all(w.end - w.start <= MAX_WINDOW for w in windows)
    assert len(windows) == 2


def test_other_offsets_are_converted_to_utc() -> None:
    kst = timezone(timedelta(hours=9))
    windows = split_windows(datetime(2026, 1, 1, 9, tzinfo=kst), datetime(2026, 1, 2, 9, tzinfo=kst))
    assert windows == (Window(T0, T0 + timedelta(days=1)),)
    assert windows[0].query() == {
        "statusUpdateStartDate": "2026-01-01T00:00:00Z",
        "statusUpdateEndDate": "2026-01-02T00:00:00Z",
    }


def test_format_time_is_utc_whole_seconds_with_z() -> None:
    kst = timezone(timedelta(hours=9))
    assert format_time(datetime(2026, 11, 2, 4, 12, 0, 999_999, tzinfo=kst)) == "2026-11-01T19:12:00Z"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 1, 1), T0),
        (T0 + timedelta(seconds=1), T0),
    ],
)
def test_bad_ranges_are_refused(start: datetime, end: datetime) -> None:
    with pytest.raises(ValueError):
        split_windows(start, end)


@given(
    start=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    max_days=st.integers(min_value=1, max_value=15),
)
def test_windows_tile_the_range_without_gaps(start: datetime, length: timedelta, max_days: int) -> None:
    end = start + length
    windows = split_windows(start, end, timedelta(days=max_days))
    assert windows[0].start <= start and windows[-1].end >= end
    assert windows[-1].end - end < timedelta(seconds=1) and start - windows[0].start < timedelta(seconds=1)
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start
    for window in windows:
        assert window.start <= window.end <= window.start + timedelta(days=max_days)
        assert window.start.microsecond == 0 and window.end.microsecond == 0
