"""The reconciler: find every status change that webhooks missed, by polling List Orders.

Planning is pure (:func:`plan_range`, :func:`differences`); the pass around it is thin I/O. A pass covers
``[watermark - overlap, now]`` (first pass: ``now - lookback``), window by window (at most 15 days each,
every page). Every listed order with an item whose status or ``statusUpdatedAt`` differs from what
``order_item_status`` shows is appended as an ``order.listed`` observation (idempotent: the same
observation twice is one event) and gets a Get Order fetch. The watermark moves only after the whole
range was processed; each pass is recorded in ``bunsync.reconcile_passes``. One process reconciles at a
time (advisory lock).

Bounded whatever List Orders answers: every pass has a deadline (recorded with it, so ``bunsync
status`` flags a pass unfinished past it), the client reads at most the pages a window's first page
announced (and never more than its hard maximum), and a listed time is compared with the view only
when plausible (:func:`projections.rules.plausible_time`), as the projection judges it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import msgspec
import structlog

from app import events, fetcher
from app.bunjang.client import BunjangClient
from app.bunjang.jsonsafe import storable_json
from app.bunjang.types import ListedOrder
from app.bunjang.windows import Window, split_windows
from app.ops import metrics
from app.store import db, event_log, sqlfiles
from app.store.db import StorageUnavailable
from app.store.event_log import NewEvent
from projections.rules import plausible_time

log = structlog.get_logger(__name__)

_Q = sqlfiles.queries("reconciler")

_BATCH = 100
DEFAULT_PASS_DEADLINE_S = 3600.0


@dataclass(frozen=True, slots=True)
class Plan:
    """The range a pass covers, and whether finishing it may move the watermark."""

    start: datetime
    end: datetime
    advances_watermark: bool

    def windows(self) -> tuple[Window, ...]:
        """The List Orders windows (at most 15 days each) covering the range."""
        return split_windows(self.start, self.end)


def plan_range(
    watermark: datetime | None,
    now: datetime,
    *,
    overlap: timedelta,
    lookback: timedelta,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Plan:
    """The range of the next pass (pure).

    Scheduled: ``[watermark - overlap, now]``, or ``[now - lookback, now]`` before the first success.
    A backfill (``since``/``until``) covers exactly what it is asked; it moves the watermark only if it
    leaves no gap after it (it starts at or before the watermark, or there is none yet).
    """
    end = min(until or now, now)
    if since is not None:
        start = since
    elif watermark is not None:
        start = watermark - overlap
    else:
        start = now - lookback
    if start > end:
        raise ValueError(f"the range starts ({start.isoformat()}) after it ends ({end.isoformat()})")
    advances = watermark is None or start <= watermark
    return Plan(start=start, end=end, advances_watermark=advances)


ItemState = tuple[str, datetime | None]


def differences(
    listed: Iterable[ListedOrder], shown: Mapping[int, ItemState], now: datetime
) -> list[ListedOrder]:
    """The listed orders with at least one item whose (status, statusUpdatedAt) is not what is shown.

    A listed time that is not plausible at ``now`` is compared as absent: the view never shows it.
    """
    return [
        order
        for order in listed
        if any(
            shown.get(item.id) != (item.status, _plausible(item.status_updated_at, now))
            for item in order.order_items
        )
    ]


def _plausible(value: datetime | None, now: datetime) -> datetime | None:
    return value if value is not None and plausible_time(value, now) else None


def listed_event(order: ListedOrder) -> NewEvent:
    """The log event for one List Orders observation; the same observation always has the same key."""
    payload = msgspec.json.encode(order)
    text, repaired = storable_json(payload)  # a NUL in a status would make jsonb refuse the pass's batch
    if repaired:
        metrics.API_ANOMALIES.labels("escaped_characters").inc(repaired)
        log.warning("listed_order_repaired", order_id=order.id, escaped_nul=repaired)
    return NewEvent(
        stream=events.order_stream(order.id),
        type=events.ORDER_LISTED,
        source=events.SOURCE_LIST_ORDERS,
        idempotency_key=events.listed_key(order.id, payload),
        payload_json=text,
    )


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass did."""

    start: datetime
    end: datetime
    orders_seen: int
    differences: int
    watermark_moved: bool


Progress = Callable[[int, int, int], None]  # (windows done, windows total, orders seen)


@db.operation
async def run_pass(
    pool: asyncpg.Pool,
    client: BunjangClient,
    *,
    now: datetime,
    overlap: timedelta,
    lookback: timedelta,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
    deadline_s: float = DEFAULT_PASS_DEADLINE_S,
) -> PassResult:
    """One reconcile pass (the caller holds the reconcile lock). Raises if it fails; the failure is
    recorded in ``reconcile_passes`` and the watermark stays where it was. A pass still running after
    ``deadline_s`` is cut and fails (``TimeoutError``)."""
    watermark = await pool.fetchval(_Q["watermark"])
    plan = plan_range(watermark, now, overlap=overlap, lookback=lookback, since=since, until=until)
    pass_id = await pool.fetchval(_Q["pass_started"], plan.start, plan.end, float(deadline_s))
    log.info("reconcile_started", range_start=plan.start.isoformat(), range_end=plan.end.isoformat())
    counts = [0, 0, 0]  # orders seen, differences, List Orders pages read
    try:
        try:
            async with asyncio.timeout(deadline_s):
                await _windows(pool, client, plan, now, counts, progress)
        except TimeoutError:
            raise TimeoutError(f"the pass ran past its deadline of {deadline_s:g} s and was cut") from None
        if plan.advances_watermark:
            await pool.execute(_Q["set_watermark"], plan.end)
    except BaseException as exc:
        seen, found, pages = counts
        error = f"{type(exc).__name__}: {exc}"[:2000]
        await _finish(pool, pass_id, seen, found, pages, ok=False, error=error)
        _count(ok=False, seen=seen, found=found)
        # Not ERROR: the next tick retries by itself. What an operator must fix (credentials rejected)
        # is logged at ERROR where it is found; a pass that keeps failing shows in `bunsync status`
        # and in bunsync_reconcile_passes_total{result="failed"}.
        (log.info if isinstance(exc, asyncio.CancelledError) else log.warning)(
            "reconcile_failed",
            orders_seen=seen,
            differences=found,
            error=error[:500],
            note="retried at the next tick; the watermark did not move",
        )
        raise
    seen, found, pages = counts
    await _finish(pool, pass_id, seen, found, pages, ok=True, error=None)
    _count(ok=True, seen=seen, found=found)
    log.info("reconcile_done", orders_seen=seen, differences=found, watermark_moved=plan.advances_watermark)
    return PassResult(plan.start, plan.end, seen, found, plan.advances_watermark)


async def _windows(
    pool: asyncpg.Pool,
    client: BunjangClient,
    plan: Plan,
    now: datetime,
    counts: list[int],
    progress: Progress | None,
) -> None:
    """Every window of ``plan``, every page; ``counts`` (seen, differences, pages) is kept up to date."""

    def page_read() -> None:
        counts[2] += 1

    windows = plan.windows()
    for done, window in enumerate(windows, start=1):
        batch: list[ListedOrder] = []
        async for order in client.list_window(window, on_page=page_read):
            counts[0] += 1
            batch.append(order)
            if len(batch) >= _BATCH:
                counts[1] += await _record(pool, batch, now)
                batch = []
        counts[1] += await _record(pool, batch, now)
        if progress:
            progress(done, len(windows), counts[0])


def _count(*, ok: bool, seen: int, found: int) -> None:
    (metrics.RECONCILE_OK if ok else metrics.RECONCILE_FAILED).inc()
    metrics.RECONCILE_ORDERS_SEEN.inc(seen)
    metrics.RECONCILE_DIFFERENCES.inc(found)


@db.operation
async def _record(pool: asyncpg.Pool, batch: list[ListedOrder], now: datetime) -> int:
    """Append the observations of ``batch`` that differ from the view (and enqueue their fetches)."""
    if not batch:
        return 0
    item_ids = [item.id for order in batch for item in order.order_items]
    rows = await pool.fetch(_Q["current_items"], item_ids)
    shown = {r["order_item_id"]: (r["status"], r["status_updated_at"]) for r in rows}
    changed = differences(batch, shown, now)
    if changed:
        async with pool.acquire() as conn, conn.transaction():
            # One event per key: the client may yield an order twice when it changed between pages.
            events = {e.idempotency_key: e for e in map(listed_event, changed)}
            await event_log.append(conn, list(events.values()))
            # Fetch even when this observation was logged before (the event is then skipped): the view
            # still differs, e.g. a later webhook made an item provisional, and only the API settles it.
            await fetcher.enqueue(conn, sorted({o.id for o in changed}))
    return len(changed)


async def _finish(
    pool: asyncpg.Pool, pass_id: int, seen: int, found: int, pages: int, *, ok: bool, error: str | None
) -> None:
    try:
        await _pass_finished(pool, pass_id, seen, found, ok, error, pages)
    except StorageUnavailable as exc:
        log.warning("reconcile_pass_not_recorded", pass_id=pass_id, error=str(exc))


@db.operation
async def _pass_finished(
    pool: asyncpg.Pool, pass_id: int, seen: int, found: int, ok: bool, error: str | None, pages: int
) -> None:
    await pool.execute(_Q["pass_finished"], pass_id, seen, found, ok, error, pages)


def exclusive(dsn: str, *, on_busy: Callable[[], None] | None = None) -> AbstractAsyncContextManager[bool]:
    """The reconcile lock for the block (one pass at a time across replicas): yields whether it is held;
    with ``on_busy``, waits for it instead (see :func:`app.store.db.session_lock`)."""
    return db.session_lock(dsn, _Q, on_busy=on_busy)
