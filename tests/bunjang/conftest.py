"""Fixtures for the Bunjang client tests: a sandbox served in-process over real HTTP, and clients for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from app.bunjang.client import BunjangClient
from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, SandboxConfig
from app.sandbox.server import RunningSandbox, run_sandbox

T0 = datetime(2026, 1, 1, tzinfo=UTC)

StartSandbox = Callable[..., Awaitable[RunningSandbox]]
MakeClient = Callable[..., Awaitable[BunjangClient]]


@pytest.fixture
async def start_sandbox() -> AsyncIterator[StartSandbox]:
    """Start sandboxes on ephemeral ports (frozen clock at ``T0`` unless overridden); stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> RunningSandbox:
            settings: dict[str, Any] = {"port": 0, "start_time": T0, "clock_speed": 0.0, **overrides}
            return await stack.enter_async_context(run_sandbox(SandboxConfig(**settings)))

        yield start


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Clients with the sandbox's credentials and fast backoff (overridable); closed at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(url: str, **overrides: Any) -> BunjangClient:
            settings: dict[str, Any] = {
                "access_key": DEFAULT_ACCESS_KEY,
                "secret_key": DEFAULT_SECRET_KEY,
                "backoff_base_s": 0.01,
                "max_backoff_s": 5.0,
                "timeout_s": 5.0,
                **overrides,
            }
            access_key = settings.pop("access_key")
            secret_key = settings.pop("secret_key")
            return await stack.enter_async_context(BunjangClient(url, access_key, secret_key, **settings))

        yield make
