"""``GET /feed?after=&limit=&wait=`` on the operator listener: the change feed as JSON.

Answers ``{"changes": [...], "next": CURSOR}``; ``next`` is the last position returned (or ``after``
when nothing is new), to pass as the next ``after``. ``limit`` ≤ 1000 (default 100); ``wait`` ≤ 30 s:
when nothing is new the request is held until a change commits (woken by NOTIFY) or ``wait`` passes.
Bad parameters are 400 problem+json, never a clamp the caller would not notice.
"""

from __future__ import annotations

import asyncpg
import msgspec
from litestar import Response, get
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler

from app.feed.reader import DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_S, FeedRow, FeedWaker, poll


class FeedPage(msgspec.Struct, frozen=True):
    """The answer of ``GET /feed``."""

    changes: list[FeedRow]
    next: int


_encoder = msgspec.json.Encoder()


def _int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationException(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ValidationException(f"{name} must be between {low} and {high}")
    return value


def feed_handler(pool: asyncpg.Pool, waker: FeedWaker | None) -> HTTPRouteHandler:
    """The route handler, bound to the service's pool and the process's feed listener."""

    @get("/feed")
    async def feed(
        after: str | None = None, limit: str | None = None, wait: str | None = None
    ) -> Response[bytes]:
        """Changes after cursor ``after`` (0: from the start)."""
        cursor = _int("after", after, 0, 0, 2**63 - 1)
        count = _int("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)
        wait_s = _int("wait", wait, 0, 0, int(MAX_WAIT_S))
        rows = await poll(pool, waker, cursor, count, float(wait_s))
        page = FeedPage(changes=rows, next=rows[-1].feed_position if rows else cursor)
        return Response(content=_encoder.encode(page), media_type="application/json")

    return feed
