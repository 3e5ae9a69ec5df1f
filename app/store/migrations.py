"""Forward-only schema migrations (``sql/migrations/NNNN_*.sql``) and the reporting views.

Migrations are applied in order, each in its own transaction, recorded in ``bunsync.schema_migrations``
with a checksum, under an advisory lock so replicas starting together do not race. After them, every
``sql/views/*.sql`` file is (re)applied in one transaction: views are definitions, not history. Last,
the service's login role ``bunsync_app`` is (re)asserted (roles are cluster-wide, so a migration that ran
once per database cannot keep it right) and, when ``BUNSYNC_APP_PASSWORD`` is set, its password is set
from a SCRAM verifier computed here (the password itself never reaches the server).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import asyncpg
import structlog

from app.store import roles, sqlfiles
from app.store.db import Connection

log = structlog.get_logger(__name__)

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The database's migration history does not match the migration files."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file text; an applied migration must never change."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def available() -> list[Migration]:
    """The migration files, in version order; a misnamed file or a repeated version is an error."""
    found: list[Migration] = []
    for f in sqlfiles.files("migrations"):
        m = _FILENAME.match(f.name)
        if m is None:
            raise MigrationError(f"sql/migrations/{f.name}: name must look like 0001_some_name.sql")
        found.append(Migration(version=int(m.group(1)), name=m.group(2), sql=f.text))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    """The version the code expects the database to be at."""
    return max((m.version for m in available()), default=0)


async def current_version(conn: Connection) -> int:
    """The newest applied version (0 on an empty database)."""
    q = sqlfiles.queries("migrations")
    if not await conn.fetchval(q["table_exists"]):
        return 0
    rows = await conn.fetch(q["applied"])
    return max((r["version"] for r in rows), default=0)


async def require_current(conn: Connection) -> None:
    """Raise :class:`MigrationError` unless the schema is at the version this code expects (for a role
    that cannot migrate, e.g. ``serve`` given an unprivileged DSN)."""
    have, want = await current_version(conn), latest_version()
    if have != want:
        raise MigrationError(
            f"the database schema is at version {have}, this bunsync needs {want}, and the DSN's role "
            "cannot migrate: run 'bunsync migrate' with the owner's BUNSYNC_DATABASE_URL first"
        )


async def migrate(conn: asyncpg.Connection, *, app_password: str | None = None) -> list[int]:
    """Apply pending migrations, re-apply the views and (re)assert ``bunsync_app`` (with
    ``app_password`` as its password, when given); return the versions applied now."""
    try:
        return await _migrate(conn, app_password)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise MigrationError(
            f"the DSN's role lacks a privilege migrations need ({exc}): migrate as the owner, a role "
            "that can create roles, schemas in this database and tables (see README 'Database roles')"
        ) from None


async def _migrate(conn: asyncpg.Connection, app_password: str | None) -> list[int]:
    q = sqlfiles.queries("migrations")
    await conn.execute(q["lock"])
    try:
        await conn.execute(q["bootstrap"])
        applied = {r["version"]: r["checksum"] for r in await conn.fetch(q["applied"])}
        done: list[int] = []
        for m in available():
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                        "migrations are forward-only: add a new one instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(q["record"], m.version, m.name, m.checksum)
            log.info("migration_applied", version=m.version, name=m.name)
            done.append(m.version)
        unknown = sorted(set(applied) - {m.version for m in available()})
        if unknown:
            raise MigrationError(
                f"the database has migrations {unknown} that this bunsync does not know: "
                "run a bunsync at least as new as the one that migrated it"
            )
        async with conn.transaction():
            for view in sqlfiles.files("views"):
                await conn.execute(view.text)
        await _app_role(conn, app_password)
        return done
    finally:
        await conn.execute(q["unlock"])


async def _app_role(conn: asyncpg.Connection, app_password: str | None) -> None:
    """Re-assert ``bunsync_app`` (created by migration 0005) and set its password if one is given."""
    q = sqlfiles.queries("roles")
    async with conn.transaction():
        await conn.execute(q["ensure_app_role"])
        if app_password is not None:
            # A verifier, never the password: safe in the statement log with its parameters.
            await conn.execute(q["set_app_password"], roles.scram_verifier(app_password))
            log.info("app_role_password_set", role=roles.APP_ROLE)
