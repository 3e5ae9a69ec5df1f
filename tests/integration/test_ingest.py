"""Group-committed ingest: batching, duplicates and conflicts inside a batch, and a bad event that
PostgreSQL refuses never failing the innocent events of its batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from app import webhooks
from app.ingest import Ingestor, Outcome

T = datetime(2026, 11, 1, tzinfo=UTC)


def _body(event_id: str, status: str = "PAYMENT_RECEIVED") -> bytes:
    return (
        f'{{"eventId":"{event_id}","eventType":"order.status.changed","payloadVersion":"v1",'
        f'"data":{{"orderId":7,"orderItems":[{{"orderItemId":71,"pid":1,"orderStatus":"{status}"}}]}}}}'
    ).encode()


async def test_a_refused_event_does_not_fail_the_others_of_its_batch(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    ingestor = Ingestor(pool, max_writers=1)
    # jsonb refuses \u0000 inside a string although the body is valid JSON that decodes fine.
    poison = _body("BAD", status="SHIP\\u0000READY")
    bodies = [_body(f"OK{i}") for i in range(40)]
    events = [webhooks.to_event(b, T, T) for b in [*bodies[:20], poison, *bodies[20:]]]
    outcomes = await asyncio.gather(*(ingestor.submit(e) for e in events))
    await ingestor.drain()
    assert outcomes.count(Outcome.ACCEPTED) == 40
    assert outcomes[20] is Outcome.UNRECOGNIZED  # kept, as raw bytes only
    stored = await admin.fetchrow(
        "SELECT type, payload, raw FROM bunsync.event_log WHERE idempotency_key = 'webhook:BAD'"
    )
    assert (stored["type"], stored["payload"], bytes(stored["raw"])) == ("webhook.unrecognized", None, poison)
    assert await admin.fetchval("SELECT count(*) FROM bunsync.event_log") == 41


async def test_duplicates_and_conflicts_inside_one_batch(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    ingestor = Ingestor(pool, max_writers=1)
    first = webhooks.to_event(_body("E1"), T, T)
    same = webhooks.to_event(_body("E1"), T, T)
    other = webhooks.to_event(_body("E1", status="SHIP_READY"), T, T)
    outcomes = await asyncio.gather(*(ingestor.submit(e) for e in (first, same, other)))
    assert outcomes == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.CONFLICT]
    assert await admin.fetchval("SELECT count(*) FROM bunsync.event_log") == 1
    assert await admin.fetchval("SELECT count(*) FROM bunsync.webhook_conflicts") == 1
    # ... and the same again in a later batch: nothing new but one more conflict record.
    again = await asyncio.gather(*(ingestor.submit(e) for e in (same, other)))
    assert again == [Outcome.DUPLICATE, Outcome.CONFLICT]
    assert await admin.fetchval("SELECT count(*) FROM bunsync.webhook_conflicts") == 2
