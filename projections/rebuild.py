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
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

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

#: Told how far a rebuild is: (events done, events to do, the projection's name). The CLI passes
#: :func:`app.progress.progress_reporter`'s (a bar on a terminal, log lines otherwise).
Progress = Callable[[int, int, str], None]


class RebuildError(RuntimeError):
    """A rebuild could not be done (unknown projection, another rebuild running, swap kept failing)."""


async def rebuild(
    dsn: str, names: list[str] | None, *, progress: Progress | None = None, batch_size: int = BATCH_SIZE
) -> None:
    """Rebuild the named projections (all when ``names`` is empty or None) from the log, one by one.

    ``progress``: called after every batch with the events done so far.
    """
    selected = list(names) if names else list(PROJECTIONS)
    unknown = [n for n in selected if n not in PROJECTIONS]
    if unknown:
        raise RebuildError(f"unknown projection(s) {unknown}; known: {sorted(PROJECTIONS)}")
    for name in dict.fromkeys(selected):
        await _rebuild_one(dsn, PROJECTIONS[name], progress or _no_progress, batch_size)


def _no_progress(done: int, total: int, name: str) -> None:
    """Progress nobody watches."""


class _Count:
    """Events one rebuild has done; each step is reported."""

    def __init__(self, name: str, total: int, report: Progress) -> None:
        self.name, self.total, self.done, self._report = name, total, 0, report
        self.started = time.monotonic()
        report(0, total, name)

    def advance(self, n: int) -> None:
        self.done += n
        # Appends during the rebuild can take it past the total counted at the start.
        self._report(self.done, max(self.total, self.done), self.name)


@db.operation
async def _rebuild_one(dsn: str, projection: Projection[Any], progress: Progress, batch_size: int) -> None:
    name = projection.name
    async with db.admin_connection(dsn) as conn:
        # Session lock: released when this connection closes, however the rebuild ends.
        if not await conn.fetchval(_P["try_rebuild_lock"], name):
            raise RebuildError(f"another rebuild of {name} is running; wait for it to finish")
        schema = str(await conn.fetchval(_Q["begin"], name, list(projection.tables)))
        total = int(await conn.fetchval(_P["log_events"]))
        log.info("rebuild_started", projection=name, events=total)
        count = _Count(name, total, progress)
        count.advance(await bulk.run(dsn, conn, projection, schema))
        while n := await process_batch(conn, projection, schema=schema, batch_size=batch_size):
            count.advance(n)
        await _swap(conn, projection, schema, batch_size, count)
        elapsed = time.monotonic() - count.started
        log.info(
            "rebuild_done",
            projection=name,
            events=count.done,
            seconds=round(elapsed, 2),
            events_per_s=round(count.done / elapsed) if elapsed > 0 else None,
        )


@db.operation
async def _swap(
    conn: asyncpg.Connection, projection: Projection[Any], schema: str, batch_size: int, count: _Count
) -> None:
    """Catch up and swap in one transaction; retried if readers' locks make it time out or deadlock."""
    tables = list(projection.tables)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(_Q["lock_timeout"], SWAP_LOCK_TIMEOUT)
                # The live writer's lock: waits for the live batch in flight, then holds the live
                # projector off until the swap commits (it then resumes from the rebuilt checkpoint).
                await conn.execute(_P["lock_writer"], LIVE_SCHEMA, projection.name)
                caught_up = 0
                while n := await process_batch(conn, projection, schema=schema, batch_size=batch_size):
                    caught_up += n
                views = await _lock_for_swap(conn, tables)
                await conn.execute(_Q["swap"], projection.name, tables)
                for view in _view_files(views):
                    await conn.execute(view.text)
                await conn.execute(_Q["finish"], projection.name)
            count.advance(caught_up)
            return
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            log.warning("rebuild_swap_retry", projection=projection.name, attempt=attempt, error=str(exc))
    raise RebuildError(
        f"could not swap {projection.name} in after {SWAP_ATTEMPTS} attempts: long-running readers hold "
        "its views; the live projection is untouched, run the rebuild again"
    )


def _view_files(views: list[str]) -> list[sqlfiles.SqlFile]:
    """The files of the reporting views ``views`` (each ``sql/views/<view>.sql``): the views bound to
    the swapped tables, which the swap must re-create (any other is left alone, and unlocked)."""
    files = {f.name.removesuffix(".sql"): f for f in sqlfiles.files("views")}
    missing = sorted(set(views) - set(files))
    if missing:
        raise RebuildError(f"reporting views without a file in sql/views: {missing}")
    return [files[v] for v in sorted(views)]


@db.operation
async def _lock_for_swap(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Take the swap's locks all at once, retrying while readers hold them (never waiting inside);
    return the reporting views bound to ``tables``."""
    deadline = time.monotonic() + SWAP_LOCK_WAIT_S
    while True:
        try:
            async with conn.transaction():  # a savepoint: a failed attempt leaves nothing held
                return list(await conn.fetchval(_Q["swap_lock"], tables))
        except asyncpg.LockNotAvailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)
