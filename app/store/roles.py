"""Which database role each session logs in as: the service never keeps rights that could lift the log's
protection.

Three roles matter (README "Database roles"): the *owner* (the role of ``BUNSYNC_DATABASE_URL``, which
migrates and owns every table; a superuser in the embedded cluster), ``bunsync_service`` (NOLOGIN: the
service's grants, SELECT and INSERT only on the log) and ``bunsync_app`` (LOGIN, a member of
``bunsync_service`` and of nothing else, created by ``migrate``). When the DSN's role could lift the log's
protection (a superuser, a role that can become one or the owner, or one that can create roles),
:func:`service_dsn` gives the service's sessions ``bunsync_app`` on the same host and database instead,
so no ``SET ROLE``/``RESET ROLE`` can give them the owner's rights back. A DSN whose role is already
unprivileged is used as is.

``bunsync_app``'s password (``BUNSYNC_APP_PASSWORD``) reaches the server only as a SCRAM-SHA-256 verifier
(:func:`scram_verifier`), the form PostgreSQL stores, so no statement or log line ever carries it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from app.store import db, sqlfiles
from app.store.db import Connection

log = structlog.get_logger(__name__)

APP_ROLE = "bunsync_app"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations), as psql's \password uses


class RoleError(Exception):
    """The database roles do not allow a safe login; ``str(err)`` says what an operator must do."""


@dataclass(frozen=True, slots=True)
class LoginRights:
    """What a login role could do to the log (see ``sql/queries/roles.sql``, ``login_rights``)."""

    login: str
    superuser: bool
    createrole: bool
    becomes_superuser: bool
    becomes_owner: bool | None
    service_rights: bool | None

    @property
    def lifts_protection(self) -> str | None:
        """Why this role could disable the log's trigger or rewrite the log, or None if it cannot."""
        if self.superuser:
            return "is a superuser"
        if self.becomes_superuser:
            return "can SET ROLE to a superuser"
        if self.becomes_owner:
            return "owns bunsync.event_log (or can SET ROLE to its owner)"
        if self.createrole:
            return "can create roles (and so grant itself the owner's)"
        return None

    @property
    def can_migrate(self) -> bool:
        """Whether it may run migrations and rebuilds (DDL on the owner's tables): a superuser, the log's
        owner, or anyone while there is no log yet (the first migration makes it the owner, or fails
        with a clear privilege error)."""
        return self.superuser or self.becomes_owner is not False


@db.operation
async def login_rights(conn: Connection) -> LoginRights:
    """The rights of ``conn``'s login role."""
    row = await conn.fetchrow(sqlfiles.queries("roles")["login_rights"])
    if row is None:  # current_user is always in pg_roles; a None here is a broken catalog
        raise RoleError("the session's role is not in pg_roles")
    return LoginRights(**dict(row.items()))


async def inspect(dsn: str) -> LoginRights:
    """The rights of ``dsn``'s login role."""
    async with db.admin_connection(dsn) as conn:
        return await login_rights(conn)


async def service_dsn(dsn: str, app_password: str | None) -> str:
    """The DSN for the service's sessions: ``dsn`` if its role is unprivileged, else ``bunsync_app``'s.

    Raises :class:`RoleError` when neither is usable (login refused, or a role with too many or too few
    rights), :class:`~app.store.db.StorageUnavailable` when the database cannot be reached.
    """
    rights = await inspect(dsn)
    why = rights.lifts_protection
    if why is None:
        _require_service_rights(rights)
        log.info("database_login", role=rights.login, reason="the DSN's role is unprivileged")
        return dsn
    app_dsn = with_login(dsn, APP_ROLE, app_password)
    try:
        app = await inspect(app_dsn)
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise RoleError(
            f"the DSN's role {rights.login} {why}, so the service logs in as {APP_ROLE}, and PostgreSQL "
            f"refused that login ({exc}): run 'bunsync migrate' (it creates {APP_ROLE}), set "
            f"BUNSYNC_APP_PASSWORD (migrate sets it) or allow {APP_ROLE} in pg_hba.conf, or put an "
            "unprivileged role in BUNSYNC_DATABASE_URL"
        ) from None
    if (app_why := app.lifts_protection) is not None:
        raise RoleError(
            f"{APP_ROLE} {app_why}: it must hold bunsync_service's rights only; "
            f"see README 'Database roles' (run 'bunsync migrate' to reset its attributes)"
        )
    _require_service_rights(app)
    log.info("database_login", role=APP_ROLE, reason=f"the DSN's role {why}")
    return app_dsn


def _require_service_rights(rights: LoginRights) -> None:
    if rights.service_rights is None:
        raise RoleError("role bunsync_service does not exist: run 'bunsync migrate' with the owner's DSN")
    if not rights.service_rights:
        raise RoleError(
            f"role {rights.login} has neither the owner's rights nor bunsync_service's: "
            f"GRANT bunsync_service TO {rights.login}, or use the owner's DSN"
        )


def with_login(dsn: str, user: str, password: str | None) -> str:
    """``dsn`` with its user and password replaced (host, port, database and options kept).

    The DSN's own password is never carried over to another user; ``None`` means no password in the
    DSN (trust or peer authentication, or a ``.pgpass`` entry).
    """
    parts = urlsplit(dsn)
    hosts = parts.netloc.rpartition("@")[2]
    userinfo = quote(user, safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    query = parts.query
    params = parse_qsl(query, keep_blank_values=True)
    if any(k in ("user", "password") for k, _ in params):
        query = urlencode([(k, v) for k, v in params if k not in ("user", "password")])
    return urlunsplit((parts.scheme, f"{userinfo}@{hosts}", parts.path, query, parts.fragment))


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` in PostgreSQL's stored form (RFC 5802, RFC 7677).

    ``password`` must be ASCII (settings enforce it): PostgreSQL leaves ASCII untouched by SASLprep, so
    the verifier matches what the server and asyncpg compute from it.
    """
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    salt_b64, stored_b64, server_b64 = (base64.b64encode(b).decode() for b in (salt, stored_key, server_key))
    return f"SCRAM-SHA-256${iterations}:{salt_b64}${stored_b64}:{server_b64}"
