"""The Bunjang client against the sandbox over real HTTP (uvicorn on 127.0.0.1, ephemeral port)."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import timedelta

import msgspec
import pytest

from app.bunjang import errors
from app.bunjang.windows import split_windows
from app.sandbox import lifecycle
from app.sandbox.faults import FaultSettings
from app.sandbox.server import RunningSandbox, bind, url_of
from tests.fixtures.sandbox import T0, MakeClient, StartSandbox

pytestmark = pytest.mark.timeout(60)


def api_calls(running: RunningSandbox, endpoint: str = "get_order") -> dict[str, int]:
    return running.sandbox.counters_snapshot().api.get(endpoint, {})


async def test_get_order_shapes(start_sandbox: StartSandbox, make_client: MakeClient) -> None:
    running = await start_sandbox()
    sandbox = running.sandbox
    order_id = sandbox.create_orders(1, items=3)[0].order_id
    item_ids = [i.id for i in sandbox.world.get(order_id).items]  # type: ignore[union-attr]
    sandbox.advance_item(order_id, item_ids[0], lifecycle.SHIP_READY)
    sandbox.advance_item(order_id, item_ids[0], lifecycle.IN_TRANSIT)
    sandbox.advance_item(order_id, item_ids[0], lifecycle.RETURN_REQUESTED)
    sandbox.advance_item(order_id, item_ids[0], lifecycle.RETURN_BEFORE_SHIPPING)
    sandbox.advance_item(order_id, item_ids[0], lifecycle.RETURNING)
    sandbox.advance_item(order_id, item_ids[1], lifecycle.REFUNDED)
    client = await make_client(running.url)

    fetched = await client.get_order(order_id)

    detail = fetched.order
    assert detail.order.id == order_id
    assert [i.id for i in detail.order.order_items] == item_ids
    assert [i.status for i in detail.order.order_items] == [
        lifecycle.RETURNING,
        lifecycle.REFUNDED,
        lifecycle.PAYMENT_RECEIVED,
    ]
    truth = {i.id: i for i in sandbox.world.get(order_id).items}  # type: ignore[union-attr]
    for item in detail.order.order_items:
        assert item.status_updated_at == truth[item.id].status_updated_at
        assert item.status_updated_at is not None and item.status_updated_at.tzinfo is not None
        assert item.product is not None and item.product.id == truth[item.id].pid
    assert detail.order.order_items[1].refunded_at is not None
    assert detail.order.order_items[0].return_request_id is not None
    assert detail.order.total_price == detail.order.total_product_price + detail.order.delivery_price  # type: ignore[operator]
    assert detail.seller is not None and detail.seller.shop_name
    assert detail.delivery is not None and detail.delivery.invoice is not None
    assert detail.delivery.address is not None and detail.delivery.address.phone  # present, like the real API
    assert detail.returns is not None and len(detail.returns) == 1
    # raw is the body exactly as sent: it decodes to the same value.
    assert msgspec.json.decode(fetched.raw)["data"]["order"]["id"] == order_id


async def test_list_orders_across_forty_days(start_sandbox: StartSandbox, make_client: MakeClient) -> None:
    running = await start_sandbox(seed=11)
    sandbox = running.sandbox
    for day in range(40):
        if day == 15:
            # An order stamped exactly on the boundary between windows 1 and 2 is listed by both.
            sandbox.advance_clock((T0 + timedelta(days=15) - sandbox.clock.now()).total_seconds())
            sandbox.create_orders(1)
        sandbox.advance_clock((T0 + timedelta(days=day, hours=1) - sandbox.clock.now()).total_seconds())
        sandbox.create_orders(8)
        sandbox.random_steps(40)  # also moves older orders: they then appear in two windows
    client = await make_client(running.url)

    listed = [o async for o in client.list_orders(T0, T0 + timedelta(days=40))]

    windows = split_windows(T0, T0 + timedelta(days=40))
    per_window = [sandbox.world.updated_between(w.start, w.end) for w in windows]
    assert len(windows) == 3
    assert max(len(orders) for orders in per_window) > 100  # several pages of size 100
    assert sum(len(orders) for orders in per_window) > sandbox.world.order_count  # there were duplicates
    assert len(listed) == len({o.id for o in listed})  # ... and they are gone
    assert {o.id for o in listed} == {o.id for o in sandbox.world.orders()}
    expected_pages = sum(max(1, math.ceil(len(orders) / 100)) for orders in per_window)
    assert api_calls(running, "list_orders") == {"200": expected_pages}
    for order in listed:
        truth = {i.id: i for i in sandbox.world.get(order.id).items}  # type: ignore[union-attr]
        for item in order.order_items:
            assert (item.status, item.status_updated_at) == (
                truth[item.id].status,
                truth[item.id].status_updated_at,
            )


async def test_expired_token_is_reminted_once(start_sandbox: StartSandbox, make_client: MakeClient) -> None:
    running = await start_sandbox(initial_orders=1, faults=FaultSettings(api_script=("expired",)))
    client = await make_client(running.url)

    fetched = await client.get_order(100_001)

    assert fetched.order.order.id == 100_001
    assert api_calls(running) == {"200": 1, "401": 1}


async def test_a_token_minted_with_a_stale_clock_is_reminted(
    start_sandbox: StartSandbox, make_client: MakeClient
) -> None:
    running = await start_sandbox(initial_orders=1)
    stamps = iter([time.time() - 120])  # the first token is 2 minutes old, later ones are fresh

    client = await make_client(running.url, clock=lambda: next(stamps, time.time()))
    await client.get_order(100_001)

    assert api_calls(running) == {"200": 1, "401": 1}


async def test_expired_twice_is_a_clock_problem_not_a_retry_loop(
    start_sandbox: StartSandbox, make_client: MakeClient
) -> None:
    running = await start_sandbox(initial_orders=1)
    client = await make_client(running.url, clock=lambda: time.time() - 120)

    with pytest.raises(errors.AuthError) as caught:
        await client.get_order(100_001)

    assert caught.value.error_code == "EXPIRED_AUTH_TOKEN" and caught.value.status == 401
    assert api_calls(running) == {"401": 2}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"secret_key": "d3Jvbmctc2VjcmV0LWtleS0wMTIzNDU2Nzg5YWJjZGVm"}, "INVALID_AUTH_TOKEN"),
        ({"access_key": "someone-else"}, "INVALID_ACCESS_KEY"),
    ],
)
async def test_bad_credentials_are_a_configuration_error_without_retries(
    start_sandbox: StartSandbox, make_client: MakeClient, overrides: dict[str, str], code: str
) -> None:
    running = await start_sandbox(initial_orders=1)
    client = await make_client(running.url, **overrides)

    with pytest.raises(errors.AuthError) as caught:
        await client.get_order(100_001)

    assert isinstance(caught.value, errors.ConfigurationError)
    assert caught.value.error_code == code and code in str(caught.value)
    assert api_calls(running) == {"401": 1}


async def test_5xx_then_success(start_sandbox: StartSandbox, make_client: MakeClient) -> None:
    running = await start_sandbox(initial_orders=1, faults=FaultSettings(api_script=("500", "503")))
    client = await make_client(running.url)

    fetched = await client.get_order(100_001)

    assert fetched.order.order.id == 100_001
    assert api_calls(running) == {"200": 1, "500": 1, "503": 1}


async def test_5xx_forever_gives_up_after_bounded_attempts(
    start_sandbox: StartSandbox, make_client: MakeClient
) -> None:
    running = await start_sandbox(initial_orders=1, faults=FaultSettings(get_order_error_rate=1.0))
    client = await make_client(running.url, max_attempts=3)

    with pytest.raises(errors.ServerError) as caught:
        await client.get_order(100_001)

    assert caught.value.error_code == "INTERNAL_ERROR" and caught.value.status == 500
    assert isinstance(caught.value, errors.TransientError)
    assert api_calls(running) == {"500": 3}


async def test_429_retry_after_is_respected(start_sandbox: StartSandbox, make_client: MakeClient) -> None:
    running = await start_sandbox(initial_orders=1, faults=FaultSettings(api_script=("429:1",)))
    client = await make_client(running.url, backoff_base_s=0.001)

    started = time.monotonic()
    await client.get_order(100_001)
    elapsed = time.monotonic() - started

    assert 1.0 <= elapsed < 2.0  # the 1 ms backoff alone would have retried at once
    assert api_calls(running) == {"200": 1, "429": 1}


async def test_a_retry_after_longer_than_the_backoff_cap_is_left_to_the_caller(
    start_sandbox: StartSandbox, make_client: MakeClient
) -> None:
    running = await start_sandbox(initial_orders=1, faults=FaultSettings(api_script=("429:30",)))
    client = await make_client(running.url, max_backoff_s=2.0)

    started = time.monotonic()
    with pytest.raises(errors.RateLimited) as caught:
        await client.get_order(100_001)

    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 30.0 and caught.value.status == 429
    assert api_calls(running) == {"429": 1}


async def test_404_is_permanent_and_never_retried(
    start_sandbox: StartSandbox, make_client: MakeClient
) -> None:
    running = await start_sandbox(initial_orders=2, faults=FaultSettings(not_found_orders=(100_002,)))
    client = await make_client(running.url)

    with pytest.raises(errors.NotFound) as caught:
        await client.get_order(100_002)
    with pytest.raises(errors.NotFound):
        await client.get_order(999_999)

    assert isinstance(caught.value, errors.PermanentError)
    assert caught.value.error_code == "RESOURCE_NOT_FOUND" and caught.value.status == 404
    assert caught.value.reason
    assert api_calls(running) == {"404": 2}


async def test_a_timeout_is_retried(start_sandbox: StartSandbox, make_client: MakeClient) -> None:
    running = await start_sandbox(initial_orders=1, faults=FaultSettings(api_script=("slow:1",)))
    client = await make_client(running.url, timeout_s=0.3)

    started = time.monotonic()
    fetched = await client.get_order(100_001)

    assert fetched.order.order.id == 100_001
    assert time.monotonic() - started < 1.0


async def test_timeouts_give_up_with_request_timeout(
    start_sandbox: StartSandbox, make_client: MakeClient
) -> None:
    running = await start_sandbox(initial_orders=1, faults=FaultSettings(api_latency_s=0.6))
    client = await make_client(running.url, timeout_s=0.2, max_attempts=2)

    with pytest.raises(errors.RequestTimeout) as caught:
        await client.get_order(100_001)

    assert isinstance(caught.value, errors.TransientError)
    # The server counts each call when its slow answer is finally written: wait for both.
    deadline = time.monotonic() + 5
    while sum(api_calls(running).values()) < 2:
        assert time.monotonic() < deadline, api_calls(running)
        await asyncio.sleep(0.02)
    assert sum(api_calls(running).values()) == 2


async def test_connection_refused_is_a_network_error(make_client: MakeClient) -> None:
    sock = bind("127.0.0.1", 0)
    url = url_of(sock)
    sock.close()  # nothing listens there any more
    client = await make_client(url, max_attempts=2)

    with pytest.raises(errors.NetworkError):
        await client.get_order(1)


async def test_list_orders_window_errors_are_permanent(
    start_sandbox: StartSandbox, make_client: MakeClient
) -> None:
    running = await start_sandbox()
    client = await make_client(running.url)
    too_long = split_windows(T0, T0 + timedelta(days=16), max_span=timedelta(days=16))[0]

    with pytest.raises(errors.BadRequest) as caught:
        await client.list_page(too_long, 0)

    assert caught.value.error_code == "BAD_REQUEST" and caught.value.status == 400
    assert api_calls(running, "list_orders") == {"400": 1}
