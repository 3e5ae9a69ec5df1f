"""What the console's pages read: the overview snapshot and the paged lists, each an index walk.

Every list is bounded (:data:`PAGE_SIZE` rows a page); the overview reuses ``app.ops.status.collect``
(one read-only snapshot) and adds the webhook rates of the last hour from the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from app.console.chart import Series, minute_series, rate_chart
from app.ops import rates, status
from app.store.db import operation
from app.store.sqlfiles import queries

_Q = queries("console")
PAGE_SIZE = 50
#: Deepest page served (OFFSET walks the index; beyond this an operator should filter instead).
MAX_PAGE = 2000


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview page's data."""

    report: status.StatusReport
    verdict: str
    reasons: list[str]
    chart_svg: str
    totals: dict[str, int]
    forwarder: dict[str, Any] | None


class MinuteCache:
    """Webhook counts of sealed minutes, so each render reads only the minutes still open.

    A minute is sealed :data:`SEAL_AFTER` after it ends (a delivery is stamped ``received_at`` when it
    arrives and commits within a moment, never a minute later). At 300,000 webhooks an hour, counting the
    whole hour takes about half a second; with the cache a render counts one or two minutes.
    """

    SEAL_AFTER = timedelta(minutes=1)

    def __init__(self) -> None:
        self._sealed: dict[datetime, tuple[int, int]] = {}

    @operation
    async def counts(self, pool: asyncpg.Pool, now: datetime) -> dict[datetime, tuple[int, int]]:
        """Minute → (received, unrecognised) for the last hour ending at ``now``."""
        first = (now - timedelta(minutes=59)).replace(second=0, microsecond=0)
        for minute in [m for m in self._sealed if m < first]:
            del self._sealed[minute]
        start = first
        while start in self._sealed:
            start += timedelta(minutes=1)
        rows = await pool.fetch(_Q["webhook_minutes"], start)
        fresh = {r["minute"]: (int(r["received"]), int(r["unrecognized"])) for r in rows}
        minute = start
        while minute + timedelta(minutes=1) + self.SEAL_AFTER <= now:
            self._sealed[minute] = fresh.get(minute, (0, 0))
            minute += timedelta(minutes=1)
        return {**self._sealed, **fresh}


async def overview(pool: asyncpg.Pool, cache: MinuteCache) -> Overview:
    """Health, lags, queue, dead letters, parked events, passes and the last hour's webhook rates."""
    report = await status.collect(pool)
    verdict, reasons = status.assess(report)
    counts = await cache.counts(pool, report.checked_at)
    received = {m: c[0] for m, c in counts.items()}
    unrecognized = {m: c[1] for m, c in counts.items()}
    series = [
        Series("received", "received", minute_series(received, report.checked_at)),
        Series(
            "rejected", "rejected", minute_series(rates.REJECTED_WEBHOOKS.per_minute(), report.checked_at)
        ),
        Series("unrecognised", "unrecognized", minute_series(unrecognized, report.checked_at)),
    ]
    builtins = msgspec.to_builtins(report)
    # The change feed's forwarder (issue 13) adds its lag to /status; shown when the snapshot has it.
    forwarder = next((builtins[k] for k in ("forwarder", "change_feed", "forwarding") if k in builtins), None)
    return Overview(
        report=report,
        verdict=verdict.value,
        reasons=reasons,
        chart_svg=rate_chart(series, report.checked_at),
        totals={s.name: sum(s.values) for s in series},
        forwarder=forwarder if isinstance(forwarder, dict) else None,
    )


def page_number(raw: str | None) -> int:
    """A ``?page=`` value, clamped to 1..MAX_PAGE (hostile input is normal input)."""
    try:
        return min(max(int(raw or "1"), 1), MAX_PAGE)
    except ValueError:
        return 1


@operation
async def page(pool: asyncpg.Pool, query: str, number: int) -> tuple[list[dict[str, Any]], bool]:
    """Rows of page ``number`` of list ``query`` and whether a next page exists."""
    rows = await pool.fetch(_Q[query], PAGE_SIZE + 1, (number - 1) * PAGE_SIZE)
    return [dict(r) for r in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


@operation
async def retry_parked(pool: asyncpg.Pool, projection: str | None, position: int | None) -> int:
    """Ask the active projectors to retry one parked event, or all of them; return how many."""
    if projection is not None and position is not None:
        return int(await pool.fetchval(_Q["retry_parked_one"], projection, position) or 0)
    return int(await pool.fetchval(_Q["retry_parked_all"]) or 0)


def utc_iso(value: datetime | None) -> str:
    """An ISO time for a ``<time datetime>`` attribute."""
    return value.isoformat() if value is not None else ""
