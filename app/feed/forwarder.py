"""The forwarder: pushes each change of the feed, in feed order, to ``BUNSYNC_FORWARD_URL`` as a
Standard Webhooks request, at least once and never skipping one.

- One forwarder across replicas: a session-level advisory lock on a dedicated connection; standbys
  poll for it, and take over when the holder's connection dies (PostgreSQL releases the lock).
- Its cursor (``feed_forwarder.delivered_through``) is in the database and moves only after a 2xx.
  After a crash the next holder re-sends at most the change that was in flight, with the same
  ``webhook-id`` (``bunsync-change-<feed_position>``), so the consumer can drop the repeat.
- A failure (connection error, timeout, 3xx (redirects are not followed), 4xx, 5xx) is retried with
  growing delays capped at ``max_delay_s``, for as long as it takes: the feed waits, a change is never
  dropped to make progress. 410 Gone pauses forwarding to that URL (state ``paused``) until the URL
  is changed; every state, the attempts and the last error are in ``feed_forwarder`` for ``/status``.
- Answers are not read (only their status), and every attempt is bounded by ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
import structlog

from app.aio import wait_any
from app.feed import signing
from app.feed.reader import CHANNEL, FeedRow, read_after
from app.store import db
from app.store.db import StorageUnavailable
from app.store.sqlfiles import queries

log = structlog.get_logger(__name__)
_Q = queries("feed")
_PING = queries("projections")["ping"]
EVENT_TYPE = "order_item.status_changed"
BATCH = 200
_MAX_DB_BACKOFF_S = 30.0

DELIVERED, RETRY, GONE = "delivered", "retry", "gone"


class _Payload(msgspec.Struct, frozen=True):
    type: str
    timestamp: str
    data: dict[str, object]


_encoder = msgspec.json.Encoder()


def webhook_id(row: FeedRow) -> str:
    """The change's ``webhook-id``: stable across attempts, restarts and replicas."""
    return f"bunsync-change-{row.feed_position}"


def body(row: FeedRow) -> bytes:
    """The JSON body: ``{"type", "timestamp", "data": {...the row...}}`` (the same on every attempt)."""
    data = msgspec.to_builtins(row)
    del data["emitted_at"]
    return _encoder.encode(_Payload(type=EVENT_TYPE, timestamp=row.emitted_at.isoformat(), data=data))


def outcome(status_code: int) -> str:
    """What an answer's status means: 2xx delivered, 410 gone (pause), anything else retry."""
    if 200 <= status_code < 300:
        return DELIVERED
    if status_code == 410:
        return GONE
    return RETRY


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """The wait before attempt ``attempt + 1`` after ``attempt`` failures: doubling, capped."""
    return float(min(max_s, base_s * 2 ** min(max(attempt - 1, 0), 32)))


def describe(url: str) -> str:
    """The endpoint as logs may show it: scheme, host and path (never a query string or user info)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """Where and how to forward."""

    url: str
    key: bytes
    holder: str
    timeout_s: float = 10.0
    base_delay_s: float = 0.5
    max_delay_s: float = 60.0
    poll_s: float = 1.0


class Forwarder:
    """The forwarding loop of one process (active, or standby while another holds the lock)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, config: ForwardConfig) -> None:
        self.pool = pool
        self.dsn = dsn
        self.config = config

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: hold the lock and forward; ride out the database going away."""
        backoff = self.config.poll_s
        while not stop.is_set():
            try:
                await self._hold_and_forward(stop)
                backoff = self.config.poll_s
            except Exception as exc:
                if not (isinstance(exc, StorageUnavailable) or db.is_unavailable(exc)):
                    raise
                log.warning("forwarder_db_unavailable", error=str(exc), retry_in_s=backoff)
                await wait_any([stop], backoff)
                backoff = min(backoff * 2, _MAX_DB_BACKOFF_S)

    async def _hold_and_forward(self, stop: asyncio.Event) -> None:
        async with db.service_connection(self.dsn) as lock_conn:
            logged = False
            while not await db.guard(lock_conn.fetchval(_Q["try_forwarder_lock"])):
                if not logged:
                    log.info("forwarder_standby")
                    logged = True
                await wait_any([stop], self.config.poll_s)
                if stop.is_set():
                    return
            wake, lost = asyncio.Event(), asyncio.Event()
            await db.guard(lock_conn.add_listener(CHANNEL, lambda *_: wake.set()))
            lock_conn.add_termination_listener(lambda *_: lost.set())
            async with self.pool.acquire() as conn:
                row = await db.guard(conn.fetchrow(_Q["claim"], self.config.holder, self.config.url))
            if row is None:
                raise RuntimeError("bunsync.feed_forwarder has no row: run bunsync migrate")
            cursor, state = int(row["delivered_through"]), str(row["state"])
            log.info(
                "forwarder_active", endpoint=describe(self.config.url), delivered_through=cursor, state=state
            )
            if state == "paused":
                log.error(
                    "forwarder_paused",
                    endpoint=describe(self.config.url),
                    action="the endpoint answered 410 Gone; set BUNSYNC_FORWARD_URL to the new endpoint "
                    "and restart: forwarding resumes after the last change delivered",
                )
                await wait_any([stop, lost], 3600.0)
                return
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(follow_redirects=False, limits=limits, trust_env=False) as client:
                session = _Session(self, client, lock_conn, stop, lost, wake)
                await session.forward_from(cursor)


class _Session:
    """One holding of the forwarder lock: deliver changes after the cursor until stopped or lost."""

    def __init__(
        self,
        owner: Forwarder,
        client: httpx.AsyncClient,
        lock_conn: asyncpg.Connection,
        stop: asyncio.Event,
        lost: asyncio.Event,
        wake: asyncio.Event,
    ) -> None:
        self.pool, self.config = owner.pool, owner.config
        self.client, self.lock_conn = client, lock_conn
        self.stop, self.lost, self.wake = stop, lost, wake
        self.idle = False  # whether the row already says idle (saves a write per empty poll)

    def _check_lock(self) -> None:
        if self.lost.is_set() or self.lock_conn.is_closed():
            raise StorageUnavailable("the forwarder lost its lock connection")

    async def forward_from(self, cursor: int) -> None:
        while not self.stop.is_set():
            self._check_lock()
            self.wake.clear()
            rows = await read_after(self.lock_conn, cursor, BATCH)
            for row in rows:
                if not await self._deliver(row):
                    return  # stopping, or paused
                cursor = row.feed_position
            if rows:
                continue
            if not self.idle:
                async with self.pool.acquire() as conn, conn.transaction():
                    await db.guard(conn.execute(_Q["relaxed_commit"]))
                    await db.guard(conn.execute(_Q["idle"]))
                self.idle = True
            await wait_any([self.stop, self.wake, self.lost], self.config.poll_s)
            await db.guard(self.lock_conn.fetchval(_PING))

    async def _deliver(self, row: FeedRow) -> bool:
        """Send ``row`` until a 2xx (True); False when stopping or the endpoint is gone (paused)."""
        attempt = 0
        payload = body(row)
        while not self.stop.is_set():
            self._check_lock()
            result, error = await self._attempt(row, payload)
            if result == DELIVERED:
                # On the forwarder's own connection: no pool round trips on the hot path.
                await db.guard(self.lock_conn.execute(_Q["delivered"], row.feed_position))
                self.idle = False
                return True
            async with self.pool.acquire() as conn:
                if result == GONE:
                    await db.guard(conn.execute(_Q["paused"], self.config.url, error))
                    log.error(
                        "forwarder_paused",
                        endpoint=describe(self.config.url),
                        feed_position=row.feed_position,
                        action="the endpoint answered 410 Gone; set BUNSYNC_FORWARD_URL to the new "
                        "endpoint and restart: forwarding resumes with this change",
                    )
                    await wait_any([self.stop, self.lost], 3600.0)
                    return False
                await db.guard(conn.execute(_Q["failed"], error))
            attempt += 1
            delay = retry_delay(attempt, self.config.base_delay_s, self.config.max_delay_s)
            log.warning(
                "forward_failed",
                endpoint=describe(self.config.url),
                feed_position=row.feed_position,
                attempt=attempt,
                error=error,
                retry_in_s=delay,
            )
            await wait_any([self.stop, self.lost], delay)
        return False

    async def _attempt(self, row: FeedRow, payload: bytes) -> tuple[str, str]:
        """One POST; returns (outcome, error text for the operator)."""
        headers = signing.headers(self.config.key, webhook_id(row), int(time.time()), payload)
        headers["content-type"] = "application/json"
        try:
            async with asyncio.timeout(self.config.timeout_s):
                async with self.client.stream(
                    "POST", self.config.url, content=payload, headers=headers, timeout=self.config.timeout_s
                ) as response:
                    code = response.status_code  # the body is never read: only the status counts
        except TimeoutError:
            return RETRY, f"no answer within {self.config.timeout_s:g} s"
        except httpx.HTTPError as exc:
            return RETRY, f"{type(exc).__name__}: {str(exc)[:200]}"
        result = outcome(code)
        if result == RETRY and 300 <= code < 400:
            return RETRY, f"HTTP {code}: redirects are not followed; point BUNSYNC_FORWARD_URL at the target"
        return result, f"HTTP {code}"
