"""Bunjang's JSON as the sandbox sends it: Get Order, List Orders, error bodies and webhook envelopes.

Written from BUNJANG_API.md, independently of the client's types (:mod:`app.bunjang.types`), so that
testing the client against the sandbox checks two readings of the documentation against each other.
Absent values are sent as ``null``, like the real API. Times are UTC with ``Z`` and milliseconds when
they have any (``2026-11-01T19:12:00.250Z``): Bunjang's examples show whole seconds, and clients must
accept fractions too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from app.sandbox.world import Buyer, Change, Item, Order, Parcel

EVENT_TYPE = "order.status.changed"
PAYLOAD_VERSION = "v1"


class _Out(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of outgoing shapes: camelCase keys, every field always present."""


class ProductOut(_Out, frozen=True):
    id: int
    name: str
    price: int


class ItemOut(_Out, frozen=True):
    id: int
    status: str
    product: ProductOut
    purchase_confirmed_at: str | None
    refunded_at: str | None
    status_updated_at: str
    shipping_fee_included: bool
    return_request_id: int | None


class OrderOut(_Out, frozen=True):
    id: int
    total_price: int
    total_product_price: int
    delivery_price: int
    order_done_at: str
    approved_at: str | None
    order_items: tuple[ItemOut, ...]


class SellerOut(_Out, frozen=True):
    id: int
    shop_name: str


class InvoiceOut(_Out, frozen=True):
    no: str
    company_code: str
    company_name: str


class AddressOut(_Out, frozen=True):
    name: str
    phone: str
    address1: str
    address2: str
    zip_code: str


class DeliveryOut(_Out, frozen=True):
    invoice: InvoiceOut | None
    address: AddressOut
    ship_done_at: str | None


class ReturnOut(_Out, frozen=True):
    id: int | None
    invoice: InvoiceOut
    address: AddressOut
    ship_done_at: str | None


class OrderDataOut(_Out, frozen=True, omit_defaults=True):
    order: OrderOut
    seller: SellerOut
    delivery: DeliveryOut
    returns: tuple[ReturnOut, ...] = ()  # "returns"? is optional: sent only when there are some


class GetOrderOut(_Out, frozen=True):
    data: OrderDataOut


class ListedOrderOut(_Out, frozen=True):
    id: int
    order_items: tuple[ItemOut, ...]


class ListOrdersOut(_Out, frozen=True):
    data: tuple[ListedOrderOut, ...]
    total_pages: int
    total_elements: int


class ErrorOut(_Out, frozen=True):
    error_code: str
    reason: str


class WebhookItemOut(_Out, frozen=True):
    order_item_id: int
    pid: int
    order_status: str


class WebhookDataOut(_Out, frozen=True):
    order_id: int
    order_items: tuple[WebhookItemOut, ...]


class EnvelopeOut(_Out, frozen=True):
    event_id: str
    event_type: str
    payload_version: str
    data: WebhookDataOut


def format_time(value: datetime) -> str:
    """ISO-8601 UTC with ``Z``; milliseconds only when non-zero."""
    utc = value.astimezone(UTC)
    base = utc.strftime("%Y-%m-%dT%H:%M:%S")
    ms = utc.microsecond // 1000
    return f"{base}.{ms:03d}Z" if ms else f"{base}Z"


def _opt(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _item(item: Item) -> ItemOut:
    return ItemOut(
        id=item.id,
        status=item.status,
        product=ProductOut(id=item.pid, name=item.name, price=item.price),
        purchase_confirmed_at=_opt(item.purchase_confirmed_at),
        refunded_at=_opt(item.refunded_at),
        status_updated_at=format_time(item.status_updated_at),
        shipping_fee_included=item.shipping_fee_included,
        return_request_id=item.return_request_id,
    )


def _address(buyer: Buyer) -> AddressOut:
    return AddressOut(
        name=buyer.name,
        phone=buyer.phone,
        address1=buyer.address1,
        address2=buyer.address2,
        zip_code=buyer.zip_code,
    )


def _invoice(parcel: Parcel) -> InvoiceOut:
    return InvoiceOut(
        no=parcel.invoice_no, company_code=parcel.company_code, company_name=parcel.company_name
    )


def get_order_body(order: Order) -> bytes:
    """The Get Order body ``{"data": {"order", "seller", "delivery", "returns"?}}``."""
    product_total = sum(i.price for i in order.items)
    address = _address(order.buyer)
    out = OrderDataOut(
        order=OrderOut(
            id=order.id,
            total_price=product_total + order.delivery_price,
            total_product_price=product_total,
            delivery_price=order.delivery_price,
            order_done_at=format_time(order.order_done_at),
            approved_at=_opt(order.approved_at),
            order_items=tuple(_item(i) for i in order.items),
        ),
        seller=SellerOut(id=order.seller_id, shop_name=order.shop_name),
        delivery=DeliveryOut(
            invoice=_invoice(order.delivery) if order.delivery else None,
            address=address,
            ship_done_at=_opt(order.delivery.ship_done_at) if order.delivery else None,
        ),
        returns=tuple(
            ReturnOut(id=r.id, invoice=_invoice(r), address=address, ship_done_at=_opt(r.ship_done_at))
            for r in order.returns
        ),
    )
    return msgspec.json.encode(GetOrderOut(data=out))


def list_orders_body(page_orders: list[Order], total_pages: int, total_elements: int) -> bytes:
    """One List Orders page ``{"data": [...], "totalPages", "totalElements"}``."""
    data = tuple(ListedOrderOut(id=o.id, order_items=tuple(_item(i) for i in o.items)) for o in page_orders)
    return msgspec.json.encode(
        ListOrdersOut(data=data, total_pages=total_pages, total_elements=total_elements)
    )


def error_body(error_code: str, reason: str) -> bytes:
    """Bunjang's error body ``{"errorCode", "reason"}``."""
    return msgspec.json.encode(ErrorOut(error_code=error_code, reason=reason))


def envelope_body(event_id: str, change: Change) -> bytes:
    """An ``order.status.changed`` v1 webhook body, exactly in the documented shape."""
    items = tuple(
        WebhookItemOut(order_item_id=i.order_item_id, pid=i.pid, order_status=i.status) for i in change.items
    )
    return msgspec.json.encode(
        EnvelopeOut(
            event_id=event_id,
            event_type=EVENT_TYPE,
            payload_version=PAYLOAD_VERSION,
            data=WebhookDataOut(order_id=change.order_id, order_items=items),
        )
    )
