"""Buyer personal data on a real PostgreSQL: kept out of the log, erased by forget and by retention,
nothing left in a whole-database dump, the log still append-only, rebuild unchanged."""

from __future__ import annotations

import random

import asyncpg
import pytest

from app.bunjang.client import BunjangClient
from app.fetcher import Backoff, Fetcher
from app.privacy import erasure, redaction
from app.privacy.dump_scan import data_dump, scan
from app.privacy.personal_data import found_in
from app.sandbox.server import RunningSandbox
from app.sandbox.world import Buyer
from app.scheduler import Jobs
from app.settings import Settings
from app.store import event_log
from app.store.event_log import NewEvent
from projections.rebuild import rebuild
from tests.fixtures.events import project_all, table

VIEWS = [
    "SELECT * FROM reporting.order_item_status",
    "SELECT * FROM reporting.order_item_history",
    "SELECT * FROM bunsync.orders",
    "SELECT * FROM reporting.erasures",
]


def _buyer(tag: str) -> Buyer:
    """Values found nowhere else (so a hit in the dump can only be theirs)."""
    return Buyer(
        name=f"홍길{tag}",
        phone=f"010-77{tag}-4321",
        address1=f"서울특별시 종로구 세종대로 {tag}번길",
        address2=f"광화문{tag}빌딩 12층",
        zip_code=f"Z{tag}-03172",
    )


def _values(b: Buyer) -> list[str]:
    return [b.name, b.phone, b.address1, b.address2, b.zip_code]


def _order(sandbox: RunningSandbox, buyer: Buyer, *, to: str | None = None) -> int:
    order_id = sandbox.sandbox.create_orders(1, items=1)[0].order_id
    order = sandbox.sandbox.world.get(order_id)
    assert order is not None
    order.buyer = buyer
    if to is not None:
        sandbox.sandbox.advance_item(order_id, order.items[0].id, to=to, force=True)
    return order_id


async def _fetch(pool: asyncpg.Pool, client: BunjangClient, *order_ids: int) -> None:
    async with pool.acquire() as conn:
        await event_log.append(
            conn,
            [
                NewEvent(
                    f"order-{o}",
                    "test.webhook",
                    "webhook",
                    f"t:{o}:{random.random()}",
                    "{}",
                    fetch_order_id=o,
                )
                for o in order_ids
            ],
        )
    f = Fetcher(pool, client, concurrency=1, max_attempts=3, worker_id="t", backoff=Backoff(base_s=0.0))
    while (job := await f.claim()) is not None:
        await f.process(job)
    await project_all(pool)


async def test_forget_leaves_no_byte_of_the_values_in_a_dump_and_the_rest_unchanged(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    database_url: str,
    sandbox: RunningSandbox,
    client: BunjangClient,
) -> None:
    gone, kept = _buyer("A1"), _buyer("B2")
    forgotten = _order(sandbox, gone, to="RETURNING")  # a return: returns[].address too
    other = _order(sandbox, kept)
    await _fetch(pool, client, forgotten, other)
    assert await admin.fetchval("SELECT count(*) FROM bunsync.personal_data") == 2
    log_text = await admin.fetchval("SELECT string_agg(payload::text, '') FROM bunsync.event_log")
    assert found_in(log_text.encode(), _values(gone) + _values(kept)) == {}  # never in the log at all
    before = await scan(database_url, _values(gone))
    assert set(before) == set(_values(gone))  # the check is not vacuous: the values were there
    views_before = [await table(admin, q) for q in VIEWS[:2]]

    [outcome] = await erasure.forget(pool, [forgotten], "request")
    assert outcome.state == "erased"
    assert outcome.erased == [
        "/data/delivery/address: address1, address2, name, phone, zipCode",
        "/data/returns/0/address: address1, address2, name, phone, zipCode",
    ]
    await project_all(pool)

    assert await scan(database_url, _values(gone)) == {}  # text, bytea hex, \u escapes: nothing
    assert set(await scan(database_url, _values(kept))) == set(_values(kept))  # the other order untouched
    assert [await table(admin, q) for q in VIEWS[:2]] == views_before  # statuses and history unchanged
    row = await admin.fetchrow(
        "SELECT total_price, personal_data_erased_at, personal_data_erasure_reason FROM bunsync.orders "
        "WHERE order_id = $1",
        forgotten,
    )
    assert row["total_price"] is not None and row["personal_data_erased_at"] is not None
    assert row["personal_data_erasure_reason"] == "request"
    erasures = await admin.fetch("SELECT order_id, reason FROM reporting.erasures")
    assert [tuple(r) for r in erasures] == [(forgotten, "request")]

    # The log is still append-only, for its owner too.
    for statement in ("UPDATE bunsync.event_log SET source = source", "DELETE FROM bunsync.event_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.execute(statement)

    # Rebuild after erasure reproduces the same views.
    live = [await table(admin, q) for q in VIEWS]
    await rebuild(database_url, None)
    assert [await table(admin, q) for q in VIEWS] == live

    # A forgotten order stays forgotten: a new fetch stores nothing personal; forget is idempotent.
    await _fetch(pool, client, forgotten)
    assert (
        await admin.fetchval("SELECT count(*) FROM bunsync.personal_data WHERE order_id = $1", forgotten) == 0
    )
    assert await scan(database_url, _values(gone)) == {}
    again, unknown = await erasure.forget(pool, [forgotten, 999_999_999], "request")
    assert (again.state, again.reason, unknown.state) == ("already", "request", "unknown")


async def test_retention_erases_a_final_order_and_spares_a_live_one(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    database_url: str,
    sandbox: RunningSandbox,
    client: BunjangClient,
) -> None:
    done_buyer, live_buyer = _buyer("C3"), _buyer("D4")
    done = _order(sandbox, done_buyer, to="PURCHASE_CONFIRM")
    live = _order(sandbox, live_buyer, to="IN_TRANSIT")
    await _fetch(pool, client, done, live)
    # The sandbox's clock is frozen at 2026-01-01: the final status is older than 1 day, not 100 years.
    assert await erasure.forget_expired(pool, 36_500) == []
    outcomes = await erasure.forget_expired(pool, 1)
    assert [(o.order_id, o.state, o.reason) for o in outcomes] == [(done, "erased", "retention")]
    dump = await data_dump(database_url)
    assert found_in(dump, _values(done_buyer)) == {}
    assert set(found_in(dump, _values(live_buyer))) == set(_values(live_buyer))
    assert await erasure.forget_expired(pool, 1) == []  # nothing left to do
    assert (
        await admin.fetchval("SELECT reason FROM reporting.erasures WHERE order_id = $1", done) == "retention"
    )


async def test_the_reporting_role_can_read_no_personal_value(
    pool: asyncpg.Pool, admin: asyncpg.Connection, sandbox: RunningSandbox, client: BunjangClient
) -> None:
    buyer = _buyer("E5")
    await _fetch(pool, client, _order(sandbox, buyer))
    tables = [
        r["t"]
        for r in await admin.fetch(
            "SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables "
            "WHERE schemaname LIKE 'bunsync%'"
        )
    ]
    views = [
        r["v"]
        for r in await admin.fetch(
            "SELECT format('reporting.%I', viewname) AS v FROM pg_views WHERE schemaname = 'reporting'"
        )
    ]
    await admin.execute("SET ROLE bunsync_reporting")
    for t in tables:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.fetch(f"SELECT * FROM {t}")
    seen = "".join([repr([tuple(r) for r in await admin.fetch(f"SELECT * FROM {v}")]) for v in views])
    assert "bunsync.personal_data" in tables and "reporting.erasures" in views
    assert found_in(seen.encode(), _values(buyer)) == {}


async def test_redact_log_moves_old_personal_data_out_of_the_log_once(
    pool: asyncpg.Pool, admin: asyncpg.Connection, database_url: str
) -> None:
    old = (
        '{"data": {"order": {"id": 42, "orderItems": []}, "delivery": {"address": {"name": "옛구매자",'
        ' "phone": "010-1111-2222", "zipCode": "Q-9"}}, "returns": [{"address": {"name": "옛반품자"}}]}}'
    )
    async with pool.acquire() as conn:  # as the version before 0007 wrote it
        await event_log.append(
            conn, [NewEvent("order-42", "order.observed", "get_order", "get_order:42:x", old)]
        )
        await event_log.append(
            conn, [NewEvent("order-43", "webhook.x", "webhook", "w:43", '{"address": "n/a"}')]
        )
    values = ["옛구매자", "010-1111-2222", "Q-9", "옛반품자"]

    done = await redaction.redact_log(database_url)

    assert (done.rows, done.orders_kept) == (1, 1)
    log_text = await admin.fetchval("SELECT string_agg(payload::text, '') FROM bunsync.event_log")
    assert found_in(log_text.encode(), values) == {}
    assert '"address": "n/a"' in log_text  # only Get Order observations are rewritten
    held = await admin.fetchval("SELECT fields::text FROM bunsync.personal_data WHERE order_id = 42")
    assert set(found_in(held.encode(), values)) == set(values)
    trigger = "SELECT tgenabled FROM pg_trigger WHERE tgname = 'event_log_append_only'"
    assert await admin.fetchval(trigger) == b"A"  # re-armed as ALWAYS
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await admin.execute("UPDATE bunsync.event_log SET source = source")
    assert await admin.fetchval(
        "SELECT payload FROM bunsync.event_log WHERE type = 'maintenance.log_redacted'"
    )
    assert (await redaction.redact_log(database_url)).rows == 0  # once: nothing left to rewrite


async def test_the_daily_job_runs_on_one_replica_at_a_time(
    pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    database_url: str,
    sandbox: RunningSandbox,
    client: BunjangClient,
) -> None:
    done = _order(sandbox, _buyer("F6"), to="REFUNDED")
    await _fetch(pool, client, done)
    settings = Settings.from_env({"BUNSYNC_DATABASE_URL": database_url, "BUNSYNC_PII_RETENTION_DAYS": "1"})
    jobs = Jobs(pool, database_url, client, settings, None)
    async with erasure.exclusive(database_url) as other_replica_holds_it:
        assert other_replica_holds_it
        assert await jobs.pii_retention() is False  # skipped: another replica holds the lock
        assert await admin.fetchval("SELECT count(*) FROM reporting.erasures") == 0
    assert await jobs.pii_retention() is True
    assert (
        await admin.fetchval("SELECT reason FROM reporting.erasures WHERE order_id = $1", done) == "retention"
    )
