"""Classifying a verified delivery: recognised (fetch its order) or kept verbatim as unrecognised."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app import webhooks

T = datetime(2026, 11, 1, tzinfo=UTC)
V1 = (
    b'{"eventId":"E1","eventType":"order.status.changed","payloadVersion":"v1",'
    b'"data":{"orderId":100,"orderItems":[{"orderItemId":1001,"pid":503344,"orderStatus":"PAYMENT_RECEIVED"}]}}'
)


def test_known_event_is_recognised_and_fetches_its_order() -> None:
    e = webhooks.to_event(V1, T, T)
    assert e.type == webhooks.TYPE_STATUS_CHANGED_V1
    assert (e.stream, e.fetch_order_id, e.idempotency_key) == ("order-100", 100, "webhook:E1")
    assert e.raw == V1 and e.payload_json == V1.decode()


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (V1.replace(b'"v1"', b'"v2"'), "webhook:E1"),
        (V1.replace(b"order.status.changed", b"order.created"), "webhook:E1"),
        (V1.replace(b'"orderId":100', b'"orderId":"100"'), "webhook:E1"),
        (V1.replace(b'"orderId":100', b'"orderId":99999999999999999999'), "webhook:E1"),
        (b'{"eventType":"order.status.changed"}', None),
        (b"[1, 2]", None),
        (b"not json at all", None),
        (b"\xff\xfe", None),
    ],
)
def test_anything_else_is_unrecognised_never_fetched(body: bytes, key: str | None) -> None:
    e = webhooks.to_event(body, T, T)
    assert e.type == webhooks.TYPE_UNRECOGNIZED
    assert e.fetch_order_id is None
    assert e.raw == body
    if key:
        assert e.idempotency_key == key
    else:
        assert e.idempotency_key.startswith("webhook-body:")
