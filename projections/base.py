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
