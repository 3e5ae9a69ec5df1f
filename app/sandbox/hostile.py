"""Hostile answers the sandbox can give, to prove bunsync survives what a broken or malicious Bunjang
(or anything posing as it) may send. All off by default; set them with ``bunsync sandbox --hostile
KIND=ORDER_IDS`` or at runtime (``PATCH /_sandbox/faults``, the camelCase names below).

Per order (Get Order, and the order's entry in List Orders where it applies):

- ``nulOrders``: a ``\\u0000`` in the buyer's name and the product's name (jsonb refuses it);
- ``farFutureOrders``: every item's ``statusUpdatedAt`` is ``9999-12-31T23:59:59Z``;
- ``outOfRangeOrders``: ``9999-12-31T23:30:00-01:00`` (year 10000 in UTC), and in Get Order also as
  the order's ``orderDoneAt``;
- ``badFieldOrders``: a product price of 2**70 and a ``returnRequestId`` that is not an integer, and
  in Get Order also an order ``totalPrice`` of 2**70 and a seller that is not an object;
- ``wrongIdOrders``: Get Order answers with ``data.order.id`` of another order;
- ``oversizeOrders``: Get Order answers a valid body padded to ``oversizeBytes``, streamed;
- ``dripOrders``: Get Order drips its body one byte every ``dripIntervalS``.

List Orders: ``endlessPages`` (every page announces one more page; beyond the real orders each page
holds one invented order), ``dripList`` (pages drip like ``dripOrders``). ``dateOffsetS`` shifts the
``Date`` header of every REST answer (a Bunjang clock that is off, or this host's).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec

FAR_FUTURE = "9999-12-31T23:59:59Z"
OUT_OF_RANGE = "9999-12-31T23:30:00-01:00"
#: Invented orders of endless pages have ids from here (no world order has one).
INVENTED_ORDER_BASE = 9_000_000_000
_CHUNK = 64 * 1024


def rewrite_order(order: dict[str, Any], order_id: int, faults: Any) -> None:
    """Apply the per-order field faults to a Get Order ``data.order`` or a List Orders entry."""
    items = order.get("orderItems") or []
    if order_id in faults.nul_orders:
        for item in items:
            item["product"]["name"] = item["product"]["name"] + "\u0000 (NUL)"
    if order_id in faults.far_future_orders:
        for item in items:
            item["statusUpdatedAt"] = FAR_FUTURE
    if order_id in faults.out_of_range_orders:
        for item in items:
            item["statusUpdatedAt"] = OUT_OF_RANGE
    if order_id in faults.bad_field_orders:
        for item in items:
            item["product"]["price"] = 2**70
            item["returnRequestId"] = "not-a-number"


def get_order_body(body: bytes, order_id: int, faults: Any) -> bytes:
    """A Get Order body with the field faults of ``order_id`` applied (the body itself if none)."""
    if not _touches(order_id, faults):
        return body
    document = msgspec.json.decode(body)
    data = document["data"]
    rewrite_order(data["order"], order_id, faults)
    # Order-level fields (Get Order only: List Orders entries carry no such fields bunsync reads).
    if order_id in faults.out_of_range_orders:
        data["order"]["orderDoneAt"] = OUT_OF_RANGE
    if order_id in faults.bad_field_orders:
        data["order"]["totalPrice"] = 2**70
        data["seller"] = "not an object"
    if order_id in faults.nul_orders and data.get("delivery") and data["delivery"].get("address"):
        data["delivery"]["address"]["name"] += "\u0000"
    if order_id in faults.wrong_id_orders:
        data["order"]["id"] = order_id + 1
    return msgspec.json.encode(document)


def list_page_body(body: bytes, page: int, faults: Any) -> bytes:
    """A List Orders page with the per-order faults applied and, with ``endlessPages``, one more page
    announced (and an invented order on pages beyond the real ones)."""
    document = msgspec.json.decode(body)
    for entry in document["data"]:
        rewrite_order(entry, entry["id"], faults)
    if faults.endless_pages:
        document["totalPages"] = page + 2
        if not document["data"]:
            invented = INVENTED_ORDER_BASE + page
            document["data"] = [
                {
                    "id": invented,
                    "orderItems": [
                        {"id": invented * 10, "status": "PAYMENT_RECEIVED", "statusUpdatedAt": None}
                    ],
                }
            ]
    return msgspec.json.encode(document)


def _touches(order_id: int, faults: Any) -> bool:
    return any(
        order_id in ids
        for ids in (
            faults.nul_orders,
            faults.far_future_orders,
            faults.out_of_range_orders,
            faults.bad_field_orders,
            faults.wrong_id_orders,
        )
    )


async def drip(body: bytes, interval_s: float) -> AsyncIterator[bytes]:
    """``body`` one byte at a time, ``interval_s`` apart (a slow-loris answer)."""
    for i in range(len(body)):
        yield body[i : i + 1]
        await asyncio.sleep(interval_s)


async def oversize(body: bytes, total_bytes: int) -> AsyncIterator[bytes]:
    """``body`` with a ``"padding"`` member so that the whole is ``total_bytes`` long, streamed (the
    sandbox never holds it whole)."""
    head = body[:-1] + b',"padding":"'  # a JSON object: insert before its closing brace
    yield head
    left = max(0, total_bytes - len(head) - 2)
    while left > 0:
        n = min(_CHUNK, left)
        yield b"x" * n
        left -= n
        await asyncio.sleep(0)
    yield b'"}'
