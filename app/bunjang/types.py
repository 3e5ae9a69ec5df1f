"""msgspec types for every Bunjang REST response the client reads, decoded once at the edge.

Decoding rules, the same everywhere:

- unknown fields are ignored (Bunjang adds fields; bunsync must not break);
- every time and every nested object is optional and nullable;
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
from typing import Annotated

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


class ErrorBody(_Wire, frozen=True):
    """Bunjang's error body ``{"errorCode", "reason"}``; both optional, since proxies answer too."""

    error_code: str | None = None
    reason: str | None = None


class FetchedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`BunjangClient.get_order` returns: the decoded order and the body exactly as received.

    ``raw`` is the complete response body (``{"data": ...}``) byte for byte: the fetcher stores it in the
    event log as "the order as the API returned it".
    """

    order: OrderDetail
    raw: bytes
