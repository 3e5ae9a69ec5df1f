"""msgspec types for every Bunjang REST response the client reads, decoded once at the edge.

Decoding rules, the same everywhere:

- unknown fields are ignored (Bunjang adds fields; bunsync must not break);
- every time and every nested object is optional and nullable;
- Get Order and List Orders are read leniently first (:class:`OrderIdOnly`, :class:`PageWire`,
  :func:`listed_entry`): one unreadable field never refuses a whole answer;
- the identifiers a record cannot exist without (order ``id``, item ``id``) and an item's ``status`` are
  required, and ``data.order`` of Get Order is required: without them the answer is unusable and the
  client raises :class:`~app.bunjang.errors.MalformedResponse` instead of inventing values;
- status values are plain ``str``: the set is open, unknown values are kept verbatim;
- times are timezone-aware :class:`~datetime.datetime`. ISO-8601 with ``Z``, fractional seconds and
  explicit offsets are accepted; a time **without** an offset is refused rather than guessed (Bunjang is
  a Korean service: a naive time could be KST or UTC, and a wrong guess would reorder statuses).

:class:`Address` holds buyer personal data: its ``repr`` is redacted so it cannot leak into logs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Base of the response types: immutable, camelCase on the wire."""


class Product(_Wire, frozen=True):
    """``orderItems[].product``: ``id`` is the ``pid`` of webhooks."""

    id: int | None = None
    name: str | None = None
    price: int | None = None


class OrderItem(_Wire, frozen=True):
    """One item of an order; ``statusUpdatedAt`` is the authoritative time of its current ``status``."""

    id: int
    status: str
    product: Product | None = None
    status_updated_at: AwareDatetime | None = None
    purchase_confirmed_at: AwareDatetime | None = None
    refunded_at: AwareDatetime | None = None
    shipping_fee_included: bool | None = None
    return_request_id: int | None = None


class Order(_Wire, frozen=True):
    """``data.order`` of Get Order (prices in KRW)."""

    id: int
    total_price: int | None = None
    total_product_price: int | None = None
    delivery_price: int | None = None
    order_done_at: AwareDatetime | None = None
    approved_at: AwareDatetime | None = None
    order_items: tuple[OrderItem, ...] = ()


class Seller(_Wire, frozen=True):
    """``data.seller``."""

    id: int | None = None
    shop_name: str | None = None


class Invoice(_Wire, frozen=True):
    """A parcel's tracking number and carrier."""

    no: str | None = None
    company_code: str | None = None
    company_name: str | None = None


class Address(_Wire, frozen=True):
    """A postal address: buyer personal data. Never logged; the ``repr`` hides every value."""

    name: str | None = None
    phone: str | None = None
    address1: str | None = None
    address2: str | None = None
    zip_code: str | None = None

    def __repr__(self) -> str:
        return "Address(<redacted>)"


class Delivery(_Wire, frozen=True):
    """``data.delivery``: the outbound parcel."""

    invoice: Invoice | None = None
    address: Address | None = None
    ship_done_at: AwareDatetime | None = None


class Return(_Wire, frozen=True):
    """One element of ``data.returns``: a return parcel."""

    id: int | None = None
    invoice: Invoice | None = None
    address: Address | None = None
    ship_done_at: AwareDatetime | None = None


class OrderDetail(_Wire, frozen=True):
    """``data`` of Get Order: the order with its items, seller, delivery and returns."""

    order: Order
    seller: Seller | None = None
    delivery: Delivery | None = None
    returns: tuple[Return, ...] | None = None


class GetOrderResponse(_Wire, frozen=True):
    """The whole Get Order body: ``{"data": {...}}``."""

    data: OrderDetail


class ListedOrder(_Wire, frozen=True):
    """One order of a List Orders page, with the items as listed (``id``, ``status``, ``statusUpdatedAt``)."""

    id: int
    order_items: tuple[OrderItem, ...] = ()


class ListOrdersPage(_Wire, frozen=True):
    """One List Orders page. ``totalPages`` is required: without it the client cannot know where to stop."""

    total_pages: int
    data: tuple[ListedOrder, ...] = ()
    total_elements: int | None = None


class _OrderIdOnlyOrder(_Wire, frozen=True):
    id: int


class _OrderIdOnlyData(_Wire, frozen=True):
    order: _OrderIdOnlyOrder


class OrderIdOnly(_Wire, frozen=True):
    """The least a Get Order answer must hold to be recorded: ``data.order.id`` (checked against the
    order asked). Everything else is kept as returned and judged field by field by the projections."""

    data: _OrderIdOnlyData


class PageWire(_Wire, frozen=True):
    """A List Orders page as read off the wire: ``totalPages`` and each entry still undecoded, so one
    unreadable entry or field never refuses the whole page (see :func:`listed_entry`)."""

    total_pages: int
    data: tuple[msgspec.Raw, ...] = ()
    total_elements: int | None = None


class _EntryWire(_Wire, frozen=True):
    id: int
    order_items: tuple[dict[str, msgspec.Raw], ...] | None = None


_entry = msgspec.json.Decoder(_EntryWire)
_item_id = msgspec.json.Decoder(int)
_status = msgspec.json.Decoder(str)
_time = msgspec.json.Decoder(AwareDatetime | None)
_product = msgspec.json.Decoder(Product | None)


def listed_entry(raw: msgspec.Raw) -> ListedOrder | None:
    """One List Orders entry, leniently: ``None`` without an integer ``id``; an item without an integer
    ``id`` or a text ``status`` is left out (it says nothing usable); an unreadable ``statusUpdatedAt``
    or ``product`` is read as absent. Other item fields are not kept (the reconciler needs no more)."""
    try:
        entry = _entry.decode(raw)
    except msgspec.DecodeError:
        return None
    items: list[OrderItem] = []
    for fields in entry.order_items or ():
        try:
            item_id = _item_id.decode(fields["id"])
            status = _status.decode(fields["status"])
        except (KeyError, msgspec.DecodeError):
            continue
        items.append(
            OrderItem(
                id=item_id,
                status=status,
                status_updated_at=_lenient(_time, fields.get("statusUpdatedAt")),
                product=_lenient(_product, fields.get("product")),
            )
        )
    return ListedOrder(id=entry.id, order_items=tuple(items))


def _lenient(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw | None) -> Any:
    if raw is None:
        return None
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError:
        return None


class ErrorBody(_Wire, frozen=True):
    """Bunjang's error body ``{"errorCode", "reason"}``; both optional, since proxies answer too."""

    error_code: str | None = None
    reason: str | None = None


class FetchedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`BunjangClient.get_order` returns: the decoded order and the body exactly as received.

    ``order_id`` is the answer's ``data.order.id`` (always the order asked). ``order`` is the fully
    decoded ``data``, or ``None`` when some field does not read as documented (the answer is still
    recorded: the projections judge each field). ``raw`` is the complete response body
    (``{"data": ...}``) byte for byte: the fetcher stores it in the event log as "the order as the API
    returned it".
    """

    order_id: int
    order: OrderDetail | None
    raw: bytes
