"""Small asyncio helpers shared by the background loops (fetch workers, projectors)."""

from __future__ import annotations

import asyncio


async def wait_any(events: list[asyncio.Event], timeout_s: float) -> None:
    """Sleep until any of ``events`` is set, or ``timeout_s`` passed: how a loop idles yet stops at once."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
