"""Forward-only schema migrations (``sql/migrations/NNNN_*.sql``) and the reporting views.

Migrations are applied in order, each in its own transaction, recorded in ``bunsync.schema_migrations``
with a checksum, under an advisory lock so replicas starting together do not race. After them, every
``sql/views/*.sql`` file is (re)applied in one transaction: views are definitions, not history.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import asyncpg
import structlog

from app import sqlfiles
from app.db import Connection

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


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations and re-apply the views; return the versions applied now."""
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
        return done
    finally:
        await conn.execute(q["unlock"])
