"""The fast decoding path of ``order.observed`` reads every payload exactly as the field-by-field
readers do (projections/order_facts.py): the same facts, the same anomalies in the same order, the
same refusals with the same messages."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from app.events import ORDER_OBSERVED
from app.store.event_log import RecordedEvent
from projections import order_facts

RECORDED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ABSENT = object()  # the key is left out of its object

_INTEGERS: list[Any] = [ABSENT, None, 0, -1, 2000, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**70]
_INTEGERS += ["1", 1.0, 1.5, True, [], {}, "x" * 10_001]
_TEXTS: list[Any] = [ABSENT, None, "", "shop", "한글 상점", "x" * 10_000, "x" * 10_001]
_TEXTS += [5, 1.5, False, [], {"a": 1}]
_TIMES: list[Any] = [ABSENT, None, "2026-03-01T11:00:00Z", "2026-03-01T11:00:00", "2026-03-01T20:00:00+09:00"]
_TIMES += ["2026-03-01T12:04:00Z", "2026-03-02T12:00:00Z", "1999-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
_TIMES += ["9999-12-31T23:30:00-01:00", "0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "soon", "", 5, [], {}]
_ODD_OBJECTS: list[Any] = [ABSENT, None, {}, [], [{}], "x", 1, True, {"nested": {"deep": [[[{}]]]}}]

_ORDER_FIELDS = {
    "totalPrice": _INTEGERS,
    "totalProductPrice": _INTEGERS,
    "deliveryPrice": _INTEGERS,
    "orderDoneAt": _TIMES,
    "approvedAt": _TIMES,
}
_SELLER_FIELDS = {"id": _INTEGERS, "shopName": _TEXTS}
_INVOICE_FIELDS = {"no": _TEXTS, "companyCode": _TEXTS, "companyName": _TEXTS}
_CONTAINERS = (("order", _ORDER_FIELDS), ("seller", _SELLER_FIELDS), ("invoice", _INVOICE_FIELDS))


def _base() -> dict[str, Any]:
    """A well-formed Get Order body, with fields the projection does not read."""
    return {
        "data": {
            "order": {
                "id": 1,
                "totalPrice": 12000,
                "totalProductPrice": 10000,
                "deliveryPrice": 2000,
                "orderDoneAt": "2026-03-01T10:00:00Z",
                "approvedAt": "2026-03-01T10:30:00+09:00",
                "orderItems": [{"id": 7, "status": "SHIP_READY", "product": {"id": 9, "price": None}}],
            },
            "seller": {"id": 5, "shopName": "shop", "extra": [1, {"x": None}]},
            "delivery": {
                "invoice": {"no": "123", "companyCode": "cj", "companyName": "CJ"},
                "shipDoneAt": "2026-03-01T11:00:00",
                "address": "[personal data]",
            },
        },
        "meta": {"requestId": "r"},
    }


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is ABSENT:
        target.pop(key, None)
    else:
        target[key] = value


def _event(payload: str | None) -> RecordedEvent:
    return RecordedEvent(
        position=1,
        tx_id=1,
        stream="s",
        type=ORDER_OBSERVED,
        payload_json=payload,
        source="x",
        signed_at=None,
        received_at=None,
        recorded_at=RECORDED,
    )


def _slow(event: RecordedEvent) -> order_facts.OrderFacts:
    assert event.payload_json is not None
    return order_facts._decode_fields(event, event.payload_json.encode())


def _outcome(read: Any, event: RecordedEvent) -> Any:
    """What a reader makes of an event: the facts (encoded too, so time zones count), or its refusal."""
    try:
        facts = read(event)
    except (msgspec.DecodeError, order_facts.UndecodableEvent) as exc:
        return ("refused", type(exc), str(exc))
    return facts, msgspec.json.encode(facts)


def _same(payload: str) -> bool:
    """Asserts both paths agree on ``payload``; whether the fast path took it on its own."""
    event = _event(payload)
    assert _outcome(order_facts.decode, event) == _outcome(_slow, event), payload[:500]
    try:
        order_facts._fast_observed.decode(payload.encode())
    except msgspec.DecodeError:
        return False
    return True


def test_fast_path_reads_each_odd_field_as_the_field_by_field_readers() -> None:
    fast = 0
    for container, fields in _CONTAINERS:
        for key, values in fields.items():
            for value in values:
                body = _base()
                data = body["data"]
                target = data["delivery"]["invoice"] if container == "invoice" else data[container]
                _put(target, key, value)
                fast += _same(json.dumps(body))
    assert fast > 20  # the well-formed ones did take the fast path (and implausible times with it)


@pytest.mark.parametrize("key", ["seller", "delivery"])
def test_fast_path_reads_odd_objects_as_the_field_by_field_readers(key: str) -> None:
    for value in _ODD_OBJECTS:
        body = _base()
        _put(body["data"], key, value)
        _same(json.dumps(body))
    for value in _ODD_OBJECTS + _TIMES:
        body = _base()
        _put(body["data"]["delivery"], "invoice" if key == "seller" else "shipDoneAt", value)
        _same(json.dumps(body))


def test_fast_path_refuses_what_the_field_by_field_readers_refuse() -> None:
    ids: list[Any] = [ABSENT, None, 1, 2**63 - 1, 2**63, -(2**63) - 1, "1", 1.0, True, [], {}]
    for order_id in ids:
        body = _base()
        _put(body["data"]["order"], "id", order_id)
        _same(json.dumps(body))
    for order in [*_ODD_OBJECTS, {"id": 1}]:
        body = _base()
        _put(body["data"], "order", order)
        _same(json.dumps(body))
    for data in _ODD_OBJECTS:
        _same(json.dumps({} if data is ABSENT else {"data": data}))
    for raw in ["", "null", "[]", "1", '"x"', "{", '{"data": {"order": {"id": 1}}', "{'data': 1}"]:
        _same(raw)
    _same("\ufeff{}")
    _same('{"data": {"order": {"id": 1, "totalPrice": 1e400}}}')
    _same('{"data": {"order": {"id": 1, "totalPrice": 99999999999999999999999999999999999999}}}')
    assert _outcome(order_facts.decode, _event(None))[:2] == ("refused", order_facts.UndecodableEvent)


def test_fast_path_reads_duplicate_keys_as_the_field_by_field_readers() -> None:
    for first, second in [("1", "2"), ('"x"', "2"), ("2", '"x"'), ("null", "3"), ("3", "null")]:
        _same(f'{{"data": {{"order": {{"id": 1, "totalPrice": {first}, "totalPrice": {second}}}}}}}')
        _same(f'{{"data": {{"order": {{"id": {first}, "id": {second}}}}}}}')
        _same(f'{{"data": {{"order": {{"id": 1}}, "seller": {{"id": {first}, "id": {second}}}}}}}')
        _same(f'{{"data": {{"order": {{"id": 1}}, "seller": {first}, "seller": {{"id": {second}}}}}}}')
        _same(f'{{"data": {{"order": {{"id": {first}}}, "order": {{"id": {second}}}}}}}')
        delivery = f'{{"shipDoneAt": {first}, "shipDoneAt": {second}}}'
        _same(f'{{"data": {{"order": {{"id": 1}}, "delivery": {delivery}}}}}')


def test_fast_path_reads_random_hostile_payloads_as_the_field_by_field_readers() -> None:
    rng = random.Random(14)
    fast = 0
    for _ in range(3000):
        body = _base()
        data = body["data"]
        for container, fields in _CONTAINERS:
            target = data["delivery"]["invoice"] if container == "invoice" else data[container]
            for key, values in fields.items():
                if rng.random() < 0.3:
                    _put(target, key, rng.choice(values))
        _put(data["delivery"], "shipDoneAt", rng.choice(_TIMES))
        for key in ("seller", "delivery"):
            if rng.random() < 0.1:
                _put(data, key, rng.choice(_ODD_OBJECTS))
        fast += _same(json.dumps(body))
    assert 300 < fast < 2700  # both paths were exercised
