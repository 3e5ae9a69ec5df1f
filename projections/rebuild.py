"""Rebuild projections from the log without taking their views away from readers.

1. Fresh, empty copies of the projection's tables are made in schema ``bunsync_build_<name>``, with
   their own checkpoint at the start of the log. A projection with a bulk phase (:mod:`projections.bulk`)
   fills them set-based up to a snapshot's xmin first; then the engine carries on batch by batch (the
   same code as the live projector, pointed there by ``search_path``) while the live tables keep
   serving.
2. The swap is one transaction: take the live writer's lock (so the live projector, which takes
   the same lock in each batch, finishes its batch in flight and then waits), catch up to the
   log's readable head, move the live tables out and the rebuilt ones in, re-create the reporting
   views (a view is bound to a table, not to its name), drop the old tables. Readers see the old
   rows until the commit and the new ones after it, never an empty or partial view. The live
   projector then carries on from the rebuilt checkpoint.

An interrupted rebuild leaves the live tables untouched; running it again starts it afresh.
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import TracebackType
from typing import Any

import asyncpg
import structlog
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from app.store import db, sqlfiles
from app.store.sqlfiles import queries
from projections import bulk
from projections.base import Projection
from projections.engine import LIVE_SCHEMA, PROJECTIONS, process_batch

log = structlog.get_logger(__name__)
_Q = queries("rebuild")
_P = queries("projections")

BATCH_SIZE = 5000
SWAP_ATTEMPTS = 5
SWAP_LOCK_TIMEOUT = "10s"
SWAP_LOCK_WAIT_S = 10.0
_LOG_EVERY_S = 5.0


class RebuildError(RuntimeError):
    """A rebuild could not be done (unknown projection, another rebuild running, swap kept failing)."""


async def rebuild(dsn: str, names: list[str] | None, *, progress: bool, batch_size: int = BATCH_SIZE) -> None:
    """Rebuild the named projections (all when ``names`` is empty or None) from the log, one by one.

    ``progress``: show a progress bar (events done, rate, ETA) when stderr is a terminal; otherwise,
    or when False, plain log lines.
    """
    selected = list(names) if names else list(PROJECTIONS)
    unknown = [n for n in selected if n not in PROJECTIONS]
    if unknown:
        raise RebuildError(f"unknown projection(s) {unknown}; known: {sorted(PROJECTIONS)}")
    for name in dict.fromkeys(selected):
        await _rebuild_one(dsn, PROJECTIONS[name], progress and sys.stderr.isatty(), batch_size)


async def _rebuild_one(dsn: str, projection: Projection[Any], show_bar: bool, batch_size: int) -> None:
    name = projection.name
    async with db.admin_connection(dsn) as conn:
        # Session lock: released when this connection closes, however the rebuild ends.
        if not await db.guard(conn.fetchval(_P["try_rebuild_lock"], name)):
            raise RebuildError(f"another rebuild of {name} is running; wait for it to finish")
        schema = str(await db.guard(conn.fetchval(_Q["begin"], name, list(projection.tables))))
        total = int(await db.guard(conn.fetchval(_P["log_events"])))
        log.info("rebuild_started", projection=name, events=total)
        with _Meter(name, total, show_bar) as meter:
            meter.advance(await bulk.run(dsn, conn, projection, schema))
            while n := await process_batch(conn, projection, schema=schema, batch_size=batch_size):
                meter.advance(n)
            await _swap(conn, projection, schema, batch_size, meter)
        log.info(
            "rebuild_done",
            projection=name,
            events=meter.done,
            seconds=round(meter.elapsed, 2),
            events_per_s=round(meter.rate),
        )


async def _swap(
    conn: asyncpg.Connection, projection: Projection[Any], schema: str, batch_size: int, meter: _Meter
) -> None:
    """Catch up and swap in one transaction; retried if readers' locks make it time out or deadlock."""
    tables = list(projection.tables)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await db.guard(conn.execute(_Q["lock_timeout"], SWAP_LOCK_TIMEOUT))
                # The live writer's lock: waits for the live batch in flight, then holds the live
                # projector off until the swap commits (it then resumes from the rebuilt checkpoint).
                await db.guard(conn.execute(_P["lock_writer"], LIVE_SCHEMA, projection.name))
                caught_up = 0
                while n := await process_batch(conn, projection, schema=schema, batch_size=batch_size):
                    caught_up += n
                await _lock_for_swap(conn, tables)
                await db.guard(conn.execute(_Q["swap"], projection.name, tables))
                for view in sqlfiles.files("views"):
                    await db.guard(conn.execute(view.text))
                await db.guard(conn.execute(_Q["finish"], projection.name))
            meter.advance(caught_up)
            return
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            log.warning("rebuild_swap_retry", projection=projection.name, attempt=attempt, error=str(exc))
    raise RebuildError(
        f"could not swap {projection.name} in after {SWAP_ATTEMPTS} attempts: long-running readers hold "
        "its views; the live projection is untouched, run the rebuild again"
    )


async def _lock_for_swap(conn: asyncpg.Connection, tables: list[str]) -> None:
    """Take the swap's locks all at once, retrying while readers hold them (never waiting inside)."""
    deadline = time.monotonic() + SWAP_LOCK_WAIT_S
    while True:
        try:
            async with conn.transaction():  # a savepoint: a failed attempt leaves nothing held
                await db.guard(conn.execute(_Q["swap_lock"], tables))
            return
        except asyncpg.LockNotAvailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


class _RateColumn(ProgressColumn):
    """Events per second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} events/s")


class _Meter:
    """Progress of one rebuild: a rich bar on a terminal, else a structured log line every few seconds."""

    def __init__(self, name: str, total: int, show_bar: bool) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Progress | None = None
        if show_bar:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task(f"rebuild {name}", total=max(total, 1))

    @property
    def elapsed(self) -> float:
        """Seconds since the rebuild started."""
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Events per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def advance(self, n: int) -> None:
        """Count ``n`` more events done."""
        self.done += n
        if self._bar is not None:
            # Appends during the rebuild can take it past the total counted at the start.
            self._bar.update(self._task, advance=n, total=max(self.total, self.done))
            return
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            remaining = max(self.total - self.done, 0)
            log.info(
                "rebuild_progress",
                projection=self.name,
                done=self.done,
                total=self.total,
                events_per_s=round(self.rate),
                eta_s=round(remaining / self.rate) if self.rate else None,
            )

    def __enter__(self) -> _Meter:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
