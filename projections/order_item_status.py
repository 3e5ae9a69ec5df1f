"""Projection ``order_item_status``: the current status of every order item (table
``order_item_status``, read through ``reporting.order_item_status``).

Each batch loads the rows of the items it touches, folds its observations through
:func:`projections.rules.apply_status`, and writes the changed rows back in one statement, so the
cost is two round trips per batch, whatever its size. Rows travel as one JSON document each way
(msgspec on this side): encoding thousands of rows as per-column arrays cost more than the database.
Fields the decoder judged implausible or unreadable go to ``item_anomalies`` (the status change
itself still counts).
"""

from __future__ import annotations

import msgspec

from app.store.db import Connection
from app.store.sqlfiles import queries
from projections.base import ItemProjection
from projections.rules import ItemState, Observation, apply_status

_Q = queries("order_item_status")
_rows = msgspec.json.Decoder(list[ItemState])
_encoder = msgspec.json.Encoder()


class OrderItemStatus(ItemProjection):
    """Current status per item, by the rule in :mod:`projections.rules`."""

    name = "order_item_status"
    #: item_anomalies: the fields judged implausible or unreadable (see projections/events.py), kept
    #: with the projection so that a rebuild reproduces them.
    tables = ("order_item_status", "item_anomalies")

    async def write_items(self, conn: Connection, observed: list[Observation], ids: list[int]) -> None:
        loaded = _rows.decode(await conn.fetchval(_Q["load"], ids))
        states: dict[int, ItemState | None] = {r.order_item_id: r for r in loaded}
        changed: dict[int, ItemState] = {}
        for o in observed:
            new = apply_status(states.get(o.order_item_id), o)
            if new is not None:
                states[o.order_item_id] = changed[o.order_item_id] = new
        if changed:
            await conn.execute(_Q["upsert"], _encoder.encode(list(changed.values())).decode())
        flagged = [(o, field, problem) for o in observed for field, problem in o.anomalies]
        if flagged:
            await conn.execute(
                _Q["record_anomalies"],
                [o.position for o, _, _ in flagged],
                [o.order_item_id for o, _, _ in flagged],
                [field for _, field, _ in flagged],
                [o.order_id for o, _, _ in flagged],
                [problem for _, _, problem in flagged],
                [o.recorded_at for o, _, _ in flagged],
            )
