"""Scheduled jobs inside ``bunsync serve`` (APScheduler 3, asyncio scheduler).

- ``reconcile`` every ``BUNSYNC_RECONCILE_INTERVAL_S`` (first run at start): one reconcile pass, by one
  replica at a time: the job takes a PostgreSQL advisory lock on its own connection and skips the tick
  if another replica holds it; if the holder dies its connection (and lock) goes, and the next tick
  elsewhere takes over.
- ``pii_retention`` daily (first run a minute after start): erases the buyer personal data of orders
  whose items all reached a final status ``BUNSYNC_PII_RETENTION_DAYS`` ago (:mod:`app.privacy.erasure`), by
  one replica at a time (an advisory lock, as for reconcile).
- ``fetch_retries`` every few seconds: wakes this process's fetch workers when failed fetches have
  waited out their backoff, so retries run on time.
- ``clock`` every few seconds: records this process's newest clock skew against Bunjang's ``Date``
  header (measured by the client on every answer) in ``bunsync.clock_readings``, for ``bunsync status``.

Jobs never overlap themselves (``max_instances=1``, ``coalesce``); a job that fails is logged and runs
again at its next tick; it never stops the process.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from app import fetcher, reconciler
from app.bunjang.client import BunjangClient
from app.fetcher import Fetcher
from app.ops import metrics
from app.privacy import erasure
from app.settings import Settings
from app.store import db, sqlfiles

log = structlog.get_logger(__name__)

FETCH_RETRY_TICK_S = 5.0
PII_RETENTION_INTERVAL_S = 24 * 3600
#: The first retention pass waits this long after start, so a restart loop does not run it each time
#: and start-up is not slowed by it.
PII_RETENTION_FIRST_DELAY_S = 60
CLOCK_TICK_S = 10.0
_CLOCK_Q = sqlfiles.queries("clock")


class Jobs:
    """The scheduled jobs of one process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        client: BunjangClient,
        settings: Settings,
        fetch_workers: Fetcher | None,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._client = client
        self._settings = settings
        self._fetch_workers = fetch_workers
        self._clock_recorded_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule the jobs and run them until ``stop`` is set."""
        scheduler = AsyncIOScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        scheduler.add_job(
            self.reconcile,
            IntervalTrigger(seconds=self._settings.reconcile_interval_s),
            id="reconcile",
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self.pii_retention,
            IntervalTrigger(seconds=PII_RETENTION_INTERVAL_S),
            id="pii_retention",
            next_run_time=datetime.now(UTC) + timedelta(seconds=PII_RETENTION_FIRST_DELAY_S),
        )
        if self._fetch_workers is not None:
            scheduler.add_job(
                self.fetch_retries, IntervalTrigger(seconds=FETCH_RETRY_TICK_S), id="fetch_retries"
            )
        scheduler.add_job(self.record_clock, IntervalTrigger(seconds=CLOCK_TICK_S), id="clock")
        scheduler.start()
        try:
            await stop.wait()
        finally:
            # Running jobs are cancelled with the event loop's tasks; a cut reconcile pass is recorded as
            # failed and leaves the watermark where it was.
            scheduler.shutdown(wait=False)

    async def reconcile(self) -> bool:
        """One reconcile tick; returns whether this process ran the pass."""
        s = self._settings
        try:
            async with reconciler.exclusive(self._dsn) as held:
                if not held:
                    log.info("reconcile_skipped", reason="another replica is reconciling")
                    return False
                await reconciler.run_pass(
                    self._pool,
                    self._client,
                    now=datetime.now(UTC),
                    overlap=timedelta(seconds=s.reconcile_overlap_s),
                    lookback=timedelta(seconds=s.reconcile_lookback_s),
                    deadline_s=s.reconcile_pass_deadline_s,
                )
        except asyncio.CancelledError:
            # Shutdown cut the pass short: it is recorded as failed and the watermark did not move.
            log.info("reconcile_cancelled")
            raise
        except Exception as exc:  # a job boundary: log, and the next tick tries again
            # WARNING, not ERROR: the next tick retries; a pass that keeps failing shows in
            # `bunsync status` and bunsync_reconcile_passes_total{result="failed"}.
            log.warning(
                "reconcile_job_failed",
                error=f"{type(exc).__name__}: {exc}"[:500],
                note="retried at the next tick",
            )
            return False
        return True

    async def pii_retention(self) -> bool:
        """One retention tick; returns whether this process ran the pass."""
        try:
            async with erasure.exclusive(self._dsn) as held:
                if not held:
                    log.info("pii_retention_skipped", reason="another replica is running it")
                    return False
                await erasure.forget_expired(self._pool, self._settings.pii_retention_days)
        except asyncio.CancelledError:
            log.info("pii_retention_cancelled")
            raise
        except Exception as exc:  # a job boundary: log, and the next tick tries again
            metrics.PII_RETENTION_PASSES.labels(result="failed").inc()
            log.error(
                "pii_retention_failed",
                error=f"{type(exc).__name__}: {exc}"[:500],
                action="personal data past retention is not being erased: fix the cause, or run "
                "bunsync forget --expired",
            )
            return False
        metrics.PII_RETENTION_PASSES.labels(result="ok").inc()
        return True

    async def fetch_retries(self) -> None:
        """Wake the fetch workers when failed fetches are due again."""
        try:
            due = await fetcher.due_retries(self._pool)
        except Exception as exc:  # a job boundary: log, and the next tick tries again
            log.warning("fetch_retries_job_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return
        if due and self._fetch_workers is not None:
            log.info("fetch_retries_due", count=due)
            self._fetch_workers.wake()

    async def record_clock(self) -> None:
        """Record the client's newest clock reading, if it is new (``bunsync status`` shows it)."""
        reading = self._client.clock
        if reading is None or reading.at <= self._clock_recorded_at:
            return
        reporter = f"{socket.gethostname()}:{os.getpid()}"
        measured_at = datetime.fromtimestamp(reading.at, UTC)
        try:
            await db.guard(
                self._pool.execute(_CLOCK_Q["record_reading"], reporter, reading.skew_s, measured_at)
            )
        except Exception as exc:  # a job boundary: log, and the next tick tries again
            log.warning("clock_job_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return
        self._clock_recorded_at = reading.at
