"""The forwarder's health for ``/status``, ``bunsync status``, metrics and the console: its state,
cursor, lag (changes not yet acknowledged, and the age of the oldest) and last error."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.store.db import Connection
from app.store.sqlfiles import queries

_Q = queries("feed")
#: ``bunsync status`` is degraded when the oldest change not yet delivered is older than this.
LAG_WARN_S = 300.0


class Forwarding(msgspec.Struct, frozen=True):
    """The change feed's forwarder, as the database records it (``url`` None: never turned on)."""

    feed_head: int
    delivered_through: int
    lag_changes: int
    lag_seconds: float | None
    state: str
    url: str | None
    holder: str | None
    attempts: int
    last_error: str | None
    last_error_at: datetime | None
    last_delivered_at: datetime | None


async def read(conn: Connection) -> Forwarding:
    """The forwarder's row and the feed's head (in the caller's snapshot)."""
    row = await conn.fetchrow(_Q["forwarder_state"])
    head = await conn.fetchrow(_Q["head"])
    if row is None or head is None:
        raise RuntimeError("bunsync.feed_forwarder has no row: run bunsync migrate")
    return Forwarding(
        feed_head=int(head["last_position"]),
        delivered_through=int(row["delivered_through"]),
        lag_changes=int(row["lag_changes"]),
        lag_seconds=row["lag_seconds"],
        state=row["state"],
        url=_shown(row["url"]),
        holder=row["holder"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
        last_delivered_at=row["last_delivered_at"],
    )


def _shown(url: str | None) -> str | None:
    from app.feed.forwarder import describe  # only when there is a URL

    return describe(url) if url else None


def reasons(f: Forwarding, *, lag_warn_s: float = LAG_WARN_S) -> list[str]:
    """Why the forwarder degrades the verdict: paused by a 410, or lagging past ``lag_warn_s``."""
    if f.url is None:
        return []
    if f.state == "paused":
        return [
            f"change-feed forwarding is paused: {f.url} answered 410 Gone; set BUNSYNC_FORWARD_URL to "
            "the partner's new endpoint and restart `bunsync serve` (it resumes where it stopped)"
        ]
    if f.lag_seconds is not None and f.lag_seconds > lag_warn_s:
        error = f", last error: {f.last_error}" if f.last_error else ""
        return [
            f"change-feed forwarding is {f.lag_changes} changes / {f.lag_seconds:.0f} s behind "
            f"(limit {lag_warn_s:g} s{error}): check the partner's endpoint {f.url}"
        ]
    return []


def line(f: Forwarding) -> str:
    """One line for the text summary."""
    if f.url is None:
        return f"off (feed at {f.feed_head})"
    lag = f"{f.lag_changes} behind" + (f", oldest {f.lag_seconds:.0f} s" if f.lag_seconds is not None else "")
    error = f"; last error {f.last_error}" if f.last_error and f.state == "retrying" else ""
    return f"{f.state} to {f.url}: delivered {f.delivered_through}/{f.feed_head}, {lag}{error}"
