"""Projection ``orders``: order-level facts from Get Order (table ``orders``), the fields it could
not use (table ``order_anomalies``), and whether the buyer's personal data was erased.

The newest observation of an order (by log position) wins; a batch keeps only its newest one per
order, and the upsert refuses to replace a row with an older observation. Each field is read on its
own (:mod:`projections.order_facts`): an unreadable or implausible value is NULL in ``orders`` and a
row of ``order_anomalies`` (every observation's, not only the newest's), so one bad field never
hides the others; only an unusable order id parks the event. The log holds no personal data
(:mod:`app.privacy.personal_data`); an ``order.personal_data_erased`` event marks the order's row as erased
(when, why), and no later observation clears the mark, so the view shows "erased", not an error or a
blank, and a rebuild reproduces it.
"""

from __future__ import annotations

from app import events as catalogue
from app.store.db import Connection
from app.store.event_log import RecordedEvent
from app.store.sqlfiles import queries
from projections import events, order_facts
from projections.base import Projection
from projections.events import PersonalDataErased
from projections.order_facts import OrderFacts

_Q = queries("orders")

Decoded = OrderFacts | PersonalDataErased
#: The fact columns of upsert_orders ($1 to $12), in its order: attributes of OrderFacts (also the
#: first columns of the bulk phase's rows, projections/bulk.py).
FACT_COLUMNS = (
    "order_id",
    "total_price",
    "total_product_price",
    "delivery_price",
    "order_done_at",
    "approved_at",
    "seller_id",
    "seller_shop_name",
    "invoice_no",
    "invoice_company_code",
    "invoice_company_name",
    "ship_done_at",
)


class Orders(Projection[Decoded]):
    """Prices, times, seller and invoice per order, and the erasure of its buyer's personal data."""

    name = "orders"
    handles = frozenset({catalogue.ORDER_OBSERVED, catalogue.PERSONAL_DATA_ERASED})
    #: order_anomalies: the fields read as absent, kept with the projection so that a rebuild
    #: reproduces them.
    tables = ("orders", "order_anomalies")

    def decode(self, event: RecordedEvent) -> Decoded:
        if event.type == catalogue.PERSONAL_DATA_ERASED:
            return events.decode_personal_data_erased(event)
        return order_facts.decode(event)

    async def write(self, conn: Connection, batch: list[tuple[RecordedEvent, Decoded]]) -> None:
        observed = [(e, d) for e, d in batch if isinstance(d, OrderFacts)]
        erased = [(e, d) for e, d in batch if isinstance(d, PersonalDataErased)]
        await self._write_observed(conn, observed)
        if erased:
            await conn.execute(
                _Q["mark_erased"],
                [d.order_id for _, d in erased],
                [e.recorded_at for e, _ in erased],
                [d.reason for _, d in erased],
            )

    async def _write_observed(self, conn: Connection, batch: list[tuple[RecordedEvent, OrderFacts]]) -> None:
        newest: dict[int, tuple[RecordedEvent, OrderFacts]] = {}
        for event, facts in batch:
            seen = newest.get(facts.order_id)
            if seen is None or event.position > seen[0].position:
                newest[facts.order_id] = (event, facts)
        if newest:
            rows = list(newest.values())
            await conn.execute(
                _Q["upsert_orders"],
                *([getattr(f, column) for _, f in rows] for column in FACT_COLUMNS),
                [e.position for e, _ in rows],
                [e.recorded_at for e, _ in rows],
            )
        flagged = [(e, f, field, problem) for e, f in batch for field, problem in f.anomalies]
        if flagged:
            await conn.execute(
                _Q["record_anomalies"],
                [e.position for e, _, _, _ in flagged],
                [f.order_id for _, f, _, _ in flagged],
                [field for _, _, field, _ in flagged],
                [problem for _, _, _, problem in flagged],
                [e.recorded_at for e, _, _, _ in flagged],
            )
