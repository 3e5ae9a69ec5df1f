"""The service's login role is a real boundary: no session of the service can lift the log's protection.

The sessions here log in exactly as ``serve``'s do (``app.store.roles.service_dsn`` on a DSN whose role is
a superuser and owns every table, as in the embedded cluster).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pytest_postgresql.executors import PostgreSQLExecutor

from app import service
from app.store import db, migrations, roles
from app.store.roles import APP_ROLE, RoleError
from tests.fixtures.pg_hba import password_required

_names = itertools.count()

LOG_CHANGES = [
    "UPDATE bunsync.event_log SET type = 'x'",
    "DELETE FROM bunsync.event_log",
    "TRUNCATE bunsync.event_log CASCADE",
    "ALTER TABLE bunsync.event_log DISABLE TRIGGER event_log_append_only",
    "ALTER TABLE bunsync.event_log DISABLE TRIGGER ALL",
    "DROP TRIGGER event_log_append_only ON bunsync.event_log",
    "DROP TABLE bunsync.event_log CASCADE",
    "ALTER TABLE bunsync.event_log OWNER TO bunsync_app",
    "SET session_replication_role = replica",
    "ALTER ROLE bunsync_app SUPERUSER",
    "GRANT bunsync_service TO bunsync_reporting",
    "CREATE TABLE bunsync.mine (x int)",
    "SELECT bunsync.ensure_app_role()",
    "SELECT bunsync.set_app_password('SCRAM-SHA-256$4096:AAAA$AAAA:AAAA')",
]


async def _owner(admin: asyncpg.Connection) -> str:
    return str(
        await admin.fetchval(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'bunsync.event_log'::regclass"
        )
    )


async def test_a_service_session_cannot_become_the_owner_or_a_superuser(
    pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    owner = await _owner(admin)
    superusers = [r["rolname"] for r in await admin.fetch("SELECT rolname FROM pg_roles WHERE rolsuper")]
    assert owner in superusers  # the test cluster is the embedded cluster's shape: owner = superuser
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT session_user") == APP_ROLE
        for role in {owner, *superusers, "pg_write_server_files", "pg_execute_server_program"}:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f'SET ROLE "{role}"')
        # RESET ROLE (and asyncpg's RESET ALL on release) lands on the login role itself.
        await conn.execute("RESET ROLE")
        assert await conn.fetchval("SELECT current_user") == APP_ROLE


@pytest.mark.parametrize("set_role", ["", "SET ROLE bunsync_service", "RESET ROLE"])
async def test_a_service_session_cannot_change_the_log_or_its_protection(
    pool: asyncpg.Pool, admin: asyncpg.Connection, set_role: str
) -> None:
    await admin.execute(
        "INSERT INTO bunsync.event_log (stream, type, source, idempotency_key) "
        "VALUES ('s', 't', 'webhook', 'k')"
    )
    async with pool.acquire() as conn:
        if set_role:
            await conn.execute(set_role)
        for statement in LOG_CHANGES:
            with pytest.raises(asyncpg.PostgresError) as refused:
                await conn.execute(statement)
            # Refused for lack of rights, not by accident (a typo, a missing object).
            assert isinstance(refused.value, asyncpg.InsufficientPrivilegeError), (statement, refused.value)
    assert await admin.fetchval("SELECT count(*) FROM bunsync.event_log WHERE type = 't'") == 1
    assert (
        await admin.fetchval("SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'event_log_append_only'")
        == "A"
    )  # still ENABLE ALWAYS
    assert not await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", APP_ROLE)


async def test_the_login_role_holds_only_the_service_membership(admin: asyncpg.Connection) -> None:
    role = await admin.fetchrow(
        "SELECT rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        "FROM pg_roles WHERE rolname = $1",
        APP_ROLE,
    )
    assert role is not None
    assert dict(role.items()) == {
        "rolcanlogin": True,
        "rolinherit": True,
        "rolsuper": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "rolreplication": False,
        "rolbypassrls": False,
    }
    member_of = await admin.fetch(
        "SELECT pg_get_userbyid(roleid) AS r FROM pg_auth_members WHERE member = $1::regrole", APP_ROLE
    )
    assert [r["r"] for r in member_of] == ["bunsync_service"]


async def test_migrate_is_idempotent_and_puts_the_role_back(
    admin: asyncpg.Connection, empty_database_url: str, database_url: str
) -> None:
    # The role already exists (cluster-wide, from the template): a new database migrates all the same.
    async with db.admin_connection(empty_database_url) as conn:
        assert await migrations.migrate(conn) == [m.version for m in migrations.available()]
        assert await migrations.migrate(conn) == []
    # Someone gave the login role more: a service refuses to start on it, and migrate takes it back.
    await admin.execute("ALTER ROLE bunsync_app CREATEROLE")
    try:
        with pytest.raises(RoleError, match="can create roles"):
            await roles.service_dsn(database_url, None)
        assert await migrations.migrate(admin) == []
        assert await admin.fetchval("SELECT NOT rolcreaterole FROM pg_roles WHERE rolname = $1", APP_ROLE)
    finally:
        await admin.execute("ALTER ROLE bunsync_app NOCREATEROLE")
    assert "bunsync_app@" in await roles.service_dsn(database_url, None)


@pytest.fixture
async def login_role(admin: asyncpg.Connection) -> AsyncIterator[str]:
    """A fresh LOGIN role (cluster-wide, so uniquely named and dropped afterwards)."""
    name = f"t_login_{os.getpid()}_{next(_names)}"
    await admin.execute(f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        await admin.execute(f"DROP ROLE {name}")


async def test_an_unprivileged_dsn_is_used_as_is_and_an_owner_member_is_not(
    admin: asyncpg.Connection, database_url: str, login_role: str
) -> None:
    own_dsn = roles.with_login(database_url, login_role, None)
    with pytest.raises(RoleError, match=f"GRANT bunsync_service TO {login_role}"):
        await roles.service_dsn(own_dsn, None)
    await admin.execute(f"GRANT bunsync_service TO {login_role}")
    assert await roles.service_dsn(own_dsn, None) == own_dsn
    # A role that can SET ROLE to the owner could lift the protection: the service logs in as bunsync_app.
    await admin.execute(f'GRANT "{await _owner(admin)}" TO {login_role}')
    assert (await roles.inspect(own_dsn)).lifts_protection
    assert (await roles.service_dsn(own_dsn, None)).startswith("postgresql://bunsync_app@")


async def test_the_password_from_settings_is_what_postgresql_checks_and_is_never_logged(
    admin: asyncpg.Connection, database_url: str, postgresql_proc: PostgreSQLExecutor
) -> None:
    password = "s3cret-Pa55:/@?#%+ word"  # URL-special characters survive the DSN
    dbname = database_url.rsplit("/", 1)[1]
    try:
        with password_required(postgresql_proc, dbname):
            with pytest.raises(RoleError, match="BUNSYNC_APP_PASSWORD"):
                await roles.service_dsn(database_url, None)
            await admin.execute("SET log_statement = 'all'")
            await migrations.migrate(admin, app_password=password)
            await admin.execute("RESET log_statement")
            with pytest.raises(RoleError, match="password authentication failed"):
                await roles.service_dsn(database_url, "wrong")
            pool = await db.create_pool(await roles.service_dsn(database_url, password), max_size=1)
            try:
                assert await pool.fetchval("SELECT session_user") == APP_ROLE
            finally:
                await pool.close()
        stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", APP_ROLE)
        assert stored.startswith("SCRAM-SHA-256$4096:")
        server_log = Path(postgresql_proc.logfile).read_text(errors="replace")  # noqa: ASYNC240  (one small read)
        assert "bunsync.set_app_password" in server_log  # the statement log was on ...
        assert password not in server_log  # ... and never saw the password
    finally:
        await admin.execute("ALTER ROLE bunsync_app PASSWORD NULL")


def test_the_dsn_keeps_host_and_options_and_drops_the_owners_credentials() -> None:
    dsn = "postgresql://owner:pw@db1:5432,db2:5433/bunsync?sslmode=require&password=pw2&user=owner"
    assert roles.with_login(dsn, "bunsync_app", None) == (
        "postgresql://bunsync_app@db1:5432,db2:5433/bunsync?sslmode=require"
    )
    embedded = "postgresql://bunsync@/bunsync?host=%2Ftmp%2Fd%2Frun"
    assert roles.with_login(embedded, "bunsync_app", "a b@") == (
        "postgresql://bunsync_app:a%20b%40@/bunsync?host=%2Ftmp%2Fd%2Frun"
    )


async def test_the_scram_verifier_is_the_one_postgresql_computes(
    admin: asyncpg.Connection, login_role: str
) -> None:
    import base64

    await admin.execute(f"ALTER ROLE {login_role} PASSWORD 'pencil'")  # the server hashes it itself
    stored = str(await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", login_role))
    salt = base64.b64decode(stored.split("$")[1].split(":")[1])
    assert roles.scram_verifier("pencil", salt=salt) == stored


async def test_serve_given_bunsync_app_itself_checks_the_schema_instead_of_migrating(
    database_url: str, empty_database_url: str
) -> None:
    # The deployment where serve never holds the owner's credentials: migrate runs apart, as the owner.
    app_dsn = roles.with_login(database_url, APP_ROLE, None)
    assert await service.prepare(app_dsn, None, wait_s=5) == app_dsn
    with pytest.raises(migrations.MigrationError, match="migrate as the owner"):
        await service.prepare(roles.with_login(empty_database_url, APP_ROLE, None), None, wait_s=5)


async def test_an_owner_that_is_not_a_superuser_migrates_and_serve_still_switches(
    admin: asyncpg.Connection, empty_database_url: str, login_role: str
) -> None:
    # README's external-database setup: an owner with CREATEROLE, owning the database.
    dbname = empty_database_url.rsplit("/", 1)[1]
    await admin.execute(f"ALTER ROLE {login_role} CREATEROLE")
    await admin.execute(f"ALTER DATABASE {dbname} OWNER TO {login_role}")
    owner_dsn = roles.with_login(empty_database_url, login_role, None)
    try:
        applied = await service.migrate(owner_dsn, wait_s=5, app_password="app-pw")
        assert applied == [m.version for m in migrations.available()]
        rights = await roles.inspect(owner_dsn)
        assert not rights.superuser and rights.becomes_owner
        app_dsn = await roles.service_dsn(owner_dsn, None)  # trust here; the password was set anyway
        assert app_dsn.startswith("postgresql://bunsync_app@")
        async with db.admin_connection(app_dsn) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"SET ROLE {login_role}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("ALTER TABLE bunsync.event_log DISABLE TRIGGER event_log_append_only")
    finally:
        async with db.admin_connection(empty_database_url) as conn:
            await conn.execute(f"REASSIGN OWNED BY {login_role} TO CURRENT_USER")
        await admin.execute("ALTER ROLE bunsync_app PASSWORD NULL")
