"""Projection ``order_item_status``: the current status of every order item (table
``order_item_status``, read through ``reporting.order_item_status``).

Each batch loads the rows of the items it touches, folds its observations through
:func:`projections.rules.apply_status`, and writes the changed rows back in one statement, so the
cost is two round trips per batch, whatever its size.
"""

from __future__ import annotations

from app.db import Connection
from app.event_log import RecordedEvent
from app.sqlfiles import queries
from projections import events
from projections.base import Projection
from projections.rules import ItemState, Observation, apply_status

_Q = queries("order_item_status")


class OrderItemStatus(Projection[list[Observation]]):
    """Current status per item, by the rule in :mod:`projections.rules`."""

    name = "order_item_status"
    handles = frozenset({events.WEBHOOK_STATUS_CHANGED, events.ORDER_OBSERVED, events.ORDER_LISTED})
    tables = ("order_item_status",)

    def decode(self, event: RecordedEvent) -> list[Observation]:
        return events.observations(event)

    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, list[Observation]]]) -> None:
        observed = [o for _, obs in batch for o in obs]
        if not observed:
            return
        ids = sorted({o.order_item_id for o in observed})
        states: dict[int, ItemState | None] = {
            r["order_item_id"]: ItemState(**dict(r)) for r in await conn.fetch(_Q["load"], ids)
        }
        changed: dict[int, ItemState] = {}
        for o in observed:
            new = apply_status(states.get(o.order_item_id), o)
            if new is not None:
                states[o.order_item_id] = changed[o.order_item_id] = new
        if changed:
            await conn.execute(_Q["upsert"], *_columns(list(changed.values())))


def _columns(rows: list[ItemState]) -> list[list[object]]:
    """The rows as one array per column, in the order of the ``upsert`` statement."""
    return [
        [r.order_item_id for r in rows],
        [r.order_id for r in rows],
        [r.pid for r in rows],
        [r.product_name for r in rows],
        [r.price for r in rows],
        [r.status for r in rows],
        [r.status_updated_at for r in rows],
        [r.source for r in rows],
        [r.last_position for r in rows],
        [r.synced_at for r in rows],
        [r.api_status for r in rows],
        [r.api_source for r in rows],
        [r.api_updated_at for r in rows],
        [r.api_position for r in rows],
        [r.webhook_status for r in rows],
        [r.webhook_signed_at for r in rows],
        [r.webhook_position for r in rows],
    ]
