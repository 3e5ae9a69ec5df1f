"""What a projection is, to the engine: a name, the event types it handles, its tables, and two steps.

``decode`` is pure (an event in, the projection's view of it out) and may raise for an event it
cannot read: the engine parks that event. ``write`` applies a batch of decoded events inside the
engine's transaction. A projection finds its tables by unqualified name: the engine sets
``search_path`` to the live schema or to the schema a rebuild is filling.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Generic, TypeVar

from app.store.db import Connection
from app.store.event_log import RecordedEvent
from projections import events
from projections.rules import Observation

D = TypeVar("D")


class Projection(abc.ABC, Generic[D]):
    """A read model built from the log."""

    #: Unique name: the checkpoint's key, the advisory lock's key, the rebuild's argument.
    name: ClassVar[str]
    #: Event types it reads; the engine skips (but counts) the others.
    handles: ClassVar[frozenset[str]]
    #: Its tables in schema ``bunsync``: what a rebuild recreates and swaps.
    tables: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def decode(self, event: RecordedEvent) -> D:
        """The projection's reading of ``event`` (pure; raising parks the event)."""

    @abc.abstractmethod
    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, D]]) -> None:
        """Apply ``batch`` (in log order) to the projection's tables, in the caller's transaction."""


class ItemProjection(Projection[list[Observation]]):
    """A projection of the per-item status observations (webhooks, Get Order, List Orders): each event
    is read as its items' observations (:func:`projections.events.observations`), and a batch is
    applied as the observations of the items it touches."""

    handles = events.ITEM_EVENTS

    def decode(self, event: RecordedEvent) -> list[Observation]:
        return events.observations(event)

    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, list[Observation]]]) -> None:
        observed = [o for _, decoded in batch for o in decoded]
        if observed:
            await self.write_items(conn, observed, sorted({o.order_item_id for o in observed}))

    @abc.abstractmethod
    async def write_items(self, conn: Connection, observed: list[Observation], ids: list[int]) -> None:
        """Apply ``observed`` (in log order), which touches the items ``ids`` (sorted), to the tables."""
