"""The pure checks behind issue 9: plausible times, jsonb-safe text, the clock skew, lenient decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from app.bunjang.clock import measure_skew
from app.bunjang.jsonsafe import UnstorableJson, escape_nul, storable_json
from app.bunjang.types import listed_entry
from app.ops.status import ClockReading, HostileInput, OverduePass, _hostile_reasons
from app.reconciler import differences
from app.store.event_log import RecordedEvent
from projections import events, order_facts
from projections.rules import FUTURE_TOLERANCE, plausible_time

RECORDED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "plausible"),
    [
        (RECORDED, True),
        (RECORDED + FUTURE_TOLERANCE, True),
        (RECORDED + FUTURE_TOLERANCE + timedelta(microseconds=1), False),
        (datetime(2000, 1, 1, tzinfo=UTC), True),
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), False),
        (datetime(1999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))), True),  # 2000-01-01 01:00Z
        (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), False),
        (datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))), False),  # year 10000 in UTC
        (datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), False),  # year 0 in UTC
    ],
)
def test_plausible_time_is_judged_against_the_recording_and_never_overflows(
    value: datetime, plausible: bool
) -> None:
    assert plausible_time(value, RECORDED) is plausible


def _observed(body: object, recorded_at: datetime = RECORDED) -> RecordedEvent:
    return RecordedEvent(
        position=7,
        tx_id=1,
        stream="order-1",
        type=events.ORDER_OBSERVED,
        payload_json=json.dumps(body),
        source="get_order",
        signed_at=None,
        received_at=None,
        recorded_at=recorded_at,
    )


def _body(**item: object) -> dict[str, object]:
    entry = {"id": 11, "status": "IN_TRANSIT", "product": {"id": 5, "name": "n", "price": 100}, **item}
    return {"data": {"order": {"id": 1, "orderItems": [entry]}, "seller": {"id": "not a number"}}}


def test_an_implausible_time_keeps_the_status_without_the_time_and_is_an_anomaly() -> None:
    for text in ("9999-12-31T23:59:59Z", "9999-12-31T23:30:00-01:00", "1970-01-01T00:00:00Z"):
        [obs] = events.observations(_observed(_body(statusUpdatedAt=text)))
        assert (obs.status, obs.status_updated_at) == ("IN_TRANSIT", None)
        assert [field for field, _ in obs.anomalies] == ["statusUpdatedAt"]
    [ok] = events.observations(_observed(_body(statusUpdatedAt="2026-11-01T11:00:00Z")))
    assert ok.status_updated_at == datetime(2026, 11, 1, 11, tzinfo=UTC) and not ok.anomalies


def test_one_bad_field_keeps_the_status_and_the_other_fields() -> None:
    [obs] = events.observations(_observed(_body(product={"id": "x", "name": "kept", "price": 2**70})))
    assert (obs.status, obs.product_name, obs.pid, obs.price) == ("IN_TRANSIT", "kept", None, None)
    assert sorted(f for f, _ in obs.anomalies) == ["product.id", "product.price"]
    [obs] = events.observations(_observed(_body(product=[1], statusUpdatedAt="yesterday")))
    assert obs.status == "IN_TRANSIT"
    assert sorted(f for f, _ in obs.anomalies) == ["product", "statusUpdatedAt"]


def test_what_an_observation_cannot_exist_without_still_refuses_it() -> None:
    with pytest.raises(msgspec.ValidationError):
        events.observations(_observed(_body(id=1.5)))
    with pytest.raises(msgspec.ValidationError):
        events.observations(_observed(_body(status=7)))


def test_nul_is_escaped_for_jsonb_and_counted_and_other_bodies_are_kept_byte_for_byte() -> None:
    plain = b'{"a": "b\\\\u0000"}'  # an escaped backslash: the text "b\u0000", nothing to repair
    assert storable_json(plain) == (plain.decode(), 0)
    text, repaired = storable_json(b'{"na\\u0000me": ["x\\u0000y", {"z": "\\u0000"}]}')
    assert repaired == 3
    assert "\x00" not in text
    assert msgspec.json.decode(text) == {"na\\u0000me": ["x\\u0000y", {"z": "\\u0000"}]}
    with pytest.raises(UnstorableJson):
        storable_json(b'{"a": "\xff"}')


def test_escaping_does_not_recurse() -> None:
    deep: object = "\x00"
    for _ in range(50_000):
        deep = [deep]
    _, count = escape_nul(deep)
    assert count == 1


def test_clock_skew_from_the_date_header() -> None:
    date = "Sun, 01 Nov 2026 12:00:00 GMT"
    server = datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()
    assert measure_skew(date, server + 5.4, server + 5.6) == pytest.approx(5.0)
    assert measure_skew(date, server - 3, server - 3) == pytest.approx(-3.5)
    assert measure_skew(None, 0, 0) is None
    assert measure_skew("yesterday", 0, 0) is None


def test_status_warns_about_a_skewed_clock_and_an_overdue_pass() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    fine = HostileInput(clock=ClockReading(reporter="h:1", skew_s=1.5, measured_at=now))
    assert _hostile_reasons(fine) == []
    skewed = HostileInput(clock=ClockReading(reporter="h:1", skew_s=-2.5, measured_at=now))
    assert "2.5 s behind" in _hostile_reasons(skewed)[0]
    overdue = HostileInput(overdue_passes=(OverduePass(id=3, started_at=now, deadline_at=now),))
    assert "reconcile pass 3" in _hostile_reasons(overdue)[0]


def test_a_listed_entry_is_read_leniently_and_an_implausible_time_is_compared_as_absent() -> None:
    raw = msgspec.Raw(
        json.dumps(
            {
                "id": 1,
                "orderItems": [
                    {
                        "id": 11,
                        "status": "A",
                        "statusUpdatedAt": "9999-12-31T23:30:00-01:00",
                        "returnRequestId": "x",
                    },
                    {"id": "bad", "status": "B"},
                    {"id": 12, "status": "C", "statusUpdatedAt": 5, "product": {"price": 2**70}},
                ],
            }
        ).encode()
    )
    order = listed_entry(raw)
    assert order is not None and [(i.id, i.status) for i in order.order_items] == [(11, "A"), (12, "C")]
    assert order.order_items[1].status_updated_at is None  # the projection judges the price
    assert listed_entry(msgspec.Raw(b'{"id": "x"}')) is None
    now = datetime(2026, 11, 1, tzinfo=UTC)
    assert differences([order], {11: ("A", None), 12: ("C", None)}, now) == []


def test_order_facts_read_each_field_on_their_own_and_never_the_address() -> None:
    body = {
        "data": {
            "order": {
                "id": 1,
                "totalPrice": 2**70,
                "deliveryPrice": 2000,
                "orderDoneAt": "9999-12-31T23:59:59Z",
            },
            "seller": {"id": "9", "shopName": "shop"},
            "delivery": {"invoice": None, "shipDoneAt": "2026-11-01T11:00:00", "address": "[personal data]"},
        }
    }
    facts = order_facts.decode(_observed(body))
    assert (facts.order_id, facts.total_price, facts.delivery_price, facts.order_done_at) == (
        1,
        None,
        2000,
        None,
    )
    assert (facts.seller_id, facts.seller_shop_name, facts.invoice_no) == (None, "shop", None)
    assert facts.ship_done_at == datetime(2026, 11, 1, 11, tzinfo=UTC)  # no offset: UTC
    assert sorted(f for f, _ in facts.anomalies) == ["order.orderDoneAt", "order.totalPrice", "seller.id"]
    assert not any("9999" in problem or "2361" in problem for _, problem in facts.anomalies)


@pytest.mark.parametrize("order", [{"id": "1"}, {"id": 2**70}, {}, [1], None])
def test_order_facts_without_a_usable_order_id_refuse_the_event(order: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        order_facts.decode(_observed({"data": {"order": order}}))
