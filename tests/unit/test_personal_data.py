"""The split of a Get Order answer into order facts (for the log) and buyer personal data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.privacy import personal_data
from app.privacy.personal_data import MARKER, Unsplittable, found_in, split

ADDRESS = {
    "name": "김민준",
    "phone": "010-2345-6789",
    "address1": "서울특별시 마포구 월드컵로 12",
    "address2": "3층 301호",
    "zipCode": "04001",
}
RETURN_ADDRESS = {
    "name": "이서연",
    "phone": "010-9876-5432",
    "address1": "부산광역시 해운대구 센텀로 5",
    "address2": None,
    "zipCode": "48058",
    "building": {"floor": 7, "note": "경비실"},
}


def answer() -> dict[str, Any]:
    return {
        "data": {
            "order": {
                "id": 1,
                "totalPrice": 12000,
                "rate": 1.10,
                "big": 123456789012345678901234567890,
                "orderItems": [{"id": 5, "status": "SHIP_READY", "product": {"name": "Nike address"}}],
            },
            "seller": {"id": 9, "shopName": "shop"},
            "delivery": {"invoice": {"no": "123"}, "address": ADDRESS, "shipDoneAt": None},
            "returns": [
                {"id": 70, "invoice": {"no": "9"}, "address": RETURN_ADDRESS},
                {"id": 71, "invoice": None, "address": None},
            ],
            "futureField": {"pickupAddress": "대전광역시 유성구 대학로 99"},
        }
    }


def test_every_personal_field_is_taken_out_and_kept_apart() -> None:
    cut = split(json.dumps(answer(), ensure_ascii=False).encode())

    assert cut.personal == {
        "/data/delivery/address": ADDRESS,
        "/data/returns/0/address": RETURN_ADDRESS,
        "/data/futureField/pickupAddress": "대전광역시 유성구 대학로 99",
    }
    facts = json.loads(cut.facts_json)
    assert facts["data"]["delivery"]["address"] == {k: MARKER for k in ADDRESS}
    masked_return = facts["data"]["returns"][0]["address"]
    assert masked_return == {
        "name": MARKER,
        "phone": MARKER,
        "address1": MARKER,
        "address2": None,
        "zipCode": MARKER,
        "building": {"floor": MARKER, "note": MARKER},
    }
    assert facts["data"]["futureField"]["pickupAddress"] == MARKER
    values = [v for v in personal_data.leaves(cut.personal) if len(v.encode()) > 3]  # "7" is in any JSON
    assert len(values) == 11
    assert found_in(cut.facts_json.encode(), values) == {}  # no personal value left, in any form


def test_nothing_else_is_touched() -> None:
    original = answer()
    cut = split(json.dumps(original).encode().replace(b'"rate": 1.1,', b'"rate": 1.10,'))
    facts = json.loads(cut.facts_json)
    for doc in (facts, original):
        doc["data"]["delivery"].pop("address")
        doc["data"]["returns"][0].pop("address")
        doc["data"]["futureField"].pop("pickupAddress")
    assert facts == original  # every other key and value, exact (1.10 stays 1.10, the big int exact)
    assert '"rate":1.10' in cut.facts_json and "123456789012345678901234567890" in cut.facts_json
    assert facts["data"]["returns"][1]["address"] is None  # a null holds nothing personal


def test_unknown_fields_under_an_address_are_personal() -> None:
    body = {
        "data": {"delivery": {"address": {"name": "박지훈", "detail": {"gate": "1234#", "codes": [7, "B"]}}}}
    }
    cut = split(json.dumps(body).encode())
    assert cut.personal == {"/data/delivery/address": body["data"]["delivery"]["address"]}
    assert json.loads(cut.facts_json)["data"]["delivery"]["address"] == {
        "name": MARKER,
        "detail": {"gate": MARKER, "codes": [MARKER, MARKER]},
    }


def test_an_answer_without_address_is_logged_as_is() -> None:
    raw = b'{"data": {"order": {"id": 3}}}'
    cut = split(raw)
    assert cut.facts_json == raw.decode() and cut.personal == {} and cut.personal_json is None


def test_deep_nesting_is_walked_without_recursion_or_refused() -> None:
    deep = b'{"data": ' + b'{"a": ' * 500 + b'{"address": {"name": "x"}}' + b"}" * 500 + b"}"
    assert split(deep).personal == {"/data" + "/a" * 500 + "/address": {"name": "x"}}
    too_deep = b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b', "address": {"name": "x"}}'
    with pytest.raises(Unsplittable) as refused:  # never logged as it is
        split(too_deep)
    assert "x" not in str(refused.value)


def test_needles_cover_text_hex_and_json_escapes() -> None:
    value = "김민준"
    dump_text = f"COPY ... {value} ...".encode()
    dump_hex = b"\\x" + value.encode().hex().encode()
    dump_escaped = json.dumps({"n": value}).encode()  # \uae40\ubbfc\uc900
    assert found_in(dump_text, [value]) == {value: ["text"]}
    assert found_in(dump_hex, [value]) == {value: ["hex"]}
    assert found_in(dump_escaped.upper(), [value]) == {value: ["json-escape"]}
    assert found_in(b"nothing here", [value]) == {}


def test_describe_names_fields_never_values() -> None:
    lines = personal_data.describe({"/data/delivery/address": ADDRESS})
    assert lines == ["/data/delivery/address: address1, address2, name, phone, zipCode"]
    assert not any(v in lines[0] for v in ("김민준", "010-2345-6789"))


keys = st.sampled_from(["a", "address", "b", "xAddress"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=20,
)


@given(json_values)
def test_split_never_leaves_a_personal_value_and_round_trips_the_rest(doc: Any) -> None:
    raw = json.dumps({"data": doc}).encode()
    cut = split(raw)
    facts = json.loads(cut.facts_json)
    # Put the personal values back where they were: the original document again.
    for pointer, value in cut.personal.items():
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        node = facts
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    assert facts == {"data": doc}


def test_a_key_spelled_with_json_escapes_is_still_found() -> None:
    raw = b'{"data": {"delivery": {"addr\\u0065ss": {"name": "\\uae40\\ubbfc\\uc218"}}}}'
    result = split(raw)
    assert result.personal == {"/data/delivery/address": {"name": "김민수"}}
    assert "김민수" not in result.facts_json and "\\uae40" not in result.facts_json
