"""Integration fixtures: the sandbox Bunjang served in-process over real HTTP, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from app.bunjang.client import BunjangClient
from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, SandboxConfig
from app.sandbox.server import RunningSandbox, run_sandbox

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """A sandbox with its clock frozen at ``T0`` (only admin calls move it)."""
    async with run_sandbox(SandboxConfig(port=0, start_time=T0, clock_speed=0.0)) as running:
        yield running


@pytest.fixture
async def client(sandbox: RunningSandbox) -> AsyncIterator[BunjangClient]:
    """A client making one attempt per call: the tests exercise bunsync's own persisted retries."""
    async with BunjangClient(
        sandbox.url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, max_attempts=1, timeout_s=2.0
    ) as c:
        yield c
