"""Build log events the projections read, append them, and wait on outcomes (helpers for these tests)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.store import event_log
from app.store.event_log import NewEvent
from projections import REGISTRY, events
from projections.engine import process_batch

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_keys = itertools.count()


def at(seconds: float) -> datetime:
    """A time ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def webhook(
    order_id: int, items: list[tuple[int, str]], signed_at: datetime, key: str | None = None
) -> NewEvent:
    """A recognised ``order.status.changed`` v1 delivery for ``items`` [(item id, status)]."""
    event_id = key or f"wh-{next(_keys)}"
    body = {
        "eventId": event_id,
        "eventType": "order.status.changed",
        "payloadVersion": "v1",
        "data": {
            "orderId": order_id,
            "orderItems": [{"orderItemId": i, "pid": 500 + i, "orderStatus": s} for i, s in items],
        },
    }
    text = json.dumps(body)
    return NewEvent(
        stream=f"order-{order_id}",
        type=events.WEBHOOK_STATUS_CHANGED,
        source="webhook",
        idempotency_key=f"webhook:{event_id}",
        payload_json=text,
        raw=text.encode(),
        signed_at=signed_at,
        received_at=signed_at,
    )


def observed_body(order_id: int, items: list[tuple[int, str, datetime | None]]) -> dict[str, Any]:
    """A Get Order body with ``items`` [(item id, status, statusUpdatedAt)]."""
    return {
        "data": {
            "order": {
                "id": order_id,
                "totalPrice": 12000,
                "totalProductPrice": 10000,
                "deliveryPrice": 2000,
                "orderDoneAt": "2026-01-01T00:00:00Z",
                "approvedAt": "2026-01-01T00:00:01.250+09:00",
                "orderItems": [
                    {
                        "id": i,
                        "status": s,
                        "product": {"id": 500 + i, "name": f"product {i}", "price": 10000},
                        "statusUpdatedAt": iso(t) if t else None,
                        "shippingFeeIncluded": False,
                    }
                    for i, s, t in items
                ],
            },
            "seller": {"id": 9, "shopName": "shop"},
            "delivery": {
                "invoice": {"no": "123", "companyCode": "04", "companyName": "CJ"},
                "address": {
                    "name": "Buyer",
                    "phone": "010-0000-0000",
                    "address1": "Seoul",
                    "address2": None,
                    "zipCode": "04524",
                },
                "shipDoneAt": None,
            },
            "returns": [],
        }
    }


def observed(order_id: int, items: list[tuple[int, str, datetime | None]], body: Any = None) -> NewEvent:
    """An ``order.observed`` event (what the fetcher appends)."""
    text = json.dumps(body if body is not None else observed_body(order_id, items))
    return NewEvent(
        stream=f"order-{order_id}",
        type=events.ORDER_OBSERVED,
        source="get_order",
        idempotency_key=f"get_order:{next(_keys)}",
        payload_json=text,
    )


def listed(order_id: int, items: list[tuple[int, str, datetime | None]]) -> NewEvent:
    """An ``order.listed`` event (what the reconciler appends)."""
    body = {
        "id": order_id,
        "orderItems": [
            {"id": i, "status": s, "statusUpdatedAt": iso(t) if t else None, "product": {"id": 500 + i}}
            for i, s, t in items
        ],
    }
    return NewEvent(
        stream=f"order-{order_id}",
        type=events.ORDER_LISTED,
        source="list_orders",
        idempotency_key=f"list_orders:{next(_keys)}",
        payload_json=json.dumps(body),
    )


async def append(pool: asyncpg.Pool, *new: NewEvent) -> None:
    """Append ``new`` in one transaction."""
    async with pool.acquire() as conn:
        await event_log.append(conn, list(new))


async def project_all(pool: asyncpg.Pool, batch_size: int = 500) -> None:
    """Bring every projection to the log's head (no background loop)."""
    async with pool.acquire() as conn:
        for projection in REGISTRY:
            while await process_batch(conn, projection, batch_size=batch_size):
                pass


async def eventually(check: Callable[[], Awaitable[bool]], deadline_s: float = 10.0) -> None:
    """Poll ``check`` until it holds; fail after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {deadline_s}s")
        await asyncio.sleep(0.02)


async def table(conn: asyncpg.Connection, query: str) -> list[tuple[Any, ...]]:
    """All rows of ``query`` as sorted tuples (to compare tables)."""
    return sorted((tuple(r) for r in await conn.fetch(query)), key=repr)
