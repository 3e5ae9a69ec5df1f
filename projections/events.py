"""The log event types the projections consume, their payloads, and decoding them into observations.

Payloads are decoded once, here, with msgspec. Every field the API might omit is optional: Bunjang
documents every time and nested object as nullable. Ids and prices are bounded to PostgreSQL's
bigint so that a value that cannot be stored fails here, not in the database.

What parks an API observation is only what it cannot exist without: the order id, an item that is not
an object, an item's id or a status that is not text (the ``orders`` projection reads the order-level
fields the same way: :mod:`projections.order_facts`). Every other field of an item the status
projections read (``statusUpdatedAt``, ``product`` and its ``id``, ``name``, ``price``) is read on its
own: an unreadable or implausible value (:func:`projections.rules.plausible_time`) is read as absent
and reported in :attr:`Observation.anomalies`, so one bad field never hides a status change.

Why separate, tolerant readers rather than the writers' types (:mod:`app.webhook.payloads`,
:mod:`app.bunjang.types`): the writers decode what arrives today, at the edge, and may refuse it; these
readers decode what the log holds, which is every payload ever accepted, by any version of bunsync, for
good, and which a rebuild reads again. So they accept every shape the log may hold, never refuse an
event for a field they do not need, and change only by adding. The names they match on (types,
sources) come from the one catalogue, :mod:`app.events`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from app.events import (
    ORDER_LISTED,
    ORDER_OBSERVED,
    SOURCE_GET_ORDER,
    SOURCE_LIST_ORDERS,
    SOURCE_WEBHOOK,
    WEBHOOK_STATUS_CHANGED,
)
from app.store.event_log import RecordedEvent
from projections.rules import EARLIEST_TIME, FUTURE_TOLERANCE, Observation, plausible_time

#: The events that carry item statuses, which the item projections read.
ITEM_EVENTS = frozenset({WEBHOOK_STATUS_CHANGED, ORDER_OBSERVED, ORDER_LISTED})


BigInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Text = Annotated[str, msgspec.Meta(max_length=10_000)]


# --- webhook.order_status_changed.v1: the webhook envelope ---------------------------------------


class WebhookItem(msgspec.Struct, frozen=True, rename="camel"):
    """One item of ``data.orderItems`` in an ``order.status.changed`` v1 webhook."""

    order_item_id: BigInt
    order_status: Text
    pid: BigInt | None = None


class WebhookData(msgspec.Struct, frozen=True, rename="camel"):
    """``data`` of the webhook envelope."""

    order_id: BigInt
    order_items: list[WebhookItem]


class WebhookEnvelope(msgspec.Struct, frozen=True, rename="camel"):
    """The part of the webhook envelope the projections read."""

    data: WebhookData


# --- order.observed: the Get Order response body -------------------------------------------------
# Read field by field: the item fields below (_ObservedItemsOnly, _api_item), the order-level fields
# in projections/order_facts.py.


class PersonalDataErased(msgspec.Struct, frozen=True, rename="camel"):
    """The payload of ``order.personal_data_erased`` (no personal value, only what and why)."""

    order_id: BigInt
    reason: Text
    erased: list[Text] = []


#: An item as the status projections read it: each field decoded on its own (see the module docstring).
_RawItem = dict[str, msgspec.Raw]


class _OrderItemsOnly(msgspec.Struct, frozen=True, rename="camel"):
    """``data.order`` of Get Order (or a List Orders entry), as the status projections read it: the id
    and the items, each item's fields still undecoded."""

    id: BigInt
    order_items: list[_RawItem] | None = None


class _DataItemsOnly(msgspec.Struct, frozen=True):
    order: _OrderItemsOnly


class _ObservedItemsOnly(msgspec.Struct, frozen=True):
    """The part of ``order.observed`` the status projections read. Decoding only that, a flaw in a
    part they do not read (a seller's name, a delivery time) does not park a status change; and the
    rebuild's bulk SQL (order_item_status.sql, bunsync_observations) checks exactly these fields."""

    data: _DataItemsOnly


# --- the fast path: the same fields, typed, in one decoding ---------------------------------------
# Most payloads are well formed: decoded in one pass into these typed structs (the same types and
# bounds as the field-by-field readers below). Any value these refuse (a field of the wrong type, out
# of bounds, not a time) makes the event go through the field-by-field path instead, which reads it as
# absent and reports the anomaly, or parks the event, exactly as if the fast path did not exist.


class _FastProduct(msgspec.Struct, frozen=True):
    id: BigInt | None = None
    name: Text | None = None
    price: BigInt | None = None


class _FastItem(msgspec.Struct, frozen=True, rename="camel"):
    id: BigInt
    status: Text | None = None
    status_updated_at: datetime | None = None
    product: _FastProduct | None = None


class _FastOrder(msgspec.Struct, frozen=True, rename="camel"):
    id: BigInt
    order_items: list[_FastItem] | None = None


class _FastData(msgspec.Struct, frozen=True):
    order: _FastOrder


class _FastObserved(msgspec.Struct, frozen=True):
    data: _FastData


_webhook = msgspec.json.Decoder(WebhookEnvelope)
_observed_items = msgspec.json.Decoder(_ObservedItemsOnly)
_erased = msgspec.json.Decoder(PersonalDataErased)
_listed = msgspec.json.Decoder(_OrderItemsOnly)
_fast_observed = msgspec.json.Decoder(_FastObserved)
_fast_listed = msgspec.json.Decoder(_FastOrder)
_item_id = msgspec.json.Decoder(BigInt)
_item_status = msgspec.json.Decoder(Text | None)
_time = msgspec.json.Decoder(datetime | None)
_object = msgspec.json.Decoder(_RawItem | None)
_bigint = msgspec.json.Decoder(BigInt | None)
_text = msgspec.json.Decoder(Text | None)
_NULL = msgspec.Raw(b"null")


class UndecodableEvent(ValueError):
    """An event the projections handle has no payload to decode."""


def _payload(event: RecordedEvent) -> bytes:
    if event.payload_json is None:
        raise UndecodableEvent(f"event {event.position} ({event.type}) has no JSON payload")
    return event.payload_json.encode()


def utc(value: datetime | None) -> datetime | None:
    """``value`` with a time zone: the API's times are UTC, so a time without an offset is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def decode_personal_data_erased(event: RecordedEvent) -> PersonalDataErased:
    """The payload of an ``order.personal_data_erased`` event."""
    return _erased.decode(_payload(event))


def observations(event: RecordedEvent) -> list[Observation]:
    """The per-item status observations an event carries (empty for types without items)."""
    if event.type == WEBHOOK_STATUS_CHANGED:
        data = _webhook.decode(_payload(event)).data
        return [
            Observation(
                order_item_id=i.order_item_id,
                order_id=data.order_id,
                status=i.order_status,
                source=SOURCE_WEBHOOK,
                position=event.position,
                recorded_at=event.recorded_at,
                signed_at=utc(event.signed_at),
                pid=i.pid,
            )
            for i in data.order_items
        ]
    if event.type == ORDER_OBSERVED:
        payload = _payload(event)
        try:
            fast = _fast_observed.decode(payload).data.order
        except msgspec.DecodeError:
            items_only = _observed_items.decode(payload).data.order
            return _api_items(event, items_only.id, items_only.order_items or [], SOURCE_GET_ORDER)
        return _fast_items(event, fast, SOURCE_GET_ORDER)
    if event.type == ORDER_LISTED:
        payload = _payload(event)
        try:
            fast = _fast_listed.decode(payload)
        except msgspec.DecodeError:
            listed = _listed.decode(payload)
            return _api_items(event, listed.id, listed.order_items or [], SOURCE_LIST_ORDERS)
        return _fast_items(event, fast, SOURCE_LIST_ORDERS)
    return []


def _fast_items(event: RecordedEvent, order: _FastOrder, source: str) -> list[Observation]:
    """The items of an order the fast path decoded: as :func:`_api_items` reads them, every field
    having been readable (an implausible time is still read as absent, with its anomaly)."""
    observed: list[Observation] = []
    for item in order.order_items or []:
        if item.status is None:
            continue  # as _api_items: an item without a status tells nothing
        anomalies: list[tuple[str, str]] = []
        updated_at = _plausible(utc(item.status_updated_at), event.recorded_at, anomalies)
        product = item.product
        observed.append(
            Observation(
                order_item_id=item.id,
                order_id=order.id,
                status=item.status,
                source=source,
                position=event.position,
                recorded_at=event.recorded_at,
                status_updated_at=updated_at,
                pid=product.id if product else None,
                product_name=product.name if product else None,
                price=product.price if product else None,
                anomalies=tuple(anomalies),
            )
        )
    return observed


def _api_items(event: RecordedEvent, order_id: int, items: list[_RawItem], source: str) -> list[Observation]:
    observed = [_api_item(event, order_id, fields, source) for fields in items]
    # An item without a status tells nothing about its status: there is nothing to observe.
    return [o for o in observed if o is not None]


def _api_item(event: RecordedEvent, order_id: int, fields: _RawItem, source: str) -> Observation | None:
    """One item; raises ``msgspec.ValidationError`` (the event is parked) only for its id or status."""
    if "id" not in fields:
        raise msgspec.ValidationError("an order item has no `id`")
    try:
        item_id = _item_id.decode(fields["id"])
        status = _item_status.decode(fields.get("status", _NULL))
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"{exc} - in an order item's id or status") from None
    if status is None:
        return None
    anomalies: list[tuple[str, str]] = []
    updated_at = _status_time(fields.get("statusUpdatedAt", _NULL), event.recorded_at, anomalies)
    pid, name, price = _product(fields.get("product", _NULL), anomalies)
    return Observation(
        order_item_id=item_id,
        order_id=order_id,
        status=status,
        source=source,
        position=event.position,
        recorded_at=event.recorded_at,
        status_updated_at=updated_at,
        pid=pid,
        product_name=name,
        price=price,
        anomalies=tuple(anomalies),
    )


def _status_time(
    raw: msgspec.Raw, recorded_at: datetime, anomalies: list[tuple[str, str]]
) -> datetime | None:
    try:
        value = utc(_time.decode(raw))
    except msgspec.DecodeError:
        anomalies.append(("statusUpdatedAt", "not an ISO-8601 time"))
        return None
    return _plausible(value, recorded_at, anomalies)


def _plausible(
    value: datetime | None, recorded_at: datetime, anomalies: list[tuple[str, str]]
) -> datetime | None:
    """``value`` if plausible (:func:`projections.rules.plausible_time`), else None and an anomaly."""
    if value is None or plausible_time(value, recorded_at):
        return value
    anomalies.append(
        (
            "statusUpdatedAt",
            f"{value.isoformat()} is implausible for an observation recorded at {recorded_at.isoformat()} "
            f"(allowed: {EARLIEST_TIME:%Y-%m-%d} to {FUTURE_TOLERANCE.total_seconds() / 60:g} min after "
            "recording): not used as the time of the status",
        )
    )
    return None


def _product(raw: msgspec.Raw, anomalies: list[tuple[str, str]]) -> tuple[int | None, str | None, int | None]:
    """``product.id``, ``.name``, ``.price``; each unreadable one is absent and an anomaly."""
    try:
        product = _object.decode(raw)
    except msgspec.DecodeError:
        anomalies.append(("product", "not an object"))
        return None, None, None
    if product is None:
        return None, None, None
    pid = _field(product, "id", _bigint, "not an integer within bigint", anomalies)
    name = _field(product, "name", _text, "not a text of at most 10000 characters", anomalies)
    price = _field(product, "price", _bigint, "not an integer within bigint", anomalies)
    return pid, name, price


def _field(
    product: _RawItem,
    key: str,
    decoder: msgspec.json.Decoder[Any],
    problem: str,
    anomalies: list[tuple[str, str]],
) -> Any:
    try:
        return decoder.decode(product.get(key, _NULL))
    except msgspec.DecodeError:
        anomalies.append((f"product.{key}", problem))
        return None
