"""Shared fixtures: a real PostgreSQL started by pytest-postgresql, and a fresh database per test.

The server runs through ``scripts/pg_ctl_unprivileged`` so the suite also passes as root (CI).
Every test gets its own database, cloned from a template that already has every migration applied,
so commits, several connections and LISTEN/NOTIFY behave as in production.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from app.store import db, migrations, roles

ROOT = Path(__file__).resolve().parent.parent


def _migrate_template(
    host: str, port: int, user: str, dbname: str, password: str | None, **_: object
) -> None:
    async def run() -> None:
        async with db.admin_connection(f"postgresql://{user}@{host}:{port}/{dbname}") as conn:
            await migrations.migrate(conn)

    asyncio.run(run())


postgresql_proc = factories.postgresql_proc(
    executable=str(ROOT / "scripts" / "pg_ctl_unprivileged"),
    host="127.0.0.1",
    port=None,
    dbname="bunsync",
    load=[_migrate_template],
    postgres_options="-c fsync=off -c max_connections=200",
)

_counter = itertools.count()


def _dsn(proc: PostgreSQLExecutor, dbname: str) -> str:
    return f"postgresql://{proc.user}@{proc.host}:{proc.port}/{dbname}"


@pytest.fixture
def database_url(postgresql_proc: PostgreSQLExecutor) -> Iterator[str]:
    """DSN of a fresh, fully migrated database for this test (dropped afterwards)."""
    name = f"test_{os.getpid()}_{next(_counter)}"
    with DatabaseJanitor(
        user=postgresql_proc.user,
        host=postgresql_proc.host,
        port=postgresql_proc.port,
        dbname=name,
        template_dbname=postgresql_proc.template_dbname,
    ):
        yield _dsn(postgresql_proc, name)


@pytest.fixture
def empty_database_url(postgresql_proc: PostgreSQLExecutor) -> Iterator[str]:
    """DSN of a fresh database with nothing in it (for migration tests)."""
    name = f"empty_{os.getpid()}_{next(_counter)}"
    with DatabaseJanitor(
        user=postgresql_proc.user,
        host=postgresql_proc.host,
        port=postgresql_proc.port,
        dbname=name,
    ):
        yield _dsn(postgresql_proc, name)


@pytest.fixture
async def service_url(database_url: str) -> str:
    """The DSN the service's sessions use on this test's database: ``bunsync_app``, as ``serve`` logs in
    (the test cluster trusts local logins, like the embedded one)."""
    return await roles.service_dsn(database_url, None)


@pytest.fixture
async def pool(service_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A service pool on this test's database, logged in as ``serve``'s pools are (``bunsync_app``)."""
    p = await db.create_pool(service_url, min_size=1, max_size=20)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the database owner (superuser in tests), for inspecting state."""
    async with db.admin_connection(database_url) as conn:
        yield conn
