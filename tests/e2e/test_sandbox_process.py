"""``python -m app.sandbox`` as a separate process, used over HTTP by the real client; and its flags."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.bunjang.client import BunjangClient
from app.bunjang.errors import NotFound
from app.sandbox.cli import config_from_args, configure_parser
from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from app.sandbox.server import bind

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


def sandbox_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "app.sandbox", *flags]


def start(*flags: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(  # the flags are ours, fixed in this file
        sandbox_command(*flags),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_url(process: subprocess.Popen[str], timeout_s: float = 20.0) -> str:
    """The base URL the sandbox logs once it listens (``--port 0`` picks a free port)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := URL.search(line):
            return match.group(0)
    raise AssertionError("sandbox did not report its URL:\n" + "".join(lines))


@pytest.fixture
def sandbox_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = start(
        "--port", "0", "--seed", "3", "--orders", "5", "--clock-speed", "0",
        "--start-time", "2026-01-01T00:00:00+00:00", "--not-found", "100005",
    )  # fmt: skip
    try:
        yield process, read_url(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def test_the_sandbox_process_serves_the_client_and_stops_cleanly(
    sandbox_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = sandbox_process
    async with httpx.AsyncClient(base_url=url) as http:
        # The socket listens before the URL is logged: this waits in the backlog until uvicorn serves.
        truth = (await http.get("/_sandbox/truth")).json()

    start_time = datetime(2026, 1, 1, tzinfo=UTC)
    async with BunjangClient(url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, backoff_base_s=0.01) as client:
        fetched = await client.get_order(100_001)
        listed = [o async for o in client.list_orders(start_time, start_time + timedelta(days=20))]
        with pytest.raises(NotFound):
            await client.get_order(100_005)

    first_items = [t for t in truth["items"] if t["orderId"] == 100_001]
    assert [i.id for i in fetched.order.order.order_items] == [t["orderItemId"] for t in first_items]
    assert sorted(o.id for o in listed) == [100_001, 100_002, 100_003, 100_004, 100_005]

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def test_a_busy_port_is_one_clear_line_and_exit_code_1() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        result = subprocess.run(
            sandbox_command("--port", str(port)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        sock.close()
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_flag_value_is_exit_code_2() -> None:
    result = subprocess.run(
        sandbox_command("--drop-rate", "2"), cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "invalid fault flag" in result.stderr and "Traceback" not in result.stderr


def test_help_documents_every_knob() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    text = parser.format_help()
    for flag in (
        "--host", "--port", "--seed", "--access-key", "--secret-key", "--token-validity",
        "--webhook-url", "--webhook-secret", "--webhook-timeout", "--webhook-retry-base",
        "--webhook-max-retries", "--start-time", "--clock-speed", "--orders", "--create-every",
        "--advance-every", "--max-orders", "--drop-rate", "--duplicate-rate", "--delay", "--reorder-rate",
        "--get-order-error-rate", "--get-order-429-rate", "--retry-after", "--list-orders-error-rate",
        "--latency", "--not-found", "--api-script",
    ):  # fmt: skip
        assert flag in text
    assert all(action.help for action in parser._actions)


def test_flags_become_the_config() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        [
            "--port", "9999", "--seed", "42", "--webhook-url", "http://127.0.0.1:8080/webhooks/bunjang",
            "--clock-speed", "60", "--orders", "10", "--create-every", "30", "--drop-rate", "0.1",
            "--duplicate-rate", "0.2", "--reorder-rate", "0.3", "--delay", "2",
            "--get-order-429-rate", "0.05",
            "--retry-after", "3", "--latency", "0.1", "--not-found", "7", "--not-found", "8",
            "--api-script", "500, 429:2 ,ok", "--start-time", "2026-01-01T09:00:00+09:00",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.port, config.seed, config.clock_speed, config.initial_orders) == (9999, 42, 60.0, 10)
    assert config.webhook_url == "http://127.0.0.1:8080/webhooks/bunjang"
    assert config.start_time == datetime(2026, 1, 1, tzinfo=UTC)
    faults = config.faults
    assert (faults.webhook_drop_rate, faults.webhook_duplicate_rate, faults.webhook_reorder_rate) == (
        0.1,
        0.2,
        0.3,
    )
    assert (faults.webhook_delay_s, faults.get_order_throttle_rate, faults.retry_after_s) == (2.0, 0.05, 3)
    assert faults.not_found_orders == (7, 8) and faults.api_script == ("500", "429:2", "ok")


@pytest.mark.parametrize(
    "flags",
    [["--api-script", "teapot"], ["--start-time", "noon"], ["--secret-key", "%%%"], ["--clock-speed", "-1"]],
)
def test_bad_flags_are_value_errors(flags: list[str]) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    with pytest.raises(ValueError):
        config_from_args(parser.parse_args(flags))
