"""``bunsync serve``: the long-running service, a supervisor of named tasks sharing one stop event.

Start-up migrates the database (waiting a while for it to come up), then runs the roles asked for:
the webhook listener (webhooks, health; ``--no-http`` leaves it out), the operator listener (health
with details, ``/status``, ``/metrics``; unless ``BUNSYNC_ADMIN_PORT=0``) and the background loops.
If any task dies, the process says so and stops, rather than running half-alive; the supervisor
(systemd, Kubernetes) restarts it. On stop, the HTTP servers stop accepting and finish in-flight
requests (each answered only once durable), then the remaining work drains, then the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import socket
from dataclasses import dataclass

import structlog

from app.bunjang.client import BunjangClient
from app.console.routes import console_handlers
from app.feed.forwarder import ForwardConfig, Forwarder
from app.feed.reader import FeedWaker
from app.feed.route import feed_handler
from app.fetcher import Fetcher
from app.http.operator_app import OPERATOR_LISTENER, create_admin_app
from app.http.refusals import RefusalLog
from app.http.server import Limits, Server, build_server, raise_open_file_limit
from app.http.webhook_app import WEBHOOK_LISTENER, Services, create_app
from app.scheduler import Jobs
from app.settings import Settings
from app.store import db, migrations, roles
from app.webhook.endpoint import MAX_WEBHOOK_BODY
from app.webhook.ingest import Ingestor
from projections.engine import run_projectors

log = structlog.get_logger(__name__)

SHUTDOWN_TIMEOUT_S = 20.0
INGEST_WRITERS = 2  # batches in flight at once: one being written while the next one gathers
OPERATOR_MAX_CONNECTIONS = 64  # operators and scrapers: a handful
# Descriptors kept for everything but the webhook listener's connections: database pools, the
# operator listener, logs, the Bunjang client.
_RESERVED_FDS = 128 + OPERATOR_MAX_CONNECTIONS
# The transport's body cap sits above the endpoint's 413 (which answers first), so that no request,
# even one queued behind another on its connection, holds more than this.
_TRANSPORT_BODY_CAP = MAX_WEBHOOK_BODY + 512 * 1024


@dataclass(frozen=True, slots=True)
class Roles:
    """Which parts of the service this process runs (``serve --no-…`` flags)."""

    http: bool = True
    fetch: bool = True
    projectors: bool = True
    scheduler: bool = True


def listener_limits(settings: Settings, open_files: int) -> tuple[Limits, Limits]:
    """The webhook and operator listeners' limits; the webhook listener's connection cap is kept
    below what the open-file limit leaves, so attack connections cannot starve the rest of fds."""
    webhook_cap = max(16, min(settings.http_max_connections, open_files - _RESERVED_FDS - 2 * INGEST_WRITERS))
    webhook = Limits(
        listener=WEBHOOK_LISTENER,
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
        write_timeout_s=settings.http_body_timeout_s,  # a client not reading its answers: as slow a body
        max_connections=webhook_cap,
        max_body_bytes=_TRANSPORT_BODY_CAP,
    )
    return webhook, dataclasses.replace(
        webhook, listener=OPERATOR_LISTENER, max_connections=OPERATOR_MAX_CONNECTIONS
    )


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
    the DSN the service's sessions use: never one that could lift the log's protection (app.store.roles)."""
    rights = await db.retry_until_available(lambda: roles.inspect(dsn), deadline_s=wait_s, on_wait=_waiting)
    applied: list[int] = []
    if rights.can_migrate:
        applied = await migrate(dsn, wait_s=wait_s, app_password=app_password)
    else:
        async with db.admin_connection(dsn) as conn:
            await migrations.require_current(conn)
    log.info("database_ready", migrations_applied=applied, schema_version=migrations.latest_version())
    return await db.retry_until_available(
        lambda: roles.service_dsn(dsn, app_password), deadline_s=wait_s, on_wait=_waiting
    )


async def run(settings: Settings, dsn: str, roles: Roles, stop: asyncio.Event) -> int:
    """Run the service until ``stop`` is set or a task dies; return the process exit code.

    ``dsn`` is the owner's (it migrates); every session of the service then logs in as the role
    :func:`prepare` returns."""
    dsn = await prepare(dsn, settings.app_password)
    pool = await db.create_pool(dsn, min_size=2, max_size=max(10, settings.fetch_concurrency + 6))
    tasks: dict[str, asyncio.Task[None]] = {}
    servers: list[Server] = []
    exits = contextlib.AsyncExitStack()
    ingestor: Ingestor | None = None
    refusals = RefusalLog()
    exits.callback(refusals.flush)  # the last summary of refused traffic, if any
    services = Services(settings=settings, pool=pool, refusals=refusals)
    webhook_limits, operator_limits = listener_limits(settings, raise_open_file_limit())
    try:
        client = await exits.enter_async_context(bunjang_client(settings))
        workers: Fetcher | None = None
        if roles.fetch:
            # The fetch workers' claims and stores get connections of their own, released without a
            # reset round trip (they leave no session state: the personal-data lock is transactional).
            fetch_pool = await db.create_pool(dsn, min_size=1, max_size=4, keep_session=True)
            exits.push_async_callback(fetch_pool.close)
            workers = Fetcher(
                fetch_pool,
                client,
                concurrency=settings.fetch_concurrency,
                max_attempts=settings.fetch_max_attempts,
                worker_id=worker_id(),
            )
        if roles.http:
            # The webhook writers get connections of their own, released without a reset round trip.
            ingest_pool = await db.create_pool(dsn, min_size=1, max_size=INGEST_WRITERS, keep_session=True)
            exits.push_async_callback(ingest_pool.close)
            ingestor = Ingestor(
                ingest_pool, max_writers=INGEST_WRITERS, on_fetch_enqueued=workers.wake if workers else None
            )
            server, _ = build_server(
                create_app(services, ingestor),
                settings.host,
                settings.port,
                webhook_limits,
                refusals,
                graceful_s=SHUTDOWN_TIMEOUT_S,
            )
            servers.append(server)
            tasks["http"] = asyncio.create_task(server.serve(), name="http")
        if settings.admin_port:
            waker = FeedWaker(dsn)
            tasks["feed-listener"] = asyncio.create_task(waker.run(stop), name="feed-listener")
            server, _ = build_server(
                create_admin_app(
                    services, extra_handlers=[*console_handlers(services), feed_handler(pool, waker)]
                ),
                settings.admin_host,
                settings.admin_port,
                operator_limits,
                refusals,
                graceful_s=SHUTDOWN_TIMEOUT_S,
            )
            servers.append(server)
            tasks["operator-http"] = asyncio.create_task(server.serve(), name="operator-http")
        if workers is not None:
            tasks["fetch"] = asyncio.create_task(workers.run(stop), name="fetch")
        if roles.projectors:
            tasks["projectors"] = asyncio.create_task(run_projectors(pool, dsn, stop), name="projectors")
        if settings.forward_url is not None and settings.forward_key is not None:
            config = ForwardConfig(url=settings.forward_url, key=settings.forward_key, holder=worker_id())
            tasks["forwarder"] = asyncio.create_task(Forwarder(pool, dsn, config).run(stop), name="forwarder")
        if roles.scheduler:
            jobs = Jobs(pool, dsn, client, settings, workers)
            tasks["scheduler"] = asyncio.create_task(jobs.run(stop), name="scheduler")
        _settle_heap()
        log.info(
            "service_started",
            roles=sorted(tasks),
            host=settings.host,
            port=settings.port,
            admin_host=settings.admin_host,
            admin_port=settings.admin_port,
            admin_token=settings.admin_token is not None,
            max_connections=webhook_limits.max_connections,
        )
        return await _supervise(tasks, stop, servers, ingestor)
    finally:
        await exits.aclose()
        await pool.close()


#: Net new container objects between two collections of the youngest generation (Python's default:
#: 700). A request's objects are freed by reference counting as it ends, so at the default the
#: collector ran ~890 times in 15 s of webhook flood (~0.6 s in all) to find almost nothing;
#: at 10,000 it ran 7 times (~5 ms). Cyclic garbage waits a little longer (10,000 objects: ~1 MB).
GC_YOUNG_THRESHOLD = 10_000


def _settle_heap() -> None:
    """Take what start-up built (modules, the apps, pools: ~all of the heap, and as long-lived as the
    process) out of the cyclic collector's sight, after collecting start-up's own garbage.

    Otherwise every full collection walks that whole heap while the event loop stands still: under a
    webhook flood (scripts/bench_ingest.py) the full collections paused the process 81 ms at most and
    520 ms in all over 15 s, every request in flight waiting them out; after it, 9 ms and 41 ms. What
    requests and batches create is collected as before, the youngest generation less often
    (:data:`GC_YOUNG_THRESHOLD`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


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
    servers: list[Server],
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
    for server in servers:
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
