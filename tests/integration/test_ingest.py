"""Group-committed ingest: batching, duplicates and conflicts inside a batch, and a bad event that
PostgreSQL refuses never failing the innocent events of its batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from app import events
from app.webhook import payloads
from app.webhook.ingest import Ingestor, Outcome

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
    events = [payloads.to_event(b, T, T) for b in [*bodies[:20], poison, *bodies[20:]]]
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
    first = payloads.to_event(_body("E1"), T, T)
    same = payloads.to_event(_body("E1"), T, T)
    other = payloads.to_event(_body("E1", status="SHIP_READY"), T, T)
    outcomes = await asyncio.gather(*(ingestor.submit(e) for e in (first, same, other)))
    assert outcomes == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.CONFLICT]
    assert await admin.fetchval("SELECT count(*) FROM bunsync.event_log") == 1
    assert await admin.fetchval("SELECT count(*) FROM bunsync.webhook_conflicts") == 1
    # ... and the same again in a later batch: nothing new but one more conflict record.
    again = await asyncio.gather(*(ingestor.submit(e) for e in (same, other)))
    assert again == [Outcome.DUPLICATE, Outcome.CONFLICT]
    assert await admin.fetchval("SELECT count(*) FROM bunsync.webhook_conflicts") == 2


async def test_bodies_that_decode_badly_are_stored_verbatim(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    ingestor = Ingestor(pool, max_writers=1)
    nested = b"[" * 10_000 + b"]" * 10_000
    bodies = [
        _body("U1").replace(b'"data"', b'"note":"\xff\xfe","data"'),  # invalid UTF-8, unknown field
        _body("U2").replace(b'"data"', b'"deep":' + nested + b',"data"'),  # 10,000 levels deep
        _body("U3").replace(b'"U3"', b'"U\\u00003"'),  # NUL in the eventId
        _body("U4").replace(b'"PAYMENT_RECEIVED"', b'"PAID\\u0000"'),  # NUL that jsonb refuses
    ]
    outcomes = await asyncio.gather(*(ingestor.submit(payloads.to_event(b, T, T)) for b in bodies))
    await ingestor.drain()
    assert outcomes == [Outcome.UNRECOGNIZED] * 4
    rows = await admin.fetch("SELECT type, raw FROM bunsync.event_log ORDER BY position")
    assert sorted(bytes(r["raw"]) for r in rows) == sorted(bodies)
    assert {r["type"] for r in rows} == {events.WEBHOOK_UNRECOGNIZED}
