"""What each ``bunsync`` subcommand does, given its parsed arguments and the settings.

``app.cli`` owns the command line (parser, errors, exit codes); this module owns the work, each command a
function ``cmd_<name>(args, settings) -> exit code``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import uvloop
from rich.console import Console

from app import fetcher, reconciler, service
from app.ops import explain, explain_text, status, status_text
from app.privacy import erasure, redaction
from app.progress import progress_reporter
from app.settings import Settings
from app.store import db, roles
from app.store.db import StorageUnavailable
from app.store.embedded_pg import EmbeddedPostgres
from app.store.migrations import latest_version
from projections import engine as projections_engine
from projections import rebuild as projections_rebuild

EXIT_CONFIG = 2


class CommandError(Exception):
    """A command cannot do its job; ``str(err)`` is the one line to show, ``code`` the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> NoReturn:
    raise CommandError(message, code)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The DSN to use: ``BUNSYNC_DATABASE_URL``, or the embedded cluster (started now, stopped after)."""
    if settings.database_url:
        yield settings.database_url
        return
    with EmbeddedPostgres(settings.data_dir, run_as=settings.embedded_pg_user) as pg:
        yield pg.dsn


def _run_async(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    """Run ``main(stop)`` on uvloop; SIGINT/SIGTERM set ``stop``."""

    async def wrapper() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(wrapper())


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_service_credentials()
    roles = service.Roles(
        http=not args.no_http,
        fetch=not args.no_fetch,
        projectors=not args.no_projectors,
        scheduler=not args.no_scheduler,
    )
    with database(settings) as dsn:
        return _run_async(lambda stop: service.run(settings, dsn, roles, stop))


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run(stop: asyncio.Event) -> int:
        applied = await service.migrate(dsn, wait_s=args.wait, app_password=settings.app_password)
        version = latest_version()
        print(f"bunsync: database schema is at version {version} ({len(applied)} migrations applied now)")
        if args.redact_log:
            await _redact_log(dsn)
        return 0

    with database(settings) as dsn:
        return _run_async(run)


async def _redact_log(dsn: str) -> None:
    done = await redaction.redact_log(dsn)
    print(
        f"bunsync: redacted the personal data of {done.rows} log row(s) (append-only lifted for that one "
        f"UPDATE, in one transaction); kept the newest personal data of {done.orders_kept} order(s) in "
        "bunsync.personal_data; the log was vacuumed"
    )


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    async def forget(stop: asyncio.Event) -> int:
        async with _pool(await _service_dsn(dsn, settings, 30.0)) as pool:
            if args.expired:
                outcomes = await erasure.forget_expired(pool, settings.pii_retention_days)
            else:
                outcomes = await erasure.forget(pool, args.order, "request")
        for outcome in outcomes:
            print(f"bunsync: {outcome.describe()}")
        if args.expired:
            print(
                f"bunsync: {len(outcomes)} order(s) past the {settings.pii_retention_days}-day retention "
                "erased"
            )
        return 0

    with database(settings) as dsn:
        return _run_async(forget)


def cmd_redrive(args: argparse.Namespace, settings: Settings) -> int:
    async def redrive(stop: asyncio.Event) -> int:
        async with _pool(await _service_dsn(dsn, settings, args.wait)) as pool:
            requeued = await fetcher.redrive(pool, args.order or None)
        which = ", ".join(map(str, requeued)) if requeued else "none"
        print(f"bunsync: re-queued {len(requeued)} dead fetch(es): {which}")
        return 0

    with database(settings) as dsn:
        return _run_async(redrive)


@contextlib.asynccontextmanager
async def _pool(service_dsn: str, max_size: int = 1) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the service's own login, closed after the block."""
    pool = await db.create_pool(service_dsn, min_size=1, max_size=max_size)
    try:
        yield pool
    finally:
        await pool.close()


async def _service_dsn(dsn: str, settings: Settings, wait_s: float) -> str:
    """Make sure the schema is current (a one-off command may be the first to meet a new database),
    and return the DSN of the service's own login: commands that need only the service's rights run
    with no more (app.store.roles)."""
    return await service.prepare(dsn, settings.app_password, wait_s=wait_s)


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    async def reconcile(stop: asyncio.Event) -> int:
        service_dsn = await _service_dsn(dsn, settings, 30.0)
        async with (
            _pool(service_dsn, max_size=4) as pool,
            service.bunjang_client(settings) as client,
            reconciler.exclusive(service_dsn, on_busy=_say_waiting),
        ):
            with progress_reporter("reconcile", "windows") as progress:
                result = await reconciler.run_pass(
                    pool,
                    client,
                    now=datetime.now(UTC),
                    overlap=timedelta(seconds=settings.reconcile_overlap_s),
                    lookback=timedelta(seconds=settings.reconcile_lookback_s),
                    since=args.since,
                    until=args.until,
                    progress=lambda done, total, seen: progress(done, total, f"{seen} orders"),
                )
        moved = "moved" if result.watermark_moved else "not moved (the range leaves a gap before it)"
        print(
            f"bunsync: reconciled {result.start.isoformat()} .. {result.end.isoformat()}: "
            f"{result.orders_seen} orders listed, {result.differences} differences recorded; "
            f"watermark {moved}"
        )
        return 0

    if args.since and args.until and args.since > args.until:
        _fail("--since must be before --until", EXIT_CONFIG)
    with database(settings) as dsn:
        return _run_async(reconcile)


def _say_waiting() -> None:
    print("bunsync: another reconcile pass is running; waiting for it to finish", file=sys.stderr)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async def report(stop: asyncio.Event) -> int:
        try:
            # Read-only and the service's rights suffice: its own login, never the owner's.
            async with _pool(await roles.service_dsn(dsn, settings.app_password)) as pool:
                snapshot = await status.collect(pool)
        except (StorageUnavailable, roles.RoleError) as exc:
            if args.json:
                sys.stdout.buffer.write(status.encode_unreachable(str(exc)) + b"\n")
            else:
                print(f"bunsync: unreachable: {exc}", file=sys.stderr)
            return status.EXIT_UNREACHABLE
        verdict, reasons = status.assess(snapshot, max_lag=args.max_lag)
        if args.json:
            sys.stdout.buffer.write(status.encode_json(snapshot, verdict, reasons) + b"\n")
        else:
            print(status_text.render_text(snapshot, verdict, reasons))
        return status.exit_code(verdict)

    if settings.database_url is None and not (settings.data_dir / "pg" / "PG_VERSION").exists():
        print(
            f"bunsync: unreachable: no database configured and no embedded cluster in {settings.data_dir}",
            file=sys.stderr,
        )
        return status.EXIT_UNREACHABLE
    with database(settings) as dsn:
        return _run_async(report)


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    async def run(stop: asyncio.Event) -> int:
        # Read-only: the service's own login suffices (never the owner's).
        pool = await db.create_pool(await roles.service_dsn(dsn, settings.app_password), max_size=1)
        try:
            found = await explain.explain(pool, args.order_id)
        finally:
            await pool.close()
        if found is None:
            print(f"bunsync: the log has never seen order {args.order_id}", file=sys.stderr)
            return 1
        if args.json:
            sys.stdout.buffer.write(explain.encode_json(found[0]) + b"\n")
        else:
            explain_text.render(found[0], Console(width=max(100, shutil.get_terminal_size().columns)))
        return 0

    with database(settings) as dsn:
        return _run_async(run)


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    async def rebuild(stop: asyncio.Event) -> int:
        # The one command that keeps the owner's login: the swap moves the owner's tables (DDL).
        rights = await roles.inspect(dsn)
        if not rights.can_migrate:
            _fail(
                f"rebuild swaps tables, so it needs the owner's DSN; role {rights.login} does not own "
                "them: run it with the BUNSYNC_DATABASE_URL that 'bunsync migrate' uses",
                1,
            )
        await service.migrate(dsn, wait_s=30.0, app_password=settings.app_password)
        with progress_reporter("rebuild", "events") as progress:
            await projections_rebuild.rebuild(dsn, args.projection or None, progress=progress)
        return 0

    with database(settings) as dsn:
        try:
            return _run_async(rebuild)
        except projections_rebuild.RebuildError as exc:
            _fail(f"rebuild: {exc}", 1)


def cmd_retry_parked(args: argparse.Namespace, settings: Settings) -> int:
    async def retry(stop: asyncio.Event) -> int:
        service_dsn = await _service_dsn(dsn, settings, 30.0)
        count = await projections_engine.retry_parked(service_dsn, args.projection)
        print(f"bunsync: {count} parked event(s) retried (or handed to the active projector)")
        return 0

    with database(settings) as dsn:
        try:
            return _run_async(retry)
        except ValueError as exc:
            _fail(str(exc), EXIT_CONFIG)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.sandbox import demo  # the sandbox loads only for the commands that use it

    options = demo.DemoOptions(
        orders=args.orders, rounds=args.rounds, data_dir=Path(args.data_dir) if args.data_dir else None
    )
    return demo.main(options)


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    """``bunsync sandbox [FLAG …]``: its flags are parsed here, by the sandbox's own parser."""
    from app.sandbox import cli as sandbox_cli  # loaded only for this command

    parser = argparse.ArgumentParser(prog="bunsync sandbox")
    sandbox_cli.configure_parser(parser)
    return sandbox_cli.run(parser.parse_args(args.sandbox_args))
