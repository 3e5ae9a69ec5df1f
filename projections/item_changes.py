"""Projection ``item_changes``: the change feed, one row each time an item's confirmed status moves
forward (table ``item_changes``, read through ``reporting.item_changes``, ``GET /feed`` and forwarding).

The rule (:func:`advance`, pure): only API observations (Get Order, List Orders: the authority in
:mod:`projections.rules`) with a ``statusUpdatedAt`` count. Per item the feed keeps a *head*: the
newest ``statusUpdatedAt`` taken into account and the last status emitted. An observation moves the
item forward when its time is strictly later than the head's; it is emitted when its status also
differs from the last one emitted (a later time with the same status only moves the head, so that a
late, older observation of another status is not emitted after it). Webhooks (provisional), API
observations without a usable time, duplicates and late observations at or before the head emit
nothing. Per item the feed is thus strictly increasing in ``statusUpdatedAt``, never repeats a change,
and its last row is the status :func:`projections.rules.apply_status` shows as the item's API state
(whenever that state has a time).

Why ``bunsync rebuild`` neither renumbers nor re-emits: the feed (``item_changes``) and the heads
(``item_change_heads``) are not among this projection's rebuilt ``tables`` (there are none), and are
always written by qualified name, whatever ``search_path`` the engine set. A rebuild replays the log
from its start through the same rule against the live heads. An event the live projector already
applied moved its item's head to at least its own time (the head only grows), so replaying it emits
nothing; the rows already in the feed keep their positions (the table is append-only). An event the
live projector has not reached yet is applied by whichever of the two gets to it first: both read the
log in the same commit-safe order, every write holds the feed writer lock (``lock_feed``) and reads
the heads after taking it, so the second one finds the head already moved and emits nothing. So each
change is emitted exactly once, and the swap (which moves only the checkpoint) loses none.

A feed that is entirely fresh (checkpoint at the start, no row, no head, no parked event) while the
log is far ahead is filled set-based by its projector (:mod:`projections.feed_fill`): the same rule in
its set form, the same rows in the same order; a feed with anything in it goes by batches.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.events import ORDER_LISTED, ORDER_OBSERVED
from app.store.db import Connection
from app.store.event_log import RecordedEvent
from app.store.sqlfiles import queries
from projections import events
from projections.base import ItemProjection
from projections.rules import Observation

_Q = queries("item_changes")


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """What the feed has taken into account for one item."""

    status_updated_at: datetime
    emitted_status: str


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the feed, before its position is assigned."""

    order_id: int
    order_item_id: int
    status: str
    previous_status: str | None
    status_updated_at: datetime
    source: str
    position: int
    recorded_at: datetime


def advance(head: Head | None, obs: Observation) -> tuple[Head | None, Change | None]:
    """The item's head after ``obs`` (``None``: unchanged) and the change it emits (``None``: none)."""
    t = obs.status_updated_at
    if not obs.is_api or t is None:
        return None, None  # provisional (webhook), or no time to order it by
    if head is not None and t <= head.status_updated_at:
        return None, None  # a duplicate, or a late observation older than what was taken into account
    if head is not None and obs.status == head.emitted_status:
        return Head(status_updated_at=t, emitted_status=head.emitted_status), None
    change = Change(
        order_id=obs.order_id,
        order_item_id=obs.order_item_id,
        status=obs.status,
        previous_status=head.emitted_status if head else None,
        status_updated_at=t,
        source=obs.source,
        position=obs.position,
        recorded_at=obs.recorded_at,
    )
    return Head(status_updated_at=t, emitted_status=obs.status), change


def fold(heads: dict[int, Head], observed: list[Observation]) -> tuple[dict[int, Head], list[Change]]:
    """Fold ``observed`` (in log order) into ``heads``; return the heads moved and the changes, in order."""
    moved: dict[int, Head] = {}
    changes: list[Change] = []
    for o in observed:
        new, change = advance(heads.get(o.order_item_id), o)
        if new is not None:
            heads[o.order_item_id] = moved[o.order_item_id] = new
        if change is not None:
            changes.append(change)
    return moved, changes


class ItemChanges(ItemProjection):
    """The change feed, appended by the rule above; never rebuilt (see the module docstring)."""

    name = "item_changes"
    handles = frozenset({ORDER_OBSERVED, ORDER_LISTED})
    #: None: the feed and its heads are kept, not rebuilt, so a rebuild cannot renumber or re-emit.
    tables = ()

    def decode(self, event: RecordedEvent) -> list[Observation]:
        return [o for o in events.observations(event) if o.status_updated_at is not None]

    async def write_items(self, conn: Connection, observed: list[Observation], ids: list[int]) -> None:
        await conn.execute(_Q["lock_feed"])
        heads = {
            r["order_item_id"]: Head(
                status_updated_at=r["status_updated_at"], emitted_status=r["emitted_status"]
            )
            for r in await conn.fetch(_Q["load_heads"], ids)
        }
        moved, changes = fold(heads, observed)
        if moved:
            await conn.execute(
                _Q["save_heads"],
                list(moved),
                [h.status_updated_at for h in moved.values()],
                [h.emitted_status for h in moved.values()],
            )
        if changes:
            await conn.execute(
                _Q["append"],
                [c.order_id for c in changes],
                [c.order_item_id for c in changes],
                [c.status for c in changes],
                [c.previous_status for c in changes],
                [c.status_updated_at for c in changes],
                [c.source for c in changes],
                [c.position for c in changes],
                [c.recorded_at for c in changes],
            )
