"""Unit tests of the client's pure parts: tokens, Retry-After, backoff, response decoding."""

from __future__ import annotations

import base64
import random
import uuid
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import msgspec
import pytest

from app.bunjang.auth import TokenMinter, decode_secret_key
from app.bunjang.errors import NotFound, ServerError
from app.bunjang.retry import RetryPolicy, backoff_delay, parse_retry_after, with_retries
from app.bunjang.types import GetOrderResponse, ListOrdersPage

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_token_is_hs256_with_the_base64_decoded_secret_and_documented_claims() -> None:
    minter = TokenMinter("my-access", SECRET, clock=lambda: 1_735_648_123.9)
    token = minter.mint()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, b"0123456789abcdef0123456789abcdef", algorithms=["HS256"])
    assert claims["accessKey"] == "my-access"
    assert claims["iat"] == 1_735_648_123
    assert uuid.UUID(claims["nonce"]).version == 4


def test_every_token_is_fresh() -> None:
    minter = TokenMinter("my-access", SECRET)
    assert minter.mint() != minter.mint()


def test_secret_never_appears_in_repr() -> None:
    assert SECRET not in repr(TokenMinter("my-access", SECRET))


def test_short_secret_keys_sign_without_a_warning_per_request() -> None:
    minter = TokenMinter("k", base64.b64encode(b"short").decode())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = minter.mint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        assert jwt.decode(token, b"short", algorithms=["HS256"])["accessKey"] == "k"


@pytest.mark.parametrize("bad", ["", "   ", "not base64!", "abc"])
def test_bad_secret_keys_are_refused_clearly(bad: str) -> None:
    with pytest.raises(ValueError, match="secret key"):
        decode_secret_key(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
    ],
)
def test_retry_after_seconds_and_http_dates(value: str | None, expected: float | None) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now) == expected


def test_backoff_is_exponential_jittered_and_capped() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)]:
        for _ in range(50):
            delay = backoff_delay(attempt, 0.5, 30.0, rng)
            assert ceiling / 2 <= delay <= ceiling


async def test_retries_transient_errors_up_to_the_attempts_then_raises_the_last() -> None:
    calls: list[int] = []
    waits: list[tuple[int, float]] = []

    async def failing() -> int:
        calls.append(len(calls) + 1)
        raise ServerError(f"attempt {len(calls)}", status=503)

    with pytest.raises(ServerError, match="attempt 3"):
        await with_retries(
            failing, RetryPolicy(3, 0.001, 0.01), before_sleep=lambda n, w, e: waits.append((n, w))
        )
    assert calls == [1, 2, 3]
    assert [n for n, _ in waits] == [1, 2] and all(0.0005 <= w <= 0.002 for _, w in waits)


async def test_a_permanent_error_or_a_long_retry_after_is_raised_at_once() -> None:
    calls = 0

    async def not_found() -> int:
        nonlocal calls
        calls += 1
        raise NotFound("gone", status=404)

    with pytest.raises(NotFound):
        await with_retries(not_found, RetryPolicy(4, 0.001, 0.01))
    assert calls == 1
    policy = RetryPolicy(4, 0.001, 5.0)
    rng = random.Random(1)
    assert policy.wait_after(1, ServerError("busy", retry_after=30.0), rng) is None  # the caller reschedules
    assert policy.wait_after(1, ServerError("busy", retry_after=2.0), rng) == 2.0
    assert policy.wait_after(4, ServerError("busy"), rng) is None


async def test_an_answer_after_retries_is_returned() -> None:
    answers = iter([ServerError("busy"), ServerError("busy"), 7])

    async def flaky() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await with_retries(flaky, RetryPolicy(3, 0.001, 0.01)) == 7


DOC_ORDER = b"""{"data": {
  "order": {"id": 100, "totalPrice": 33000, "totalProductPrice": 30000, "deliveryPrice": 3000,
            "orderDoneAt": "2026-11-01T19:12:00Z", "approvedAt": null, "somethingNew": [1, 2],
            "orderItems": [
              {"id": 1001, "status": "PAYMENT_RECEIVED",
               "product": {"id": 503344, "name": "Switch", "price": 30000},
               "purchaseConfirmedAt": null, "refundedAt": null,
               "statusUpdatedAt": "2026-11-01T19:12:00.123456789Z",
               "shippingFeeIncluded": false, "returnRequestId": null},
              {"id": 1002, "status": "WAITING_REFUND", "statusUpdatedAt": "2026-11-02T04:12:00+09:00"}]},
  "seller": {"id": 7, "shopName": "shop"},
  "delivery": {"invoice": null, "address": {"name": "Kim", "phone": "010-1234-5678", "address1": "Seoul",
               "address2": "1F", "zipCode": "04001"}, "shipDoneAt": null}}}"""


def test_get_order_decodes_nulls_offsets_fractions_and_unknown_values() -> None:
    data = msgspec.json.decode(DOC_ORDER, type=GetOrderResponse).data
    first, second = data.order.order_items
    assert first.status_updated_at == datetime(2026, 11, 1, 19, 12, 0, 123457, tzinfo=UTC)
    assert second.status == "WAITING_REFUND"  # unknown statuses are kept verbatim
    assert second.status_updated_at == datetime(2026, 11, 1, 19, 12, tzinfo=UTC)
    assert second.status_updated_at.utcoffset() == timedelta(hours=9)
    assert second.product is None
    assert data.returns is None
    assert data.delivery is not None and data.delivery.address is not None
    assert data.delivery.address.phone == "010-1234-5678"
    assert "010-1234-5678" not in repr(data)  # buyer data never reaches a log through a repr


def test_naive_times_are_refused_rather_than_guessed() -> None:
    body = b'{"data": {"order": {"id": 1, "orderDoneAt": "2026-11-01T19:12:00"}}}'
    with pytest.raises(msgspec.ValidationError, match="timezone"):
        msgspec.json.decode(body, type=GetOrderResponse)


def test_list_page_requires_total_pages() -> None:
    page = msgspec.json.decode(
        b'{"data": [{"id": 5, "orderItems": [{"id": 6, "status": "SHIP_READY", "product": {"id": 9}}]}],'
        b' "totalPages": 1, "totalElements": 1}',
        type=ListOrdersPage,
    )
    assert page.data[0].order_items[0].product is not None
    with pytest.raises(msgspec.ValidationError, match="totalPages"):
        msgspec.json.decode(b'{"data": []}', type=ListOrdersPage)
