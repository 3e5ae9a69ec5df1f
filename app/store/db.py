"""The database boundary: the only module that creates asyncpg connections and pools, and the one place
where driver errors are classified.

Every function or method that talks to the database carries :func:`operation` (as procrastinate's
connector wraps its methods): once per operation, driver errors that mean "the database is not there right
now" become :class:`StorageUnavailable` (callers answer 503 or retry); everything else stays a programming
or data error, which :func:`is_bad_data` recognises (the input's fault: park or refuse it, never retry).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ParamSpec, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

T = TypeVar("T")
P = ParamSpec("P")

# Shown in pg_stat_activity: which bunsync process holds a connection (and so a lock).
_APPLICATION_NAME = f"bunsync:{socket.gethostname()}:{os.getpid()}"[:63]

#: A connection, whether it came from a pool or was opened alone.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Errors after which the same request may succeed later: the server is down, restarting, refusing
# connections or dropped ours. Anything else (a constraint, bad data, a bug) is not "unavailable".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


class StorageUnavailable(Exception):
    """The database cannot be reached or dropped the connection; retrying later may succeed."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable (rather than a data or programming error),
    translated (:class:`StorageUnavailable`) or not yet."""
    if isinstance(exc, StorageUnavailable):
        return True
    # asyncpg's client-side DataError (a value it cannot encode) subclasses InterfaceError: bad data.
    return isinstance(exc, _UNAVAILABLE) and not isinstance(exc, asyncpg.exceptions.DataError)


def is_bad_data(exc: BaseException) -> bool:
    """Whether ``exc`` is the data's fault (a value asyncpg cannot encode, or one PostgreSQL refuses):
    the same input fails again, so it is parked or refused, never retried."""
    if isinstance(exc, asyncpg.exceptions.DataError):  # client-side, though an InterfaceError
        return True
    return isinstance(exc, asyncpg.PostgresError) and not is_unavailable(exc)


@contextmanager
def translated() -> Iterator[None]:
    """Within the block, "database not there" errors become :class:`StorageUnavailable`."""
    try:
        yield
    except _UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc


def operation(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate a coroutine function that talks to the database: its driver errors are translated once
    (:func:`translated`), whichever of its statements failed."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with translated():
            return await fn(*args, **kwargs)

    return wrapper


async def guard(work: Awaitable[T]) -> T:
    """Await one statement outside any :func:`operation` (a rare one-off), translating as it does."""
    with translated():
        return await work


@asynccontextmanager
async def session_lock(
    dsn: str, statements: Mapping[str, str], *, on_busy: Callable[[], None] | None = None
) -> AsyncIterator[bool]:
    """Hold a session advisory lock for the block, on a connection of its own (if the process dies,
    the connection and the lock go with it, and another replica takes over).

    ``statements``: the named queries ``try_lock`` and ``unlock`` (and ``lock``, to wait). Yields
    whether the lock is held: False when another session holds it and ``on_busy`` is None; else
    ``on_busy()`` is called and the lock waited for.
    """
    async with service_connection(dsn) as conn:
        with translated():
            held = bool(await conn.fetchval(statements["try_lock"]))
            if not held and on_busy is not None:
                on_busy()
                await conn.execute(statements["lock"])
                held = True
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            with translated():
                await conn.execute(statements["unlock"])


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without the reset query (asyncpg still rolls back an open transaction)."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, keep_session: bool = False
) -> asyncpg.Pool:
    """A pool of connections as ``dsn``'s login role; raises :class:`StorageUnavailable` if the first
    connections cannot be made.

    The service passes the DSN of its least-privileged login role (``app.store.roles.service_dsn``), so no
    session needs a startup ``role`` and asyncpg's ``RESET ALL``/``RESET ROLE`` on release lands on a
    role that cannot lift the log's protection.
    ``keep_session``: skip the reset query on release, for users that leave no session state.
    """
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings={"application_name": _APPLICATION_NAME},
            # The service prepares few statements; caching them is a large win for the ingest path.
            statement_cache_size=256,
            timeout=10,
            # For pools whose users leave no session state (no SET, LISTEN, advisory locks, cursors):
            # skips a round trip on every release, which the ingest path feels.
            reset=_keep_session if keep_session else None,
        )
    except _UNAVAILABLE as exc:
        raise StorageUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    return pool


@asynccontextmanager
async def admin_connection(dsn: str, *, connect_timeout_s: float = 10) -> AsyncIterator[asyncpg.Connection]:
    """A single connection as ``dsn``'s login role, for the owner's work (migrations, role checks,
    rebuild swaps) when ``dsn`` is the owner's."""
    async with _single_connection(dsn, connect_timeout_s) as conn:
        yield conn


@asynccontextmanager
async def service_connection(dsn: str, *, connect_timeout_s: float = 10) -> AsyncIterator[asyncpg.Connection]:
    """A single connection for the service's work outside any pool (e.g. for LISTEN, or to hold a
    session-level advisory lock for as long as the connection lives); ``dsn`` is the service's
    (``app.store.roles.service_dsn``), so it logs in as the service's unprivileged role."""
    async with _single_connection(dsn, connect_timeout_s) as conn:
        yield conn


@asynccontextmanager
async def _single_connection(dsn: str, connect_timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
    try:
        conn = await asyncpg.connect(
            dsn, timeout=connect_timeout_s, server_settings={"application_name": _APPLICATION_NAME}
        )
    except _UNAVAILABLE as exc:
        raise StorageUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        yield conn
    finally:
        await conn.close()


async def retry_until_available(
    attempt: Callable[[], Awaitable[T]], *, deadline_s: float, on_wait: Callable[[str], None]
) -> T:
    """Call ``attempt`` until it stops raising :class:`StorageUnavailable` or ``deadline_s`` passes."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    delay = 0.2
    while True:
        try:
            return await attempt()
        except StorageUnavailable as exc:
            if loop.time() + delay > end:
                raise
            on_wait(str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
