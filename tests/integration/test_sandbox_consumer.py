"""The sandbox's change-feed consumer (``/_sandbox/consumer``) over real HTTP: it verifies Standard
Webhooks signatures with its secret, fails when told to, and reports what it received in order."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.feed import signing
from app.sandbox.cli import config_from_args, configure_parser
from app.sandbox.config import DEFAULT_CONSUMER_SECRET, SandboxConfig
from app.sandbox.server import RunningSandbox, run_sandbox

pytestmark = pytest.mark.timeout(60)
KEY = signing.parse_secret(DEFAULT_CONSUMER_SECRET)


def delivery(position: int, key: bytes = KEY, stamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"type": "order_item.status_changed", "timestamp": "t", "data": {"feed_position": position}}
    ).encode()
    headers = signing.headers(key, f"bunsync-change-{position}", stamp or int(time.time()), body)
    return body, {**headers, "content-type": "application/json"}


@pytest.fixture
async def http(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        yield client


async def post(http: httpx.AsyncClient, position: int, **kwargs: Any) -> int:
    body, headers = delivery(position, **kwargs)
    return (await http.post("/_sandbox/consumer", content=body, headers=headers)).status_code


async def test_valid_deliveries_are_accepted_and_listed_in_arrival_order(http: httpx.AsyncClient) -> None:
    assert [await post(http, p) for p in (1, 2, 2, 3)] == [204, 204, 204, 204]
    got = (await http.get("/_sandbox/consumer/received")).json()
    assert got["requests"] == got["accepted"] == 4 and got["invalidSignatures"] == 0
    assert [r["webhookId"] for r in got["received"]] == [f"bunsync-change-{p}" for p in (1, 2, 2, 3)]
    assert [r["seq"] for r in got["received"]] == [1, 2, 3, 4]
    assert all(r["signatureValid"] and r["answered"] == 204 for r in got["received"])
    assert got["received"][0]["data"] == {"feed_position": 1}


async def test_a_wrong_key_a_tampered_body_or_a_stale_timestamp_is_refused_and_recorded(
    http: httpx.AsyncClient,
) -> None:
    assert await post(http, 1, key=b"another key of 32 bytes, not it!") == 401
    assert await post(http, 2, stamp=int(time.time()) - 3600) == 401
    body, headers = delivery(3)
    assert (await http.post("/_sandbox/consumer", content=body + b" ", headers=headers)).status_code == 401
    no_sig = {k: v for k, v in headers.items() if k != "webhook-signature"}
    assert (await http.post("/_sandbox/consumer", content=body, headers=no_sig)).status_code == 401
    got = (await http.get("/_sandbox/consumer/received")).json()
    assert got["invalidSignatures"] == 4 and got["accepted"] == 0
    assert [r["signatureValid"] for r in got["received"]] == [False] * 4
    assert (await http.get("/_sandbox/consumer/received", params={"accepted": "true"})).json()[
        "received"
    ] == []


async def test_down_for_a_while_answers_503_then_accepts_again(http: httpx.AsyncClient) -> None:
    answer = await http.patch("/_sandbox/consumer", json={"downForS": 0.5})
    assert answer.status_code == 200 and answer.json()["downForS"] == 0.5
    assert await post(http, 1) == 503
    deadline = time.monotonic() + 10
    while await post(http, 1) == 503:
        assert time.monotonic() < deadline, "still down after 10 s"
    accepted = (await http.get("/_sandbox/consumer/received", params={"accepted": "true"})).json()
    assert [r["webhookId"] for r in accepted["received"]] == ["bunsync-change-1"]
    every = (await http.get("/_sandbox/consumer/received")).json()["received"]
    assert every[0]["answered"] == 503 and every[0]["signatureValid"]


async def test_a_failure_rate_answers_the_chosen_status_and_bad_knobs_are_400(
    http: httpx.AsyncClient,
) -> None:
    await http.patch("/_sandbox/consumer", json={"failRate": 1.0, "failStatus": 502})
    assert await post(http, 1) == 502
    await http.patch("/_sandbox/consumer", json={"failRate": 0.0})
    assert await post(http, 1) == 204
    assert (await http.patch("/_sandbox/consumer", json={"failRate": 2})).status_code == 400
    assert (await http.patch("/_sandbox/consumer", json={"nope": 1})).status_code == 400
    assert (await http.delete("/_sandbox/consumer/received")).status_code == 204
    assert (await http.get("/_sandbox/consumer/received")).json()["requests"] == 0


async def test_hostile_bodies_are_bounded_and_never_crash_it(http: httpx.AsyncClient) -> None:
    huge = b"x" * (300 * 1024)
    headers = signing.headers(KEY, "bunsync-change-1", int(time.time()), huge)
    assert (await http.post("/_sandbox/consumer", content=huge, headers=headers)).status_code == 413
    junk = b"\x00not json"
    headers = signing.headers(KEY, "bunsync-change-2", int(time.time()), junk)
    assert (await http.post("/_sandbox/consumer", content=junk, headers=headers)).status_code == 400
    bad_stamp = {**headers, "webhook-timestamp": "1e99"}
    assert (await http.post("/_sandbox/consumer", content=junk, headers=bad_stamp)).status_code == 401
    assert await post(http, 3) == 204


async def test_a_configured_secret_is_the_one_verified() -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    config = SandboxConfig(port=0, consumer_secret=secret)
    async with run_sandbox(config) as running, httpx.AsyncClient(base_url=running.url) as http:
        assert await post(http, 1) == 401
        assert await post(http, 1, key=signing.parse_secret(secret)) == 204
    with pytest.raises(ValueError, match="whsec_"):
        SandboxConfig(consumer_secret="not-a-secret")


def test_the_consumer_flags_reach_the_config_and_bad_values_are_named() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    config = config_from_args(parser.parse_args([]))
    assert config.consumer_secret == DEFAULT_CONSUMER_SECRET and config.consumer_fail_rate == 0.0
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    config = config_from_args(
        parser.parse_args(["--consumer-secret", secret, "--consumer-fail-rate", "0.25"])
    )
    assert (config.consumer_secret, config.consumer_fail_rate) == (secret, 0.25)
    with pytest.raises(ValueError, match="--consumer-secret"):
        config_from_args(parser.parse_args(["--consumer-secret", "whsec_short"]))
    with pytest.raises(ValueError, match="--consumer-fail-rate"):
        config_from_args(parser.parse_args(["--consumer-fail-rate", "1.5"]))
