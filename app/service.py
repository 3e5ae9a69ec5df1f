"""``bunsync serve``: the long-running service, a supervisor of named tasks sharing one stop event.

Start-up migrates the database (waiting a while for it to come up), then runs the roles asked for:
the HTTP server (webhooks, health) and the background loops. If any task dies, the process says so and
stops, rather than running half-alive; the supervisor (systemd, Kubernetes) restarts it. On stop, the
HTTP server stops accepting and finishes in-flight requests (each answered only once durable), then
the remaining work drains, then the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import structlog
import uvicorn

from app import db, db_roles, migrations
from app.bunjang.client import BunjangClient
from app.fetcher import Fetcher
from app.http import Services, create_app
from app.ingest import Ingestor
from app.scheduler import Jobs
from app.settings import Settings
from projections.engine import run_projectors

log = structlog.get_logger(__name__)

SHUTDOWN_TIMEOUT_S = 20.0
INGEST_WRITERS = 2  # batches in flight at once: one being written while the next one gathers


@dataclass(frozen=True, slots=True)
class Roles:
    """Which parts of the service this process runs (``serve --no-…`` flags)."""

    http: bool = True
    fetch: bool = True
    projectors: bool = True
    scheduler: bool = True


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service's one stop event governs shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _waiting(error: str) -> None:
    log.warning("database_waiting", error=error)


async def migrate(dsn: str, *, wait_s: float = 60.0, app_password: str | None = None) -> list[int]:
    """Apply migrations as ``dsn``'s role (the owner), waiting up to ``wait_s`` for the database to
    accept connections; ``app_password``: set ``bunsync_app``'s password too."""

    async def attempt() -> list[int]:
        async with db.admin_connection(dsn) as conn:
            return await migrations.migrate(conn, app_password=app_password)

    return await db.retry_until_available(attempt, deadline_s=wait_s, on_wait=_waiting)


async def prepare(dsn: str, app_password: str | None, *, wait_s: float = 60.0) -> str:
    """Bring the schema up to date (if ``dsn``'s role may migrate; else check it is current) and return
    the DSN the service's sessions use: never one that could lift the log's protection (app.db_roles)."""
    rights = await db.retry_until_available(
        lambda: db_roles.inspect(dsn), deadline_s=wait_s, on_wait=_waiting
    )
    applied: list[int] = []
    if rights.can_migrate:
        applied = await migrate(dsn, wait_s=wait_s, app_password=app_password)
    else:
        async with db.admin_connection(dsn) as conn:
            await migrations.require_current(conn)
    log.info("database_ready", migrations_applied=applied, schema_version=migrations.latest_version())
    return await db.retry_until_available(
        lambda: db_roles.service_dsn(dsn, app_password), deadline_s=wait_s, on_wait=_waiting
    )


async def run(settings: Settings, dsn: str, roles: Roles, stop: asyncio.Event) -> int:
    """Run the service until ``stop`` is set or a task dies; return the process exit code.

    ``dsn`` is the owner's (it migrates); every session of the service then logs in as the role
    :func:`prepare` returns."""
    dsn = await prepare(dsn, settings.app_password)
    pool = await db.create_pool(dsn, min_size=2, max_size=max(10, settings.fetch_concurrency + 6))
    tasks: dict[str, asyncio.Task[None]] = {}
    server: _Server | None = None
    exits = contextlib.AsyncExitStack()
    ingestor: Ingestor | None = None
    try:
        if roles.http:
            # The webhook writers get connections of their own, released without a reset round trip.
            ingest_pool = await db.create_pool(dsn, min_size=1, max_size=INGEST_WRITERS, keep_session=True)
            exits.push_async_callback(ingest_pool.close)
            ingestor = Ingestor(ingest_pool, max_writers=INGEST_WRITERS)
            config = uvicorn.Config(
                create_app(Services(settings=settings, pool=pool, ingestor=ingestor)),
                host=settings.host,
                port=settings.port,
                http="httptools",
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S),
                backlog=2048,
            )
            server = _Server(config)
            tasks["http"] = asyncio.create_task(server.serve(), name="http")
        client = await exits.enter_async_context(bunjang_client(settings))
        workers: Fetcher | None = None
        if roles.fetch:
            workers = Fetcher(
                pool,
                client,
                concurrency=settings.fetch_concurrency,
                max_attempts=settings.fetch_max_attempts,
                worker_id=worker_id(),
            )
            tasks["fetch"] = asyncio.create_task(workers.run(stop), name="fetch")
        if roles.projectors:
            tasks["projectors"] = asyncio.create_task(run_projectors(pool, dsn, stop), name="projectors")
        if roles.scheduler:
            jobs = Jobs(pool, dsn, client, settings, workers)
            tasks["scheduler"] = asyncio.create_task(jobs.run(stop), name="scheduler")
        log.info("service_started", roles=sorted(tasks), host=settings.host, port=settings.port)
        return await _supervise(tasks, stop, server, ingestor)
    finally:
        await exits.aclose()
        await pool.close()


def bunjang_client(settings: Settings) -> BunjangClient:
    """The process's one Bunjang client, configured from settings."""
    return BunjangClient(
        settings.bunjang_base_url,
        settings.bunjang_access_key,
        settings.bunjang_secret_key,
        max_concurrency=settings.fetch_concurrency,
        max_body_bytes=settings.bunjang_max_body_bytes,
        request_deadline_s=settings.bunjang_request_deadline_s,
        max_pages=settings.reconcile_max_pages,
    )


def worker_id() -> str:
    """Who holds a claim or a lock, as an operator would want to read it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def _supervise(
    tasks: dict[str, asyncio.Task[None]],
    stop: asyncio.Event,
    server: _Server | None,
    ingestor: Ingestor | None,
) -> int:
    stopping = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([stopping, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task is stopping or (stop.is_set() and not task.cancelled() and task.exception() is None):
            continue  # a task that returned because we are stopping has not died
        code = 1
        exc = task.exception()
        log.error(
            "task_died",
            task=task.get_name(),
            error=repr(exc) if exc else "returned early",
            exc_info=exc,
            action="the process exits with status 1 for its supervisor to restart it; "
            "if this repeats, fix the cause shown here",
        )
    log.info("service_stopping")
    stop.set()
    if server is not None:
        server.should_exit = True
    try:
        async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            if ingestor is not None:
                await ingestor.drain()
    except TimeoutError:
        # WARNING: work cut short is redone after the restart (leases expire, checkpoints hold), and
        # nothing acknowledged is lost; nothing for an operator to do.
        log.warning(
            "shutdown_timeout",
            timeout_s=SHUTDOWN_TIMEOUT_S,
            pending=[t.get_name() for t in tasks.values() if not t.done()],
        )
        for t in tasks.values():
            t.cancel()
    log.info("service_stopped", exit_code=code)
    return code
