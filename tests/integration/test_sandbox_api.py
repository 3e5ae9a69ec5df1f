"""The sandbox's REST API and admin endpoints over real HTTP, as BUNJANG_API.md documents them."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from app.sandbox.auth import check_token
from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from app.sandbox.server import RunningSandbox

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = base64.b64decode(DEFAULT_SECRET_KEY)


def token(claims: dict[str, Any] | None = None, key: bytes = KEY, **extra: Any) -> str:
    base = {"accessKey": DEFAULT_ACCESS_KEY, "iat": int(time.time()), "nonce": "n"}
    return jwt.encode({**(base if claims is None else claims), **extra}, key, algorithm="HS256")


def auth(**extra: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**extra)}"}


@pytest.fixture
async def running(start_sandbox: Any) -> RunningSandbox:
    sandbox: RunningSandbox = await start_sandbox(initial_orders=3, seed=5)
    return sandbox


@pytest.fixture
async def http(running: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url) as client:
        yield client


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "MISSING_AUTH_TOKEN"),
        ("Basic abc", "MISSING_AUTH_TOKEN"),
        ("Bearer not-a-jwt", "INVALID_AUTH_TOKEN"),
        (f"Bearer {token({'iat': int(time.time())})}", "MISSING_ACCESS_KEY"),
        (f"Bearer {token(accessKey='other')}", "INVALID_ACCESS_KEY"),
        (f"Bearer {token(key=b'another-secret-another-secret-32')}", "INVALID_AUTH_TOKEN"),
        (f"Bearer {token({'accessKey': DEFAULT_ACCESS_KEY})}", "MISSING_IAT_CLAIM"),
        (f"Bearer {token(iat='yesterday')}", "INVALID_AUTH_TOKEN"),
        ("Bearer " + jwt.encode({"accessKey": DEFAULT_ACCESS_KEY, "iat": 1}, None, algorithm="none"), None),
    ],
)
def test_token_checks_answer_the_documented_codes(header: str | None, code: str | None) -> None:
    rejection = check_token(header, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, now=time.time(), validity_s=30)
    assert rejection is not None
    if code is not None:
        assert rejection.error_code == code
    else:  # an unsigned token never passes, whatever it says first
        assert rejection.error_code in {"INVALID_AUTH_TOKEN", "EXPIRED_AUTH_TOKEN"}


def test_a_token_is_valid_for_30_seconds_from_iat() -> None:
    now = time.time()
    fresh = f"Bearer {token(iat=int(now) - 29)}"
    stale = f"Bearer {token(iat=int(now) - 31)}"
    future = f"Bearer {token(iat=int(now) + 120)}"
    assert check_token(fresh, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, now, 30) is None
    assert (
        check_token(stale, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, now, 30).error_code == "EXPIRED_AUTH_TOKEN"
    )  # type: ignore[union-attr]
    assert (
        check_token(future, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, now, 30).error_code
        == "INVALID_AUTH_TOKEN"
    )  # type: ignore[union-attr]


async def test_401_over_http_has_the_error_body(http: httpx.AsyncClient, running: RunningSandbox) -> None:
    response = await http.get("/api/v1/orders/100001", headers=auth(iat=int(time.time()) - 60))
    assert response.status_code == 401
    assert response.json() == {"errorCode": "EXPIRED_AUTH_TOKEN", "reason": response.json()["reason"]}
    assert running.sandbox.counters_snapshot().api == {"get_order": {"401": 1}}


async def test_get_order_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/orders/100001", headers=auth())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()["data"]
    assert set(data) == {"order", "seller", "delivery"}  # no returns yet: the optional key is absent
    order = data["order"]
    assert set(order) == {
        "id",
        "totalPrice",
        "totalProductPrice",
        "deliveryPrice",
        "orderDoneAt",
        "approvedAt",
        "orderItems",
    }
    assert order["approvedAt"] is None and order["orderDoneAt"].endswith("Z")
    for item in order["orderItems"]:
        assert set(item) == {
            "id",
            "status",
            "product",
            "purchaseConfirmedAt",
            "refundedAt",
            "statusUpdatedAt",
            "shippingFeeIncluded",
            "returnRequestId",
        }
        assert set(item["product"]) == {"id", "name", "price"}
        assert item["status"] == "PAYMENT_RECEIVED"
    assert set(data["seller"]) == {"id", "shopName"}
    assert data["delivery"]["invoice"] is None
    assert set(data["delivery"]["address"]) == {"name", "phone", "address1", "address2", "zipCode"}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [("/api/v1/orders/abc", 400, "BAD_REQUEST"), ("/api/v1/orders/999", 404, "RESOURCE_NOT_FOUND")],
)
async def test_get_order_errors(http: httpx.AsyncClient, path: str, status: int, code: str) -> None:
    response = await http.get(path, headers=auth())
    assert response.status_code == status
    assert response.json()["errorCode"] == code


def window(start: datetime, end: datetime, **extra: str) -> dict[str, str]:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {"statusUpdateStartDate": start.strftime(fmt), "statusUpdateEndDate": end.strftime(fmt), **extra}


@pytest.mark.parametrize(
    "params",
    [
        window(T0, T0 + timedelta(days=15, seconds=1)),
        window(T0 + timedelta(seconds=1), T0),
        window(T0, T0 + timedelta(days=1), size="101"),
        window(T0, T0 + timedelta(days=1), size="0"),
        window(T0, T0 + timedelta(days=1), page="-1"),
        {"statusUpdateEndDate": "2026-01-02T00:00:00Z"},
        {"statusUpdateStartDate": "2026-01-01T00:00:00", "statusUpdateEndDate": "2026-01-02T00:00:00"},
        {"statusUpdateStartDate": "yesterday", "statusUpdateEndDate": "2026-01-02T00:00:00Z"},
    ],
)
async def test_list_orders_limits_are_rejected_with_400(
    http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await http.get("/api/v1/orders", params=params, headers=auth())
    assert response.status_code == 400
    assert response.json()["errorCode"] == "BAD_REQUEST" and response.json()["reason"]


async def test_list_orders_pages_are_zero_based(http: httpx.AsyncClient, running: RunningSandbox) -> None:
    running.sandbox.create_orders(2)  # 5 orders, all stamped at T0 + a few ms
    pages = []
    for page in range(4):
        response = await http.get(
            "/api/v1/orders",
            params=window(T0, T0 + timedelta(days=15), page=str(page), size="2"),
            headers=auth(),
        )
        assert response.status_code == 200
        pages.append(response.json())
    assert [p["totalPages"] for p in pages] == [3, 3, 3, 3]
    assert [p["totalElements"] for p in pages] == [5, 5, 5, 5]
    assert [[o["id"] for o in p["data"]] for p in pages] == [[100001, 100002], [100003, 100004], [100005], []]
    item = pages[0]["data"][0]["orderItems"][0]
    assert {"id", "status", "statusUpdatedAt", "product"} <= set(item) and "id" in item["product"]


async def test_list_orders_bounds_are_inclusive(http: httpx.AsyncClient, running: RunningSandbox) -> None:
    running.sandbox.advance_clock(60)
    running.sandbox.create_orders(1)  # stamped at exactly T0 + 60 s
    at = T0 + timedelta(seconds=60)
    for params in (window(at, at + timedelta(days=1)), window(at - timedelta(seconds=1), at)):
        response = await http.get("/api/v1/orders", params=params, headers=auth())
        assert [o["id"] for o in response.json()["data"]] == [100004]


async def test_admin_endpoints(http: httpx.AsyncClient, running: RunningSandbox) -> None:
    created = await http.post("/_sandbox/orders", json={"count": 2, "items": 3})
    assert created.status_code == 201
    changes = created.json()["changes"]
    assert [len(c["orderItems"]) for c in changes] == [3, 3]
    order_id = changes[0]["orderId"]
    item_id = changes[0]["orderItems"][0]["orderItemId"]

    moved = await http.post(
        f"/_sandbox/orders/{order_id}/advance", json={"itemId": item_id, "to": "SHIP_READY"}
    )
    assert moved.json()["changes"][0]["orderItems"][0]["status"] == "SHIP_READY"
    refused = await http.post(
        f"/_sandbox/orders/{order_id}/advance", json={"itemId": item_id, "to": "REFUNDING"}
    )
    assert refused.status_code == 409 and refused.json()["errorCode"] == "CONFLICT"
    whole = await http.post(f"/_sandbox/orders/{order_id}/advance")
    assert len(whole.json()["changes"][0]["orderItems"]) == 3
    assert (await http.post("/_sandbox/orders/1/advance")).status_code == 404
    steps = await http.post("/_sandbox/advance", json={"steps": 7})
    assert len(steps.json()["changes"]) == 7

    clock = await http.post("/_sandbox/clock", json={"advanceSeconds": 86400})
    assert clock.json() == {"now": "2026-01-02T00:00:00Z", "speed": 0.0}

    faults = await http.patch("/_sandbox/faults", json={"webhookDropRate": 0.5, "notFoundOrders": [order_id]})
    assert faults.json()["webhookDropRate"] == 0.5 and faults.json()["notFoundOrders"] == [order_id]
    assert (await http.get(f"/api/v1/orders/{order_id}", headers=auth())).status_code == 404
    for bad in ({"webhookDropRate": 2}, {"noSuchKnob": 1}, {"apiScript": ["418"]}):
        response = await http.patch("/_sandbox/faults", json=bad)
        assert response.status_code == 400 and response.json()["errorCode"] == "BAD_REQUEST"
    assert (await http.get("/_sandbox/faults")).json()["webhookDropRate"] == 0.5  # unchanged by bad updates

    truth = (await http.get("/_sandbox/truth")).json()
    world_items = [(o.id, i.id, i.status) for o in running.sandbox.world.orders() for i in o.items]
    assert [(t["orderId"], t["orderItemId"], t["status"]) for t in truth["items"]] == world_items
    assert truth["now"] == "2026-01-02T00:00:00Z"

    counters = (await http.get("/_sandbox/counters")).json()
    assert counters["webhooks"]["emitted"] == 3 + 2 + 1 + 1 + 7  # no target: counted, never sent
    assert counters["webhooks"]["sent"] == 0 and counters["webhooks"]["pending"] == 0
    assert counters["api"] == {"get_order": {"404": 1}}
    settle = await http.post("/_sandbox/webhooks/settle", params={"timeout": "1"})
    assert settle.json() == {"settled": True, "pending": 0}


async def test_unknown_routes_answer_in_bunjang_error_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v2/nothing")
    assert response.status_code == 404 and response.json()["errorCode"] == "RESOURCE_NOT_FOUND"
