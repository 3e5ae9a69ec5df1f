"""Fixtures for the sandbox tests: sandboxes served in-process, and a webhook receiver that records.

The receiver is a bare ASGI app served by uvicorn on an ephemeral port: it stores every request (arrival
time, headers, body) and answers from a script (a status code, or ``("sleep", s, status)`` to answer
late), repeating the script's last entry once it runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from app.sandbox.config import SandboxConfig
from app.sandbox.server import RunningSandbox, run_sandbox, serve_in_background

T0 = datetime(2026, 1, 1, tzinfo=UTC)

Answer = int | tuple[str, float, int]


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A recording webhook endpoint; ``url`` is set once it is served."""

    answers: Sequence[Answer] = (204,)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        index = len(self.received)
        self.received.append(Received(time.monotonic(), headers, body))
        answer = self.answers[min(index, len(self.answers) - 1)]
        if isinstance(answer, tuple):
            _, seconds, status = answer
            await asyncio.sleep(seconds)
        else:
            status = answer
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


StartSandbox = Callable[..., Awaitable[RunningSandbox]]
StartReceiver = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def start_sandbox() -> AsyncIterator[StartSandbox]:
    """Start sandboxes on ephemeral ports (frozen clock at ``T0`` unless overridden); stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> RunningSandbox:
            settings: dict[str, Any] = {"port": 0, "start_time": T0, "clock_speed": 0.0, **overrides}
            return await stack.enter_async_context(run_sandbox(SandboxConfig(**settings)))

        yield start


@pytest.fixture
async def start_receiver() -> AsyncIterator[StartReceiver]:
    """Start recording webhook receivers; stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(answers: Sequence[Answer] = (204,)) -> Receiver:
            receiver = Receiver(answers)
            running = await stack.enter_async_context(serve_in_background(receiver))
            receiver.url = f"{running.url}/webhooks/bunjang"
            return receiver

        yield start


WaitUntil = Callable[..., Awaitable[None]]


@pytest.fixture
def wait_until() -> WaitUntil:
    """``await wait_until(condition, timeout_s=10)``: poll until ``condition()`` holds, else fail."""

    async def wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout_s} s")
            await asyncio.sleep(0.01)

    return wait
