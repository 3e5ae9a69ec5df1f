"""Classifying a verified delivery: recognised (fetch its order) or kept verbatim as unrecognised."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import events
from app.webhook import payloads

T = datetime(2026, 11, 1, tzinfo=UTC)
V1 = (
    b'{"eventId":"E1","eventType":"order.status.changed","payloadVersion":"v1",'
    b'"data":{"orderId":100,"orderItems":[{"orderItemId":1001,"pid":503344,"orderStatus":"PAYMENT_RECEIVED"}]}}'
)


def test_known_event_is_recognised_and_fetches_its_order() -> None:
    e = payloads.to_event(V1, T, T)
    assert e.type == events.WEBHOOK_STATUS_CHANGED
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
    e = payloads.to_event(body, T, T)
    assert e.type == events.WEBHOOK_UNRECOGNIZED
    assert e.fetch_order_id is None
    assert e.raw == body
    if key:
        assert e.idempotency_key == key
    else:
        assert e.idempotency_key.startswith("webhook-body:")


# Validly signed bodies that once made the endpoint answer 500 (issue 9, section 4), and their kin.
NESTED = b"[" * 10_000 + b"]" * 10_000
HOSTILE = {
    "invalid UTF-8 in an unknown field": V1.replace(b'"data"', b'"note":"\xff\xfe\xc3","data"'),
    "nested 10,000 levels in an unknown field": V1.replace(b'"data"', b'"deep":' + NESTED + b',"data"'),
    "nested 10,000 levels, nothing else": NESTED,
    "NUL in the eventId": V1.replace(b'"E1"', b'"E\\u00001"'),
    "lone surrogate in the eventId": V1.replace(b'"E1"', b'"\\ud800"'),
    "invalid UTF-8 in the eventId": b'{"eventId":"\xff"}',
    "empty": b"",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_body_that_decodes_badly_is_kept_verbatim_as_unrecognised(body: bytes) -> None:
    e = payloads.to_event(body, T, T)
    assert e.type == events.WEBHOOK_UNRECOGNIZED and e.fetch_order_id is None
    assert e.raw == body
    e.idempotency_key.encode("utf-8")  # storable as text: no lone surrogate
    assert "\x00" not in e.idempotency_key


@given(st.binary(max_size=2000))
def test_no_body_makes_decoding_raise(body: bytes) -> None:
    assert payloads.to_event(body, T, T).raw == body
