"""``bunsync explain ORDER_ID``: an order's whole story, read from the log, with the reason in words.

:func:`explain` reads every event of the order's stream (``order-<id>``) in one read-only snapshot,
decodes each with the projections' own decoder (:func:`projections.events.observations`) and folds
the observations in the projector's order ``(tx_id, position)`` through :func:`projections.rules.
apply_status`, the projector's own rule; :mod:`app.ops.reasons` puts each step into words. So the
current status, source and ``status_updated_at`` it reports are the view's, recomputed from the log,
and the reason is the rule's, not a second implementation.

Bounded on a hostile log: events are read through a cursor and folded as they come; only the newest
:data:`EVENTS_SHOWN` are kept for display, each payload cut at :data:`PAYLOAD_SHOWN` characters.
Payloads are shown masked: the log holds ``"<personal>"`` markers where buyer data was, and any
address still under a personal key (a row written before migration 0007) is masked here too.
``bunsync.personal_data`` is never read.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from app.events import SOURCE_LIST_ORDERS, order_of_stream, order_stream, webhook_key
from app.ops.reasons import Step, reason, verdict
from app.ops.status import ReconcilePass
from app.privacy.personal_data import MARKER, is_personal_key
from app.store.db import Connection, operation
from app.store.event_log import recorded
from app.store.sqlfiles import queries
from projections.events import observations
from projections.rules import ItemState, Observation, apply_status

_Q = queries("explain")
EVENTS_SHOWN = 500
PAYLOAD_SHOWN = 20_000
_WEBHOOK_KEY = webhook_key("")


class ItemChange(msgspec.Struct, frozen=True):
    """One item's status as one event reports it, and what that did (``outcome`` in words)."""

    order_item_id: int
    status: str
    status_updated_at: datetime | None
    became_current: bool
    outcome: str


class EventEntry(msgspec.Struct, frozen=True):
    """One event of the order, in log order. ``conflicts``: later deliveries of the same eventId with a
    different body (kept in ``bunsync.webhook_conflicts``); ``error``: why the projections cannot read it."""

    position: int
    type: str
    source: str
    recorded_at: datetime
    signed_at: datetime | None
    received_at: datetime | None
    event_id: str | None
    conflicts: int
    items: list[ItemChange]
    error: str | None = None


class Item(msgspec.Struct, frozen=True):
    """An item's current status (equal to ``reporting.order_item_status``) and why."""

    order_item_id: int
    status: str
    source: str
    status_updated_at: datetime | None
    reason: str


class FetchJob(msgspec.Struct, frozen=True):
    """The order's Get Order job: ``state`` is none, pending, leased or dead."""

    state: str
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    enqueued_at: datetime | None = None
    dead_at: datetime | None = None
    dead_reason: str | None = None


class Explanation(msgspec.Struct, frozen=True):
    """The JSON of ``bunsync explain --json`` and ``GET /api/orders/{id}`` (``payloads`` excluded)."""

    order_id: int
    events: list[EventEntry]
    items: list[Item]
    fetch: FetchJob
    reconcile_passes: list[ReconcilePass]
    events_total: int
    events_omitted: int


_encoder = msgspec.json.Encoder()


def encode_json(explanation: Explanation) -> bytes:
    """The spec's JSON shape."""
    return _encoder.encode(explanation)


class _Fold:
    """The projector's fold over one order's observations, remembering each step in words."""

    def __init__(self) -> None:
        self.states: dict[int, ItemState] = {}
        self.steps: dict[int, list[Step]] = {}

    def apply(self, obs: Observation) -> Step:
        before = self.states.get(obs.order_item_id)
        after = apply_status(before, obs)
        step = verdict(before, obs, after)
        if after is not None:
            self.states[obs.order_item_id] = after
        self.steps.setdefault(obs.order_item_id, []).append(step)
        return step

    def items(self) -> list[Item]:
        return [
            Item(
                order_item_id=item_id,
                status=state.status,
                source=state.source,
                status_updated_at=state.status_updated_at,
                reason=reason(state, self.steps[item_id]),
            )
            for item_id, state in sorted(self.states.items())
        ]


def _entry(row: asyncpg.Record, fold: _Fold) -> EventEntry:
    event = recorded(row)
    key: str = row["idempotency_key"]
    error: str | None = None
    changes: list[ItemChange] = []
    try:
        found = observations(event)
    except (msgspec.DecodeError, ValueError) as exc:  # the projector parks this event; so it is skipped
        found, error = [], f"the projections cannot read it (parked): {exc}"
    for obs in found:
        step = fold.apply(obs)
        changes.append(
            ItemChange(
                order_item_id=obs.order_item_id,
                status=obs.status,
                status_updated_at=obs.status_updated_at,
                became_current=step.changed,
                outcome=step.text,
            )
        )
    return EventEntry(
        position=event.position,
        type=event.type,
        source=event.source,
        recorded_at=event.recorded_at,
        signed_at=event.signed_at,
        received_at=event.received_at,
        event_id=key.removeprefix(_WEBHOOK_KEY) if key.startswith(_WEBHOOK_KEY) else None,
        conflicts=0,
        items=changes,
        error=error,
    )


@operation
async def explain(pool: asyncpg.Pool, order_id: int) -> tuple[Explanation, dict[int, str]] | None:
    """The order's explanation and the masked payload of each shown event (position → text), or None
    when the log has never seen the order. Raises ``StorageUnavailable`` when the database is away."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        fold = _Fold()
        shown: deque[tuple[EventEntry, str]] = deque(maxlen=EVENTS_SHOWN)
        total = 0
        # The projector's order, (tx_id, position), sorted by the database; folded as it streams.
        async for row in conn.cursor(_Q["order_events"], order_stream(order_id), prefetch=200):
            total += 1
            shown.append((_entry(row, fold), mask_payload(row["payload"], row["raw_bytes"])))
        if not total:
            return None
        events = await _with_conflicts(conn, sorted((e for e, _ in shown), key=lambda e: e.position))
        listed_at = [e.recorded_at for e in events if e.source == SOURCE_LIST_ORDERS]
        explanation = Explanation(
            order_id=order_id,
            events=events,
            items=fold.items(),
            fetch=await _fetch(conn, order_id),
            reconcile_passes=await _passes(conn, listed_at),
            events_total=total,
            events_omitted=total - len(events),
        )
        return explanation, {e.position: text for e, text in shown}


async def _with_conflicts(conn: Connection, events: list[EventEntry]) -> list[EventEntry]:
    keys = [f"{_WEBHOOK_KEY}{e.event_id}" for e in events if e.event_id is not None]
    if not keys:
        return events
    counts = {r["idempotency_key"]: int(r["conflicts"]) for r in await conn.fetch(_Q["conflicts"], keys)}
    return [
        msgspec.structs.replace(e, conflicts=counts.get(f"{_WEBHOOK_KEY}{e.event_id}", 0))
        if e.event_id is not None
        else e
        for e in events
    ]


async def _fetch(conn: Connection, order_id: int) -> FetchJob:
    row = await conn.fetchrow(_Q["fetch_job"], order_id)
    if row is None:
        return FetchJob(state="none")
    state = "dead" if row["dead_at"] is not None else "leased" if row["leased"] else "pending"
    return FetchJob(
        state=state,
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=None if state == "dead" else row["next_attempt_at"],
        enqueued_at=row["enqueued_at"],
        dead_at=row["dead_at"],
        dead_reason=row["dead_reason"],
    )


async def _passes(conn: Connection, times: list[datetime]) -> list[ReconcilePass]:
    if not times:
        return []
    return [ReconcilePass(**dict(r)) for r in await conn.fetch(_Q["passes_at"], times)]


def mask_payload(payload: str | None, raw_bytes: int | None) -> str:
    """The payload as indented JSON with personal values masked, cut at :data:`PAYLOAD_SHOWN`."""
    if payload is None:
        return f"(not JSON: {raw_bytes or 0} bytes stored verbatim, not shown)"
    try:
        value = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return "(a payload the decoder cannot read; not shown)"
    text = msgspec.json.format(msgspec.json.encode(_mask(value)), indent=2).decode()
    if len(text) > PAYLOAD_SHOWN:
        return text[:PAYLOAD_SHOWN] + f"\n… ({len(text) - PAYLOAD_SHOWN} more characters not shown)"
    return text


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MARKER if is_personal_key(k) and v is not None else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


@operation
async def find_order(pool: asyncpg.Pool, q: str) -> int | None:
    """The order that ``q`` names, as an order id, an order item id or an eventId (tried in that order),
    or None. Index probes only (the console's search box)."""
    if q.isdigit() and len(q) < 19:
        if await pool.fetchval(_Q["order_seen"], order_stream(int(q))):
            return int(q)
        item_order = await pool.fetchval(_Q["order_of_item"], int(q))
        if item_order is not None:
            return int(item_order)
    stream = await pool.fetchval(_Q["order_of_event"], webhook_key(q)) if q else None
    return order_of_stream(stream) if isinstance(stream, str) else None
