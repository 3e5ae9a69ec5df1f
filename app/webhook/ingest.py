"""Durable webhook ingest: append verified deliveries to the log (and enqueue their fetches).

Requests are group-committed without a timer: the first waiting request starts a flush at once;
requests that arrive while a flush runs wait and go together in the next one. Each caller is answered
only after the transaction holding its own event has committed. If a batch fails for a reason other
than the database being away, its events are retried one by one, so one bad event cannot fail
innocent requests.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg
import structlog

from app import events
from app.store import db, event_log
from app.store.db import StorageUnavailable
from app.store.event_log import NewEvent
from app.webhook import payloads

log = structlog.get_logger(__name__)

_REFUSED_ACTION = "the delivery was answered 500 and Bunjang will retry it; report this bug with this line"


def _describe(exc: BaseException) -> str:
    """An error for the log without the data it may quote: asyncpg puts the start of a value it cannot
    encode in its message, and PostgreSQL the offending values in its DETAIL (a webhook body's)."""
    if isinstance(exc, asyncpg.exceptions.DataError):
        return f"{type(exc).__name__}: a value cannot be encoded (not logged)"
    first_line = str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {first_line[:300]}"


class Outcome(StrEnum):
    """What happened to one delivery; the value is stable (logs, metrics)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    UNRECOGNIZED = "unrecognized"


@dataclass(slots=True)
class _Pending:
    event: NewEvent
    done: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Ingestor:
    """Group-commits deliveries into the event log; one per process, shared by all requests."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 512,
        max_writers: int = 2,
        on_fetch_enqueued: Callable[[], None] | None = None,
    ) -> None:
        """``pool``: connections for the writers (a small pool of its own is best: see ``db.create_pool``'s
        ``keep_session``); ``max_writers``: batches in flight at once; ``on_fetch_enqueued``: called
        after a write that enqueued a Get Order fetch (this process's fetch workers' wake-up, so they
        claim it now rather than at their next poll)."""
        self._on_fetch_enqueued = on_fetch_enqueued
        self._pool = pool
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._queue: list[_Pending] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, event: NewEvent) -> Outcome:
        """Store ``event`` durably (or find it already stored) and say what happened.

        Raises :class:`StorageUnavailable` when the database cannot be reached.
        """
        pending = _Pending(event)
        self._queue.append(pending)
        if len(self._writers) < self._max_writers:
            # A fresh context: the writer serves many requests, so it must not log as this one
            # (its request_id, bound by the webhook endpoint, would otherwise be copied in).
            task = asyncio.create_task(
                self._write_while_pending(), name="ingest-writer", context=contextvars.Context()
            )
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        # Shielded: a client that hangs up must not cancel a write other requests share.
        return await asyncio.shield(pending.done)

    async def drain(self) -> None:
        """Wait until every submitted event is settled (for shutdown)."""
        while self._writers:
            await asyncio.gather(*list(self._writers), return_exceptions=True)

    async def _write_while_pending(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                outcomes: list[Outcome | BaseException] = list(await self._write(batch))
            except StorageUnavailable as exc:
                outcomes = [exc] * len(batch)
            except Exception as exc:  # a bad event or a bug: retry alone so the others still succeed
                if len(batch) == 1:
                    outcomes = [await self._write_raw_instead(batch[0], exc)]
                else:
                    log.warning(
                        "ingest_batch_failed_retrying_one_by_one", size=len(batch), error=_describe(exc)
                    )
                    outcomes = [await self._write_alone(p) for p in batch]
            for p, outcome in zip(batch, outcomes, strict=True):
                if p.done.done():
                    continue
                if isinstance(outcome, BaseException):
                    p.done.set_exception(outcome)
                else:
                    p.done.set_result(outcome)

    async def _write_alone(self, pending: _Pending) -> Outcome | BaseException:
        try:
            return (await self._write([pending]))[0]
        except StorageUnavailable as exc:
            return exc
        except Exception as exc:
            return await self._write_raw_instead(pending, exc)

    async def _write_raw_instead(self, pending: _Pending, error: Exception) -> Outcome | BaseException:
        """Last resort for one event PostgreSQL refused: keep its raw bytes as an unrecognised event."""
        key = pending.event.idempotency_key
        if pending.event.source != events.SOURCE_WEBHOOK or pending.event.payload_json is None:
            log.error("ingest_event_refused", key=key, error=_describe(error), action=_REFUSED_ACTION)
            return error
        log.warning("ingest_payload_refused_keeping_raw", key=key, error=_describe(error))
        pending.event = payloads.without_payload(pending.event)
        try:
            return (await self._write([pending]))[0]
        except StorageUnavailable as exc:
            return exc
        except Exception as exc:
            log.error("ingest_event_refused", key=key, error=_describe(exc), action=_REFUSED_ACTION)
            return exc

    @db.operation
    async def _write(self, batch: list[_Pending]) -> list[Outcome]:
        """Store the batch; returns each pending's outcome, in batch order.

        The append (events and their fetches) is ONE statement, hence atomic and durable on its own at
        commit, so the common case costs one round trip and no BEGIN/COMMIT. Only deliveries whose key
        was already logged (perhaps by this very batch) need a second step: compare their content with
        what is stored and keep the different ones as conflicts.
        """
        first: dict[str, NewEvent] = {}
        for p in batch:
            first.setdefault(p.event.idempotency_key, p.event)
        async with self._pool.acquire() as conn:
            inserted = (await event_log.append(conn, list(first.values()))).inserted
            if self._on_fetch_enqueued and any(first[k].fetch_order_id is not None for k in inserted):
                self._on_fetch_enqueued()
            others = [
                i
                for i, p in enumerate(batch)
                if first[p.event.idempotency_key] is not p.event or p.event.idempotency_key not in inserted
            ]
            same: dict[int, bool] = {}
            if others:
                async with conn.transaction():
                    verdicts = await event_log.same_content(conn, [batch[i].event for i in others])
                    same = dict(zip(others, verdicts, strict=True))
                    await event_log.record_conflicts(conn, [batch[i].event for i in others if not same[i]])
        outcomes: list[Outcome] = []
        for i, p in enumerate(batch):
            if i not in same:
                unknown = p.event.type == events.WEBHOOK_UNRECOGNIZED
                outcomes.append(Outcome.UNRECOGNIZED if unknown else Outcome.ACCEPTED)
            else:
                outcomes.append(Outcome.DUPLICATE if same[i] else Outcome.CONFLICT)
        return outcomes
