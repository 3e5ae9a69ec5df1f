"""The projector engine: runs every projection from its checkpoint to the log's head, and keeps it there.

For each projection, one active instance across all processes: it holds a session-level advisory
lock on a dedicated connection (standbys poll for it; when the holder's connection dies, PostgreSQL
releases the lock and a standby takes over). The same connection LISTENs on ``bunsync_events`` to be
woken by appends; the loop also polls, so a lost notification costs latency, never data.

A batch is one transaction: lock and read the checkpoint, read events in commit-safe order, apply
them, park the ones a handler cannot apply, move the checkpoint. An event that makes a handler raise
is parked (``parked_events``) and the projection goes on; :func:`retry_parked` retries parked events
after a fix. Losing the database is not an event's fault: that error propagates and the loop retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog

from app.aio import wait_any
from app.store import db, event_log
from app.store.db import Connection, StorageUnavailable
from app.store.event_log import Checkpoint, RecordedEvent
from app.store.sqlfiles import queries
from projections import REGISTRY
from projections.base import Projection

log = structlog.get_logger(__name__)
_Q = queries("projections")

#: Every projection, by name.
PROJECTIONS: dict[str, Projection[Any]] = {p.name: p for p in REGISTRY}
LIVE_SCHEMA = "bunsync"
CHANNEL = "bunsync_events"
BATCH_SIZE = 500
#: The largest batch a projector behind the head grows to (see catch_up). A batch is one transaction,
#: and while it writes it holds back every commit-safe reader: kept to a fraction of a second.
MAX_BATCH_SIZE = 4000
_MAX_BACKOFF_S = 30.0
#: After a wake-up that found nothing readable, look again after each of these delays (s): what
#: holds the reader back is then almost always another short transaction (a group commit of ingest,
#: another projector's batch) that commits within milliseconds, so the first looks come soon.
_RECHECK_DELAYS_S = (0.002, 0.004, 0.008, 0.016, 0.032, 0.064)
#: A projector that becomes active with its projection fresh and the log's head above this many
#: events fills it set-based first (:mod:`projections.fill`); below it, batches are about as fast.
FILL_MIN_EVENTS = 20_000


class ProjectorDied(RuntimeError):
    """A projection loop ended while it should have been running."""


def _is_poison(exc: BaseException) -> bool:
    """Whether ``exc`` is the event's fault (park it), rather than the database being away (retry).

    asyncpg's client-side DataError (a value it cannot encode) subclasses InterfaceError, which the
    DB boundary counts as "unavailable"; for an event it is bad data, so it is checked first.
    """
    return not db.is_unavailable(exc)


def _decode(
    projection: Projection[Any], events: list[RecordedEvent]
) -> tuple[list[tuple[RecordedEvent, Any]], list[tuple[RecordedEvent, BaseException]]]:
    """Each event decoded by ``projection``, and those it cannot read (to be parked)."""
    failed: list[tuple[RecordedEvent, BaseException]] = []
    decoded: list[tuple[RecordedEvent, Any]] = []
    for event in events:
        try:
            decoded.append((event, projection.decode(event)))
        except Exception as exc:  # a payload this handler cannot read: park it, go on
            failed.append((event, exc))
    return decoded, failed


async def apply_events(
    conn: Connection, projection: Projection[Any], events: list[RecordedEvent]
) -> list[tuple[RecordedEvent, BaseException]]:
    """Apply ``events`` in the caller's transaction; return those that could not be applied.

    Decoding is per event. The batch is written in one savepoint; if that fails because of the data,
    each event is written again in its own savepoint, so only the culprits are left out.
    """
    decoded, failed = _decode(projection, events)
    if not decoded:
        return failed
    try:
        async with conn.transaction():
            await projection.write(conn, decoded)
    except Exception as exc:
        if not _is_poison(exc):
            raise
        for one in decoded:
            try:
                async with conn.transaction():
                    await projection.write(conn, [one])
            except Exception as one_exc:
                if not _is_poison(one_exc):
                    raise
                failed.append((one[0], one_exc))
    return sorted(failed, key=lambda f: f[0].position)


class _Poisoned(Exception):
    """A batch written without savepoints failed because of its data (its transaction is lost)."""


async def _apply_at_once(
    conn: Connection, projection: Projection[Any], events: list[RecordedEvent]
) -> list[tuple[RecordedEvent, BaseException]]:
    """:func:`apply_events` without its savepoint (two round trips fewer), for a batch that can be
    redone whole: a write failing because of the data raises :class:`_Poisoned` (the caller rolls the
    batch back and redoes it with :func:`apply_events`)."""
    decoded, failed = _decode(projection, events)
    if decoded:
        try:
            await projection.write(conn, decoded)
        except Exception as exc:
            if not _is_poison(exc):
                raise
            raise _Poisoned(_describe(exc)) from exc
    return failed


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


@db.operation
async def park(
    conn: Connection, projection: Projection[Any], failed: list[tuple[RecordedEvent, BaseException]]
) -> None:
    """Park the events ``apply_events`` could not apply, with their errors (caller's transaction)."""
    for event, exc in failed:
        await conn.execute(_Q["park"], projection.name, event.position, _describe(exc))
        log.error(
            "projection_event_parked",
            projection=projection.name,
            position=event.position,
            event_type=event.type,
            error=_describe(exc),
            action="fix the cause, then retry parked events (bunsync CLI)",
        )


@db.operation
async def process_batch(
    conn: Connection, projection: Projection[Any], *, schema: str = LIVE_SCHEMA, batch_size: int = BATCH_SIZE
) -> int:
    """Project the next batch after the checkpoint in one transaction; return how many events were read.

    ``schema`` holds the tables and checkpoint written (the live ones, or a rebuild's). When ``conn``
    is already in a transaction this runs in a savepoint of it.

    The batch is written without savepoints first (each round trip counts: a batch is the projector's
    latency); if a write fails because of the data, the whole batch is rolled back and done again with
    :func:`apply_events`, which parks only the culprits.
    """
    try:
        return await _batch(conn, projection, schema, batch_size, careful=False)
    except _Poisoned as poisoned:
        log.info("projection_batch_redone", projection=projection.name, reason=str(poisoned)[:500])
        return await _batch(conn, projection, schema, batch_size, careful=True)


async def _batch(
    conn: Connection, projection: Projection[Any], schema: str, batch_size: int, *, careful: bool
) -> int:
    async with conn.transaction():
        await conn.execute(_Q["begin_batch"], schema, projection.name)
        row = await conn.fetchrow(_Q["checkpoint"], projection.name)
        if row is None:
            raise ProjectorDied(f"projection {projection.name} has no checkpoint in schema {schema}")
        checkpoint = Checkpoint(tx_id=int(row["tx_text"]), position=row["position"])
        # Every event moves the checkpoint; only the handled ones need their payload.
        batch = await event_log.read_after(conn, checkpoint, batch_size, projection.handles)
        if not batch:
            return 0
        handled = [e for e in batch if e.type in projection.handles]
        apply = apply_events if careful else _apply_at_once
        await park(conn, projection, await apply(conn, projection, handled))
        last = batch[-1].checkpoint
        await conn.execute(_Q["save_checkpoint"], projection.name, str(last.tx_id), last.position, len(batch))
    return len(batch)


@db.operation
async def retry_requested(conn: Connection, projection: Projection[Any], *, schema: str = LIVE_SCHEMA) -> int:
    """Retry the parked events of ``projection`` whose retry was requested; return how many now applied."""
    resolved = 0
    async with conn.transaction():
        await conn.execute(_Q["use_schema"], schema)
        # Same lock as a batch: a retry never interleaves with a batch or a rebuild's swap.
        await conn.execute(_Q["lock_writer"], schema, projection.name)
        for row in await conn.fetch(_Q["retry_requested"], projection.name):
            event = await _event_at(conn, row["position"])
            failed = await apply_events(conn, projection, [event]) if event.type in projection.handles else []
            if failed:
                await conn.execute(_Q["park"], projection.name, event.position, _describe(failed[0][1]))
                log.warning("parked_event_still_failing", projection=projection.name, position=event.position)
            else:
                await conn.execute(_Q["resolve"], projection.name, event.position)
                resolved += 1
    return resolved


@db.operation
async def _event_at(conn: Connection, position: int) -> RecordedEvent:
    r = await conn.fetchrow(_Q["event_at"], position)
    if r is None:
        raise ProjectorDied(f"parked event {position} is not in the log")
    return event_log.recorded(r)


async def catch_up(
    pool: asyncpg.Pool,
    projection: Projection[Any],
    *,
    batch_size: int = BATCH_SIZE,
    max_batch_size: int = MAX_BATCH_SIZE,
) -> int:
    """Project batches until the checkpoint reaches the readable head (or ``batch_size`` events x 20,
    so one busy projection cannot starve the loop's other duties); return how many events were read.

    While batches come back full (the projector is behind), each next one is twice as large, up to
    ``max_batch_size``: fewer round trips and transactions per event when catching up.
    """
    total, size = 0, batch_size
    while total < batch_size * 20:
        async with pool.acquire() as conn:
            n = await process_batch(conn, projection, batch_size=size)
        total += n
        if n < size:
            break
        size = min(size * 2, max_batch_size)
    return total


@db.operation
async def retry_parked(dsn: str, projection: str | None = None) -> int:
    """Retry parked events (of one projection, or all); return how many were retried.

    Where no projector of the projection is active, they are retried here and now. Where one is
    active (it holds the projection's lock), the request is left for it: it retries them on its next
    pass, within a poll interval. Outcomes are logged either way.
    """
    names = [projection] if projection else sorted(PROJECTIONS)
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        raise ValueError(f"unknown projection(s) {unknown}; known: {sorted(PROJECTIONS)}")
    retried = 0
    async with db.service_connection(dsn) as conn:
        for name in names:
            requested = int(await conn.fetchval(_Q["request_retry"], name))
            if not requested:
                continue
            retried += requested
            if not await conn.fetchval(_Q["try_lock"], name):
                log.info("parked_retry_requested", projection=name, events=requested, by="active projector")
                continue
            try:
                resolved = await retry_requested(conn, PROJECTIONS[name])
            finally:
                await conn.fetchval(_Q["unlock"], name)
            log.info("parked_retried", projection=name, events=requested, resolved=resolved)
    return retried


@db.operation
async def lag(conn: Connection) -> dict[str, int]:
    """Events behind the log head, per projection."""
    return {r["projection"]: int(r["lag"]) for r in await conn.fetch(_Q["lag"])}


async def run_projectors(
    pool: asyncpg.Pool,
    dsn: str,
    stop: asyncio.Event,
    *,
    poll_interval_s: float = 1.0,
    fill_min_events: int = FILL_MIN_EVENTS,
) -> None:
    """Run every projection until ``stop`` is set; each finishes its batch in flight first.

    ``fill_min_events``: the far-behind threshold (:data:`FILL_MIN_EVENTS`, :mod:`projections.fill`).

    If a projection's loop dies, the others are stopped and the error is raised: the process should
    not run half-alive (its supervisor restarts it).
    """
    halt = asyncio.Event()
    loops = [
        asyncio.create_task(
            ProjectorLoop(p, pool, dsn, halt, poll_interval_s, fill_min_events).run(),
            name=f"projector:{p.name}",
        )
        for p in PROJECTIONS.values()
    ]
    stopper = asyncio.create_task(stop.wait(), name="projectors:stop")
    try:
        done, _ = await asyncio.wait([*loops, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt.set()
        stopper.cancel()
        results = await asyncio.gather(*loops, return_exceptions=True)
    for task, result in zip(loops, results, strict=True):
        if task in done and not stop.is_set():
            log.error("projector_died", task=task.get_name(), error=repr(result))
            if isinstance(result, BaseException):
                raise ProjectorDied(f"{task.get_name()} died: {result!r}") from result
            raise ProjectorDied(f"{task.get_name()} ended unexpectedly")
    for result in results:
        if isinstance(result, BaseException):
            raise result


class ProjectorLoop:
    """One projection's loop: standby until it holds the lock, then project on every wake-up/poll."""

    def __init__(
        self,
        projection: Projection[Any],
        pool: asyncpg.Pool,
        dsn: str,
        halt: asyncio.Event,
        poll_s: float,
        fill_min_events: int = FILL_MIN_EVENTS,
    ) -> None:
        self.projection = projection
        self.pool = pool
        self.dsn = dsn
        self.halt = halt
        self.poll_s = poll_s
        self.fill_min_events = fill_min_events

    async def run(self) -> None:
        """Until halted: hold the lock and project; ride out the database going away."""
        backoff = self.poll_s
        while not self.halt.is_set():
            try:
                await self._hold_and_project()
                backoff = self.poll_s
            except Exception as exc:
                # Only "the database is away" is ridden out; anything else ends the loop (and the
                # supervisor in run_projectors stops the process) rather than running half-alive.
                if not db.is_unavailable(exc):
                    raise
                log.warning(
                    "projector_db_unavailable",
                    projection=self.projection.name,
                    error=str(exc),
                    retry_in_s=backoff,
                )
                await wait_any([self.halt], backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    @db.operation
    async def _hold_and_project(self) -> None:
        name = self.projection.name
        async with db.service_connection(self.dsn) as lock_conn:
            standby_logged = False
            while not await lock_conn.fetchval(_Q["try_lock"], name):
                if not standby_logged:
                    log.info("projector_standby", projection=name)
                    standby_logged = True
                await wait_any([self.halt], self.poll_s)
                if self.halt.is_set():
                    return
            log.info("projector_active", projection=name)
            wake, lost = asyncio.Event(), asyncio.Event()
            await lock_conn.add_listener(CHANNEL, lambda *_: wake.set())
            lock_conn.add_termination_listener(lambda *_: lost.set())
            async with self.pool.acquire() as conn:
                await conn.execute(_Q["ensure_checkpoint"], name)
            await self._fill_if_far_behind()
            rechecks: list[float] = []
            retry_check_due = 0.0
            while not self.halt.is_set():
                if lost.is_set() or lock_conn.is_closed():
                    raise StorageUnavailable(f"projector {name} lost its lock connection")
                wake.clear()
                read = await catch_up(self.pool, self.projection)
                # Operators' retry requests (retry_parked, the console) are promised within a poll
                # interval: looking once per interval, not after every batch, spares a batch cycle two
                # round trips (the cycle is the projector's latency).
                if (now := asyncio.get_running_loop().time()) >= retry_check_due:
                    retry_check_due = now + self.poll_s
                    async with self.pool.acquire() as conn:
                        if await conn.fetchval(_Q["any_retry_requested"], name):
                            await retry_requested(conn, self.projection)
                if read:
                    log.debug("projection_advanced", projection=name, events=read)
                    continue
                if rechecks:
                    # Woken but nothing readable yet: a transaction older than the notified one is
                    # still open (commit-safe reads wait for it). Look again shortly.
                    await wait_any([self.halt], rechecks.pop(0))
                    continue
                await wait_any([self.halt, wake, lost], self.poll_s)
                rechecks = list(_RECHECK_DELAYS_S) if wake.is_set() else []
                # The lock lives as long as this connection: make sure it still does.
                await lock_conn.fetchval(_Q["ping"])

    async def _fill_if_far_behind(self) -> None:
        """Fill the projection set-based if it is fresh and far behind (:mod:`projections.fill`);
        halting cancels the fill, which leaves the live tables untouched."""
        from projections import fill  # here: fill imports bulk, which imports this module

        if not await fill.should_fill(self.pool, self.projection, self.fill_min_events):
            return
        name = f"fill:{self.projection.name}"
        filling = asyncio.create_task(fill.fill(self.dsn, self.projection), name=name)
        halted = asyncio.create_task(self.halt.wait())
        try:
            await asyncio.wait([filling, halted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            halted.cancel()
            if not filling.done():
                filling.cancel()
                await asyncio.gather(filling, return_exceptions=True)
        if not filling.cancelled():
            filling.result()  # the database being away propagates: the loop rides it out
