"""Projection ``orders``: order-level facts from Get Order (table ``orders``), and the buyer's
delivery address kept apart (table ``order_addresses``, which no reporting view reads).

The newest observation of an order (by log position) wins; a batch keeps only its newest one per
order, and the upsert refuses to replace a row with an older observation.
"""

from __future__ import annotations

from app.db import Connection
from app.event_log import RecordedEvent
from app.sqlfiles import queries
from projections import events
from projections.base import Projection
from projections.events import OrderObserved, utc

_Q = queries("orders")


class Orders(Projection[OrderObserved]):
    """Prices, times, seller and invoice per order; the address in its own table."""

    name = "orders"
    handles = frozenset({events.ORDER_OBSERVED})
    tables = ("orders", "order_addresses")

    def decode(self, event: RecordedEvent) -> OrderObserved:
        return events.decode_order_observed(event)

    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, OrderObserved]]) -> None:
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
        addresses = [d.address if d else None for d in deliveries]
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
        await conn.execute(
            _Q["upsert_addresses"],
            [o.id for o in orders],
            [a.name if a else None for a in addresses],
            [a.phone if a else None for a in addresses],
            [a.address1 if a else None for a in addresses],
            [a.address2 if a else None for a in addresses],
            [a.zip_code if a else None for a in addresses],
            positions,
        )
