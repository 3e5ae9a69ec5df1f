"""Reading an ``order.observed`` event (the Get Order body) into the facts of projection ``orders``.

Only what the row cannot exist without parks the event: ``data`` and ``data.order`` must be objects
and ``data.order.id`` an integer within bigint. Every other field the projection reads (the prices,
``orderDoneAt``, ``approvedAt``, ``seller`` and its ``id``, ``shopName``, ``delivery`` and its
``invoice`` with ``no``, ``companyCode``, ``companyName``, and ``shipDoneAt``) is decoded on its own:
a value that cannot be read (a price out of bigint, a string where an integer is expected, a time
that is not ISO-8601, a seller that is not an object) or a time outside the plausibility window of
:func:`projections.rules.plausible_time` is read as absent (NULL in ``orders``) and reported in
:attr:`OrderFacts.anomalies`, so one bad field never hides the rest of the observation.

Most payloads are well formed, so :func:`decode` first reads them in one typed pass with the same
types and bounds; any value that pass refuses sends the event down the field-by-field path, so the facts
and their anomalies are the same either way (tests/unit/test_order_facts_decode_fast.py).

Anomalies name the field (its path under ``data``) and the kind of problem, never the value. The
delivery's ``address`` (only markers in the log, :mod:`app.privacy.personal_data`) is not even a field of
what is decoded here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

from app.store.event_log import RecordedEvent
from projections.events import BigInt, Text, UndecodableEvent, utc
from projections.rules import EARLIEST_TIME, FUTURE_TOLERANCE, plausible_time

T = TypeVar("T")

_NULL = msgspec.Raw(b"null")
_Fields = dict[str, msgspec.Raw]

NOT_AN_INTEGER = "not an integer within bigint"
NOT_A_TEXT = "not a text of at most 10000 characters"
NOT_A_TIME = "not an ISO-8601 time"
NOT_AN_OBJECT = "not an object"
IMPLAUSIBLE_TIME = (
    f"an implausible time (before {EARLIEST_TIME:%Y-%m-%d} or more than "
    f"{FUTURE_TOLERANCE.total_seconds() / 60:g} min after the observation was recorded): left out"
)


class OrderFacts(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``orders`` as one ``order.observed`` event reports it (absent or unreadable: None)."""

    order_id: int
    total_price: int | None = None
    total_product_price: int | None = None
    delivery_price: int | None = None
    order_done_at: datetime | None = None
    approved_at: datetime | None = None
    seller_id: int | None = None
    seller_shop_name: str | None = None
    invoice_no: str | None = None
    invoice_company_code: str | None = None
    invoice_company_name: str | None = None
    ship_done_at: datetime | None = None
    #: Fields read as absent because unreadable or implausible, as (field, problem).
    anomalies: tuple[tuple[str, str], ...] = ()


class _Delivery(msgspec.Struct, frozen=True, rename="camel"):
    """``data.delivery`` as read here: the two fields the projection reads, still undecoded."""

    invoice: msgspec.Raw = _NULL
    ship_done_at: msgspec.Raw = _NULL


class _Data(msgspec.Struct, frozen=True):
    """``data`` of Get Order: the order's fields, the seller and the delivery, still undecoded."""

    order: _Fields
    seller: msgspec.Raw = _NULL
    delivery: msgspec.Raw = _NULL


class _Observed(msgspec.Struct, frozen=True):
    data: _Data


# --- the fast path: the same fields, typed, in one decoding ---------------------------------------
# Most payloads are well formed: decoded in one pass into these typed structs (the same types and
# bounds as the field-by-field readers below). Any value these refuse (a field of the wrong type, out
# of bounds, not a time, an object that is not one) makes the event go through the field-by-field path
# instead, which reads it as absent and reports the anomaly, or refuses the event, exactly as if the
# fast path did not exist. Only the plausibility of the times is judged after decoding, as there.


class _FastOrder(msgspec.Struct, frozen=True, rename="camel"):
    id: BigInt
    total_price: BigInt | None = None
    total_product_price: BigInt | None = None
    delivery_price: BigInt | None = None
    order_done_at: datetime | None = None
    approved_at: datetime | None = None


class _FastSeller(msgspec.Struct, frozen=True, rename="camel"):
    id: BigInt | None = None
    shop_name: Text | None = None


class _FastInvoice(msgspec.Struct, frozen=True, rename="camel"):
    no: Text | None = None
    company_code: Text | None = None
    company_name: Text | None = None


class _FastDelivery(msgspec.Struct, frozen=True, rename="camel"):
    invoice: _FastInvoice | None = None
    ship_done_at: datetime | None = None


class _FastData(msgspec.Struct, frozen=True):
    order: _FastOrder
    seller: _FastSeller | None = None
    delivery: _FastDelivery | None = None


class _FastObserved(msgspec.Struct, frozen=True):
    data: _FastData


_fast_observed = msgspec.json.Decoder(_FastObserved)
_observed = msgspec.json.Decoder(_Observed)
_order_id = msgspec.json.Decoder(BigInt)
_bigint = msgspec.json.Decoder(BigInt | None)
_text = msgspec.json.Decoder(Text | None)
_time = msgspec.json.Decoder(datetime | None)
_object = msgspec.json.Decoder(_Fields | None)
_delivery = msgspec.json.Decoder(_Delivery | None)


class _Reader:
    """Decodes fields one by one, collecting the anomalies of those it reads as absent."""

    def __init__(self, recorded_at: datetime) -> None:
        self.recorded_at = recorded_at
        self.anomalies: list[tuple[str, str]] = []

    def value(
        self, raw: msgspec.Raw, field: str, decoder: msgspec.json.Decoder[T | None], problem: str
    ) -> T | None:
        try:
            return decoder.decode(raw)
        except msgspec.DecodeError:
            self.anomalies.append((field, problem))
            return None

    def integer(self, fields: _Fields, key: str, path: str) -> int | None:
        return self.value(fields.get(key, _NULL), f"{path}{key}", _bigint, NOT_AN_INTEGER)

    def text(self, fields: _Fields, key: str, path: str) -> str | None:
        return self.value(fields.get(key, _NULL), f"{path}{key}", _text, NOT_A_TEXT)

    def fields(self, raw: msgspec.Raw, field: str) -> _Fields:
        """The fields of an object (none when it is absent, null, or not an object: an anomaly)."""
        return self.value(raw, field, _object, NOT_AN_OBJECT) or {}

    def time(self, raw: msgspec.Raw, field: str) -> datetime | None:
        return _plausible(self.value(raw, field, _time, NOT_A_TIME), field, self.recorded_at, self.anomalies)


def _plausible(
    value: datetime | None, field: str, recorded_at: datetime, anomalies: list[tuple[str, str]]
) -> datetime | None:
    """``value`` in UTC if plausible (:func:`projections.rules.plausible_time`), else None and an anomaly."""
    value = utc(value)
    if value is None or plausible_time(value, recorded_at):
        return value
    anomalies.append((field, IMPLAUSIBLE_TIME))
    return None


def decode(event: RecordedEvent) -> OrderFacts:
    """The order facts of an ``order.observed`` event.

    Raises ``msgspec.DecodeError`` (the engine parks the event) only when the payload is not JSON or
    ``data.order.id`` is unusable; :class:`projections.events.UndecodableEvent` without a payload.
    """
    if event.payload_json is None:
        raise UndecodableEvent(f"event {event.position} ({event.type}) has no JSON payload")
    payload = event.payload_json.encode()
    try:
        fast = _fast_observed.decode(payload).data
    except msgspec.DecodeError:
        return _decode_fields(event, payload)
    return _fast_facts(fast, event.recorded_at)


def _fast_facts(data: _FastData, recorded_at: datetime) -> OrderFacts:
    """The facts of a payload the fast path decoded: as :func:`_decode_fields` reads them, every field
    having been readable (an implausible time is still read as absent, with its anomaly)."""
    order, seller, delivery = data.order, data.seller, data.delivery
    invoice = delivery.invoice if delivery else None
    anomalies: list[tuple[str, str]] = []
    # In the order of _decode_fields: the only anomalies left here are the times'.
    order_done_at = _plausible(order.order_done_at, "order.orderDoneAt", recorded_at, anomalies)
    approved_at = _plausible(order.approved_at, "order.approvedAt", recorded_at, anomalies)
    ship_done_at = _plausible(
        delivery.ship_done_at if delivery else None, "delivery.shipDoneAt", recorded_at, anomalies
    )
    return OrderFacts(
        order_id=order.id,
        total_price=order.total_price,
        total_product_price=order.total_product_price,
        delivery_price=order.delivery_price,
        order_done_at=order_done_at,
        approved_at=approved_at,
        seller_id=seller.id if seller else None,
        seller_shop_name=seller.shop_name if seller else None,
        invoice_no=invoice.no if invoice else None,
        invoice_company_code=invoice.company_code if invoice else None,
        invoice_company_name=invoice.company_name if invoice else None,
        ship_done_at=ship_done_at,
        anomalies=tuple(anomalies),
    )


def _decode_fields(event: RecordedEvent, payload: bytes) -> OrderFacts:
    """The order facts read field by field: each unreadable field is absent, with its anomaly."""
    data = _observed.decode(payload).data
    order = data.order
    if "id" not in order:
        raise msgspec.ValidationError("`data.order` has no `id`")
    try:
        order_id = _order_id.decode(order["id"])
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"{exc} - in `$.data.order.id`") from None
    read = _Reader(event.recorded_at)
    seller = read.fields(data.seller, "seller")
    delivery = _delivery_fields(read, data.delivery)
    invoice = read.fields(delivery.invoice, "delivery.invoice")
    return OrderFacts(
        order_id=order_id,
        total_price=read.integer(order, "totalPrice", "order."),
        total_product_price=read.integer(order, "totalProductPrice", "order."),
        delivery_price=read.integer(order, "deliveryPrice", "order."),
        order_done_at=read.time(order.get("orderDoneAt", _NULL), "order.orderDoneAt"),
        approved_at=read.time(order.get("approvedAt", _NULL), "order.approvedAt"),
        seller_id=read.integer(seller, "id", "seller."),
        seller_shop_name=read.text(seller, "shopName", "seller."),
        invoice_no=read.text(invoice, "no", "delivery.invoice."),
        invoice_company_code=read.text(invoice, "companyCode", "delivery.invoice."),
        invoice_company_name=read.text(invoice, "companyName", "delivery.invoice."),
        ship_done_at=read.time(delivery.ship_done_at, "delivery.shipDoneAt"),
        anomalies=tuple(read.anomalies),
    )


def _delivery_fields(read: _Reader, raw: msgspec.Raw) -> _Delivery:
    """``data.delivery`` (an empty one when it is absent, null, or not an object: an anomaly)."""
    delivery: Any = read.value(raw, "delivery", _delivery, NOT_AN_OBJECT)
    return delivery if isinstance(delivery, _Delivery) else _Delivery()
