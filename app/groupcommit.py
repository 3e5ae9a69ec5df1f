"""Group commit without a timer, for work that costs a round trip per call whatever its size.

Callers :meth:`Batcher.submit` one item each; the first caller starts a writer at once, and items that
arrive while the writer's call runs wait and go together in its next call. A lone caller therefore
waits for nothing (no timer, no added latency), and under load one call serves everyone who queued
meanwhile. Each caller gets its own item's result, or the exception of the call that carried it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    item: T
    done: asyncio.Future[R]


class Batcher(Generic[T, R]):
    """Runs ``write`` over the items submitted while its previous call ran, at most ``max_batch`` per call.

    ``write`` returns one result per item, in order; if it raises, every item of that call gets the
    exception (a caller that wants per-item isolation handles it inside ``write``).
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]], *, max_batch: int, name: str) -> None:
        self._write = write
        self._max_batch = max_batch
        self._name = name
        self._queue: list[_Pending[T, R]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s result, once the call that carries it has returned."""
        pending: _Pending[T, R] = _Pending(item, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._writer is None:
            # A fresh context: the writer serves many callers, so it must not log as the first one.
            self._writer = asyncio.create_task(self._drain(), name=self._name, context=contextvars.Context())
        # Shielded: a caller that is cancelled must not cancel a call other callers share.
        return await asyncio.shield(pending.done)

    async def _drain(self) -> None:
        batch: list[_Pending[T, R]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                try:
                    results = await self._write([p.item for p in batch])
                except Exception as exc:
                    _settle(batch, exc)
                else:
                    for p, result in zip(batch, results, strict=True):
                        if not p.done.done():
                            p.done.set_result(result)
                batch = []
        except BaseException:  # cancelled (the loop is closing): nobody may wait forever
            for p in [*batch, *self._queue]:
                p.done.cancel()
            self._queue = []
            raise
        finally:
            self._writer = None


def _settle(batch: list[_Pending[T, R]], exc: Exception) -> None:
    for p in batch:
        if not p.done.done():
            p.done.set_exception(exc)
            # Retrieved here too, so a caller that went away leaves no "never retrieved" warning.
            p.done.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
