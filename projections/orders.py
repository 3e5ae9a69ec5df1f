"""Projection ``orders``: order-level facts from Get Order (table ``orders``), and whether the buyer's
personal data was erased.

The newest observation of an order (by log position) wins; a batch keeps only its newest one per
order, and the upsert refuses to replace a row with an older observation. The log holds no personal
data (:mod:`app.personal_data`); an ``order.personal_data_erased`` event marks the order's row as
erased (when, why), and no later observation clears the mark, so the view shows "erased", not an
error or a blank, and a rebuild reproduces it.
"""

from __future__ import annotations

from app.db import Connection
from app.event_log import RecordedEvent
from app.sqlfiles import queries
from projections import events
from projections.base import Projection
from projections.events import OrderObserved, PersonalDataErased, utc

_Q = queries("orders")

Decoded = OrderObserved | PersonalDataErased


class Orders(Projection[Decoded]):
    """Prices, times, seller and invoice per order, and the erasure of its buyer's personal data."""

    name = "orders"
    handles = frozenset({events.ORDER_OBSERVED, events.PERSONAL_DATA_ERASED})
    tables = ("orders",)

    def decode(self, event: RecordedEvent) -> Decoded:
        if event.type == events.PERSONAL_DATA_ERASED:
            return events.decode_personal_data_erased(event)
        return events.decode_order_observed(event)

    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, Decoded]]) -> None:
        observed = [(e, d) for e, d in batch if isinstance(d, OrderObserved)]
        erased = [(e, d) for e, d in batch if isinstance(d, PersonalDataErased)]
        await self._write_observed(conn, observed)
        if erased:
            await conn.execute(
                _Q["mark_erased"],
                [d.order_id for _, d in erased],
                [e.recorded_at for e, _ in erased],
                [d.reason for _, d in erased],
            )

    async def _write_observed(
        self, conn: Connection, batch: list[tuple[RecordedEvent, OrderObserved]]
    ) -> None:
        newest: dict[int, tuple[RecordedEvent, OrderObserved]] = {}
        for event, observed in batch:
            seen = newest.get(observed.data.order.id)
            if seen is None or event.position > seen[0].position:
                newest[observed.data.order.id] = (event, observed)
        if not newest:
            return
        rows = list(newest.values())
        orders = [o.data.order for _, o in rows]
        sellers = [o.data.seller for _, o in rows]
        deliveries = [o.data.delivery for _, o in rows]
        invoices = [d.invoice if d else None for d in deliveries]
        positions = [e.position for e, _ in rows]
        await conn.execute(
            _Q["upsert_orders"],
            [o.id for o in orders],
            [o.total_price for o in orders],
            [o.total_product_price for o in orders],
            [o.delivery_price for o in orders],
            [utc(o.order_done_at) for o in orders],
            [utc(o.approved_at) for o in orders],
            [s.id if s else None for s in sellers],
            [s.shop_name if s else None for s in sellers],
            [i.no if i else None for i in invoices],
            [i.company_code if i else None for i in invoices],
            [i.company_name if i else None for i in invoices],
            [utc(d.ship_done_at) if d else None for d in deliveries],
            positions,
            [e.recorded_at for e, _ in rows],
        )
