"""Fetch workers: turn queued orders into ``order.observed`` events by calling Get Order.

Each worker takes one due job at a time (a lease, ``FOR UPDATE SKIP LOCKED``: any number of workers in
any number of processes share the queue), calls Get Order through the Bunjang client (which already
retries transient failures briefly), and then, in ONE statement, appends what the API returned, keeps
its personal data and removes the job (``bunsync.store_observed``, migrations 0012 and 0013); that
store runs in the background while the worker claims and fetches its next order (at most
``STORING_PER_WORKER`` waiting per worker; Get Order calls stay at ``concurrency``). Both database
steps are group-committed (:mod:`app.groupcommit`): workers that look for work together share one claim
query, and answers that are ready together share one store call (one round trip, one commit); if the
database refuses such a group (bad data), each answer is stored alone, so one unstorable answer fails
only itself. Failures are persisted: the job waits out a growing, jittered delay, and is parked as
dead after ``max_attempts`` attempts, or at once on 404/403 (with the reason); ``bunsync redrive``
re-queues dead jobs. A worker that dies mid-fetch loses nothing: its lease runs out and the job is
claimed again.

Hostile answers end as dead letters with their reason, never as a dead worker: an answer over the
size limit or for another order than asked (the client refuses both), or one the database cannot
store. A ``\u0000`` (which ``jsonb`` refuses) is escaped before storing (:mod:`app.bunjang.jsonsafe`)
and counted. The worker loop is the supervisor: any other error of one job is logged and the loop
goes on (the job's lease expires and it is tried again, up to ``max_attempts``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from asyncpg.exceptions import _base as asyncpg_base

from app import events
from app.aio import wait_any
from app.bunjang import errors
from app.bunjang.client import BunjangClient
from app.bunjang.jsonsafe import UnstorableJson, storable_json
from app.groupcommit import Batcher
from app.ops import metrics
from app.privacy import personal_data
from app.store import db, sqlfiles
from app.store.db import Connection, StorageUnavailable
from app.store.event_log import NewEvent

log = structlog.get_logger(__name__)

_Q = sqlfiles.queries("fetcher")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt ``n + 1`` after ``n`` failed attempts: base·2^(n-1), capped, ±``jitter``."""

    base_s: float = 5.0
    cap_s: float = 3600.0
    jitter: float = 0.2

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the ``attempts``-th failure (pure given ``rng``)."""
        raw = min(self.cap_s, self.base_s * float(2 ** max(attempts - 1, 0)))
        return raw * (1 + rng.uniform(-self.jitter, self.jitter))


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed fetch."""

    order_id: int
    generation: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Answer:
    """A Get Order answer ready to store: its job, its log event, its personal data (JSON text)."""

    job: Job
    event: NewEvent
    personal_json: str | None


#: Most answers stored by one call (the workers of one process rarely have more ready at once).
STORE_BATCH = 64
#: Answers a worker may leave to be stored in the background while it fetches the next (see _worker).
STORING_PER_WORKER = 2

#: Answers bunsync refuses to record, whatever retrying would do: dead at once, with the reason.
_PERMANENT = (errors.NotFound, errors.Forbidden, errors.ResponseTooLarge, errors.WrongOrder)


def observed_event(order_id: int, facts_json: str) -> NewEvent:
    """The log event for one Get Order answer: its order facts (personal data taken out, JSON text
    ``jsonb`` accepts, see :func:`storable_json`).
    Every fetch is a new observation (never de-duplicated by content): a repeated answer is what
    replaces a stale provisional webhook status."""
    return NewEvent(
        stream=events.order_stream(order_id),
        type=events.ORDER_OBSERVED,
        source=events.SOURCE_GET_ORDER,
        idempotency_key=events.observed_key(order_id),
        payload_json=facts_json,
    )


class Fetcher:
    """The fetch workers of one process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: BunjangClient,
        *,
        concurrency: int,
        max_attempts: int,
        worker_id: str,
        lease_s: float = 30.0,
        idle_poll_s: float = 0.5,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._client = client
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._idle_poll_s = idle_poll_s
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self._wake = asyncio.Event()
        self._claims: Batcher[None, Job | None] = Batcher(
            self._claim_for, max_batch=concurrency, name="fetch-claim"
        )
        self._stores: Batcher[Answer, str | None] = Batcher(
            self.store_answers, max_batch=STORE_BATCH, name="fetch-store"
        )

    def wake(self) -> None:
        """Make idle workers look for due jobs now rather than at their next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run ``concurrency`` workers until ``stop`` is set; each finishes its current job first."""
        async with asyncio.TaskGroup() as group:
            for n in range(self._concurrency):
                group.create_task(self._worker(stop), name=f"fetch-worker-{n}")

    async def _worker(self, stop: asyncio.Event) -> None:
        # A worker's answers are stored while it claims and fetches its next order: a store waits for
        # its group's commit, about as long as a claim and a Get Order together (bench_latency at 200
        # new orders/s: claim 7.8, Get Order 6.2, store 11.3 ms at p50). At most STORING_PER_WORKER
        # answers wait per worker, so memory stays bounded; Get Order calls stay `concurrency`.
        storing: set[asyncio.Task[None]] = set()
        try:
            await self._work(stop, storing)
        finally:
            if storing:
                await asyncio.gather(*storing, return_exceptions=True)

    async def _work(self, stop: asyncio.Event, storing: set[asyncio.Task[None]]) -> None:
        while not stop.is_set():
            try:
                job = await self._claims.submit(None)
                if job is None:
                    await wait_any([stop, self._wake], self._idle_poll_s)
                    self._wake.clear()
                    continue
                raw = await self._fetch(job)
                if raw is None:
                    continue
                while len(storing) >= STORING_PER_WORKER:
                    await asyncio.wait(storing, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self._store_supervised(job, raw), name=f"store-{job.order_id}")
                storing.add(task)
                task.add_done_callback(storing.discard)
            except StorageUnavailable as exc:
                log.warning("fetch_storage_unavailable", error=str(exc))
                await wait_any([stop], 2.0)
            except Exception as exc:  # the loop's supervisor: one job's failure never ends the worker
                log.error(
                    "fetch_worker_error",
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    exc_info=exc,
                    action="a bug: report it; the job is claimed again when its lease expires",
                )
                await wait_any([stop], 1.0)

    async def claim(self) -> Job | None:
        """Claim the most overdue job, if any."""
        jobs = await self.claim_many(1)
        return jobs[0] if jobs else None

    @db.operation
    async def claim_many(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` of the most overdue jobs (one query)."""
        rows = await self._pool.fetch(_Q["claim"], self._worker_id, self._lease_s, limit)
        return [Job(order_id=r["order_id"], generation=r["generation"], attempts=r["attempts"]) for r in rows]

    async def _claim_for(self, waiting: list[None]) -> list[Job | None]:
        """One job for each waiting worker while there are due jobs, None for the others."""
        jobs: list[Job | None] = list(await self.claim_many(len(waiting)))
        return jobs + [None] * (len(waiting) - len(jobs))

    async def process(self, job: Job) -> None:
        """Fetch one claimed order and record the outcome (event, retry, or dead)."""
        raw = await self._fetch(job)
        if raw is not None:
            await self._store(job, raw)

    async def _store_supervised(self, job: Job, raw: bytes) -> None:
        """:meth:`_store` in the background: its failures are logged (the job keeps its lease, so it is
        claimed and fetched again when the lease expires: nothing is lost)."""
        try:
            await self._store(job, raw)
        except StorageUnavailable as exc:
            log.warning("fetch_storage_unavailable", order_id=job.order_id, error=str(exc))
        except Exception as exc:
            log.error(
                "fetch_worker_error",
                order_id=job.order_id,
                error=f"{type(exc).__name__}: {exc}"[:300],
                exc_info=exc,
                action="a bug: report it; the job is claimed again when its lease expires",
            )

    async def _fetch(self, job: Job) -> bytes | None:
        """Get Order for a claimed job: the answer, or None when the failure is already recorded (a
        retry later, or a dead letter)."""
        try:
            # Bounded below the lease, so no other worker claims the job while this one still works on it.
            async with asyncio.timeout(self._lease_s * 0.8):
                fetched = await self._client.get_order(job.order_id)
        except TimeoutError:
            await self._failed(job, f"no answer within {self._lease_s * 0.8:.0f} s")
            return None
        except _PERMANENT as exc:
            await self._park(job, f"{type(exc).__name__}: {exc}")
            return None
        except errors.BunjangError as exc:
            if isinstance(exc, errors.ConfigurationError):
                log.error(
                    "fetch_configuration_error",
                    order_id=job.order_id,
                    error=str(exc),
                    action="check BUNSYNC_BUNJANG_ACCESS_KEY / BUNSYNC_BUNJANG_SECRET_KEY",
                )
            await self._failed(job, f"{type(exc).__name__}: {exc}")
            return None
        return fetched.raw

    def _split(self, raw: bytes) -> personal_data.Split:
        """The answer cut into order facts and personal data (a method so that scripts/bench_fetch's
        reference variant can log answers unsplit, as bunsync did before)."""
        return personal_data.split(raw)

    async def _store(self, job: Job, raw: bytes) -> None:
        """Log the order facts, keep the buyer's personal data apart (unless the order was forgotten:
        :mod:`app.privacy.erasure`), remove the job: all in one statement, shared with the other answers
        ready at the same time. An answer that cannot be stored is a dead letter."""
        try:
            # NULs escaped first (jsonb refuses them), then the personal data split off the repaired text.
            text, repaired = storable_json(raw)
            cut = self._split(text.encode("utf-8"))
        except (UnstorableJson, personal_data.Unsplittable) as exc:
            await self._unstorable(job, str(exc))
            return
        if repaired:
            metrics.API_ANOMALIES.labels("escaped_characters").inc(repaired)
            log.warning("fetch_answer_repaired", order_id=job.order_id, escaped_nul=repaired)
        refused = await self._stores.submit(
            Answer(job, observed_event(job.order_id, cut.facts_json), cut.personal_json)
        )
        if refused is not None:
            await self._unstorable(job, refused)
            return
        metrics.FETCH_DONE.inc()
        log.info("fetch_done", order_id=job.order_id, attempts=job.attempts)

    @db.operation
    async def store_answers(self, answers: list[Answer]) -> list[str | None]:
        """Store ``answers`` in one call; for each, None or why the database refused it. When the
        database refuses the group, each answer is stored alone, so only the bad ones fail."""
        try:
            await self._pool.execute(
                _Q["store"],
                [a.job.order_id for a in answers],
                [a.job.generation for a in answers],
                [a.event.stream for a in answers],
                [a.event.type for a in answers],
                [a.event.source for a in answers],
                [a.event.idempotency_key for a in answers],
                [a.event.payload_json for a in answers],
                [a.personal_json for a in answers],
            )
        except (asyncpg.PostgresError, asyncpg_base.DataError) as exc:
            if not db.is_bad_data(exc):
                raise  # the database is away: translated by db.operation, and the fetches retried
            if len(answers) == 1:
                # Never the server's message, which may quote the answer (buyer data): its class and code.
                code = getattr(exc, "sqlstate", None) or "client-side"
                return [f"the database refused it ({type(exc).__name__}, SQLSTATE {code})"]
            log.warning("fetch_store_group_refused_storing_one_by_one", size=len(answers))
            return [(await self.store_answers([a]))[0] for a in answers]
        return [None] * len(answers)

    async def _unstorable(self, job: Job, why: str) -> None:
        metrics.API_ANOMALIES.labels("unstorable").inc()
        await self._park(job, f"Get Order answer cannot be stored: {why}")

    @db.operation
    async def _failed(self, job: Job, error: str) -> None:
        if job.attempts >= self._max_attempts:
            await self._park(job, f"gave up after {job.attempts} attempts; last error: {error}")
            return
        delay = self._backoff.delay(job.attempts, self._rng)
        due = datetime.now(UTC) + timedelta(seconds=delay)
        await self._pool.execute(_Q["retry_later"], job.order_id, error[:1000], due)
        metrics.FETCH_RETRY.inc()
        log.warning(
            "fetch_failed_will_retry",
            order_id=job.order_id,
            attempts=job.attempts,
            retry_in_s=round(delay, 1),
            error=error[:300],
        )

    @db.operation
    async def _park(self, job: Job, reason: str) -> None:
        await self._pool.execute(_Q["park_dead"], job.order_id, reason[:1000])
        metrics.FETCH_DEAD.inc()
        log.error(
            "fetch_dead",
            order_id=job.order_id,
            attempts=job.attempts,
            reason=reason[:300],
            action="fix the cause, then run: bunsync redrive --order " + str(job.order_id),
        )


@db.operation
async def enqueue(conn: Connection, order_ids: list[int]) -> None:
    """Ask for a Get Order fetch of each order (in the caller's transaction)."""
    if order_ids:
        await conn.execute(_Q["enqueue"], order_ids)


@db.operation
async def redrive(pool: asyncpg.Pool, order_ids: list[int] | None) -> list[int]:
    """Re-queue dead fetches (all, or those of ``order_ids``); return the order ids re-queued."""
    rows = await pool.fetch(_Q["redrive"], order_ids)
    return sorted(r["order_id"] for r in rows)


@db.operation
async def due_retries(pool: asyncpg.Pool) -> int:
    """Failed fetches whose backoff has expired and that no worker holds."""
    return int(await pool.fetchval(_Q["due_retries"]) or 0)


@db.operation
async def queue_counts(pool: asyncpg.Pool) -> tuple[int, int]:
    """(pending, dead) fetch jobs."""
    row = await pool.fetchrow(_Q["counts"])
    return (int(row["pending"]), int(row["dead"])) if row else (0, 0)
