"""The fast decoding path of item observations reads every payload exactly as the field-by-field
readers do (projections/events.py): same observations, same anomalies, same refusals."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from app.events import ORDER_LISTED, ORDER_OBSERVED
from app.store.event_log import RecordedEvent
from projections import events
from projections.rules import Observation

RECORDED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

_IDS: list[Any] = [7, 2**63, "7", None]
_STATUSES: list[Any] = ["SHIP_READY", None, 3, "x" * 10_001]
_TIMES: list[Any] = [None, "2026-03-01T11:00:00Z", "2026-03-01T11:00:00", "1999-01-01T00:00:00Z", "soon", 5]
_PRODUCTS: list[Any] = [
    None,
    {},
    {"id": 9, "name": "n", "price": 100},
    {"id": "9", "name": 1, "price": 2**64},
    [1],
]


def _item(item_id: Any, status: Any, time: Any, product: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"product": product}
    for key, value in (("id", item_id), ("status", status), ("statusUpdatedAt", time)):
        if value is not None:
            item[key] = value
    return item


def _slow(event: RecordedEvent) -> list[Observation]:
    payload = event.payload_json.encode() if event.payload_json else b""
    if event.type == ORDER_OBSERVED:
        order = events._observed_items.decode(payload).data.order
        return events._api_items(event, order.id, order.order_items or [], "get_order")
    order = events._listed.decode(payload)
    return events._api_items(event, order.id, order.order_items or [], "list_orders")


def _outcome(read: Any, event: RecordedEvent) -> Any:
    try:
        return read(event)
    except msgspec.DecodeError as exc:
        return ("refused", type(exc))


def _event(kind: str, payload: Any) -> RecordedEvent:
    return RecordedEvent(
        position=1,
        tx_id=1,
        stream="s",
        type=kind,
        payload_json=json.dumps(payload),
        source="x",
        signed_at=None,
        received_at=None,
        recorded_at=RECORDED,
    )


@pytest.mark.parametrize("kind", [ORDER_OBSERVED, ORDER_LISTED])
def test_fast_path_reads_every_item_as_the_field_by_field_readers(kind: str) -> None:
    for item_id, status, time, product in itertools.product(_IDS, _STATUSES, _TIMES, _PRODUCTS):
        order = {
            "id": 1,
            "orderItems": [_item(7, "PAYMENT_RECEIVED", None, None), _item(item_id, status, time, product)],
        }
        event = _event(kind, {"data": {"order": order}} if kind == ORDER_OBSERVED else order)
        assert _outcome(events.observations, event) == _outcome(_slow, event), (
            item_id,
            status,
            time,
            product,
        )


@pytest.mark.parametrize("kind", [ORDER_OBSERVED, ORDER_LISTED])
def test_fast_path_reads_odd_orders_as_the_field_by_field_readers(kind: str) -> None:
    for order in ({"id": 1}, {"id": 1, "orderItems": None}, {"id": 1, "orderItems": []}, {"id": "1"}, {}, []):
        event = _event(kind, {"data": {"order": order}} if kind == ORDER_OBSERVED else order)
        assert _outcome(events.observations, event) == _outcome(_slow, event), order
