"""The group-commit batcher: callers that queue during a call share the next one, a lone caller is
served at once, and a failed call fails only the callers it carried."""

from __future__ import annotations

import asyncio

import pytest

from app.groupcommit import Batcher


async def test_callers_queued_during_a_call_share_the_next_one() -> None:
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            await release.wait()
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(write, max_batch=3, name="test")
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # the writer starts with the lone first caller
    await asyncio.sleep(0)
    others = [asyncio.create_task(batcher.submit(i)) for i in (2, 3, 4, 5)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert await asyncio.gather(*others) == [20, 30, 40, 50]
    assert calls == [[1], [2, 3, 4], [5]]


async def test_a_failed_call_fails_only_its_callers() -> None:
    async def write(items: list[int]) -> list[int]:
        if 2 in items:
            raise ValueError("refused")
        return items

    batcher: Batcher[int, int] = Batcher(write, max_batch=1, name="test")
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError)
    with pytest.raises(ValueError, match="refused"):
        await batcher.submit(2)
    assert await batcher.submit(4) == 4  # the batcher goes on after a failure
