"""Projection ``order_item_history``: every status change of every item, once (table
``order_item_history``, read through ``reporting.order_item_history``, which adds ``previous_status``).

Each batch loads the history rows it can change (those of the statuses it observes for each item it
touches: :func:`projections.rules.apply_history` never changes an item's rows of another status),
folds its observations through that rule, and writes the difference (rows removed, rows added).
"""

from __future__ import annotations

from app.store.db import Connection
from app.store.sqlfiles import queries
from projections.base import ItemProjection
from projections.rules import HistoryRow, Observation, apply_history

_Q = queries("order_item_history")


class OrderItemHistory(ItemProjection):
    """One row per observed change of an item's status."""

    name = "order_item_history"
    tables = ("order_item_history",)

    async def write_items(self, conn: Connection, observed: list[Observation], ids: list[int]) -> None:
        pairs = sorted({(o.order_item_id, o.status) for o in observed})
        before: dict[int, list[HistoryRow]] = {i: [] for i in ids}
        for r in await conn.fetch(_Q["load"], [i for i, _ in pairs], [s for _, s in pairs]):
            # By name, not position: two of the columns are timestamps a reordered SELECT would swap
            # silently (and no dict(r) per row: this is the projector's hot path).
            before[r["order_item_id"]].append(
                HistoryRow(
                    order_item_id=r["order_item_id"],
                    order_id=r["order_id"],
                    status=r["status"],
                    status_updated_at=r["status_updated_at"],
                    source=r["source"],
                    signed_at=r["signed_at"],
                    position=r["position"],
                    recorded_at=r["recorded_at"],
                )
            )
        after = dict(before)
        for o in observed:
            after[o.order_item_id] = apply_history(after[o.order_item_id], o)
        removed = [r for i in ids for r in before[i] if r not in after[i]]
        added = [r for i in ids for r in after[i] if r not in before[i]]
        if removed:
            await conn.execute(
                _Q["delete"],
                [r.order_item_id for r in removed],
                [r.status for r in removed],
                [r.status_updated_at for r in removed],
            )
        if added:
            await conn.execute(
                _Q["insert"],
                [r.order_item_id for r in added],
                [r.order_id for r in added],
                [r.status for r in added],
                [r.status_updated_at for r in added],
                [r.source for r in added],
                [r.signed_at for r in added],
                [r.position for r in added],
                [r.recorded_at for r in added],
            )
