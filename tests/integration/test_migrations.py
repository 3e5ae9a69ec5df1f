"""Migrations on an empty database produce the schema the code expects, and are safe to repeat."""

from __future__ import annotations

import asyncio

from app.store import db, migrations


async def test_migrations_apply_to_an_empty_database(empty_database_url: str) -> None:
    async with db.admin_connection(empty_database_url) as conn:
        assert await migrations.current_version(conn) == 0
        applied = await migrations.migrate(conn)
        assert applied == [m.version for m in migrations.available()]
        assert await migrations.current_version(conn) == migrations.latest_version()
        tables = {
            r["name"]
            for r in await conn.fetch(
                "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
                "WHERE table_schema IN ('bunsync', 'reporting')"
            )
        }
        assert {
            "bunsync.event_log",
            "bunsync.fetch_queue",
            "bunsync.webhook_conflicts",
            "bunsync.schema_migrations",
            "reporting.webhook_events",
        } <= tables
        columns = [
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'reporting' AND table_name = 'webhook_events' ORDER BY ordinal_position"
            )
        ]
        assert columns == [
            "event_id",
            "event_type",
            "payload_version",
            "order_id",
            "recognized",
            "signed_at",
            "received_at",
            "position",
        ]
        assert await migrations.migrate(conn) == []  # a second run applies nothing


async def test_replicas_migrating_together_do_not_race(empty_database_url: str) -> None:
    async def one() -> list[int]:
        async with db.admin_connection(empty_database_url) as conn:
            return await migrations.migrate(conn)

    results = await asyncio.gather(*(one() for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrations.available())]


async def test_reporting_role_reads_the_reporting_schema_and_nothing_else(admin: object) -> None:
    import asyncpg

    assert isinstance(admin, asyncpg.Connection)
    tables = [
        r["t"]
        for r in await admin.fetch(
            "SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE schemaname = 'bunsync'"
        )
    ]
    await admin.execute("SET ROLE bunsync_reporting")
    for view in (
        "webhook_events",
        "order_item_status",
        "order_item_history",
        "sync_health",
        "status_counts",
        "time_in_status",
        "erasures",
    ):
        await admin.fetch(f"SELECT * FROM reporting.{view} LIMIT 1")
    assert "bunsync.event_log" in tables and "bunsync.personal_data" in tables
    for table in tables:
        try:
            await admin.fetch(f"SELECT 1 FROM {table} LIMIT 1")
        except asyncpg.InsufficientPrivilegeError:
            continue
        raise AssertionError(f"bunsync_reporting can read {table}")
