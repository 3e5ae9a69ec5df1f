"""The ``bunsync`` command line: one console script, a subcommand per job, ``--help`` on each.

Errors a user can meet (bad configuration, unreachable database, missing PostgreSQL binaries) end the
command with one line on stderr saying what is wrong and what to do, and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import structlog

from app import commands, logs
from app.commands import EXIT_CONFIG, CommandError
from app.ops import status
from app.settings import ConfigError, Settings
from app.store.db import StorageUnavailable
from app.store.embedded_pg import EmbeddedPostgresError
from app.store.migrations import MigrationError
from app.store.roles import RoleError
from projections.engine import PROJECTIONS

log = structlog.get_logger(__name__)


class _Stop(BaseException):
    """Raised by the early SIGTERM handler so clean-up (stopping the embedded database) still runs."""


def _load_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines and ``export`` prefixes allowed)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--env-file", f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise ConfigError("--env-file", f"{path}:{number} is not KEY=VALUE")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _environment(args: argparse.Namespace) -> Mapping[str, str]:
    """The process environment over the ``--env-file`` values (the real environment wins)."""
    env: dict[str, str] = {}
    if args.env_file:
        env.update(_load_env_file(Path(args.env_file)))
    env.update(os.environ)
    return env


def _parse_time(raw: str) -> datetime:
    """An ISO-8601 time with a zone (``Z`` or an offset), for ``--since``/``--until``."""
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an ISO-8601 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{raw!r} has no time zone: add Z or an offset such as +09:00")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="bunsync",
        description="Event-sourced order sync daemon for partners of the Bunjang Open API.",
        epilog="Configuration comes from BUNSYNC_* environment variables; see README.md.",
    )
    parser.add_argument(
        "--env-file",
        help="load BUNSYNC_* variables from this KEY=VALUE file first "
        "(variables already in the environment win)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the service: HTTP, fetch workers, projectors, scheduler",
        description="Run the service. With BUNSYNC_DATABASE_URL unset, starts the "
        "embedded PostgreSQL under BUNSYNC_DATA_DIR and stops it on exit.",
    )
    serve.add_argument("--no-http", action="store_true", help="do not serve HTTP (worker-only replica)")
    serve.add_argument("--no-fetch", action="store_true", help="do not run Get Order fetch workers")
    serve.add_argument("--no-projectors", action="store_true", help="do not run the projectors")
    serve.add_argument(
        "--no-scheduler", action="store_true", help="do not run scheduled jobs (reconcile, fetch retries)"
    )
    serve.set_defaults(handler=commands.cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    migrate.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the database to accept connections (default 30)",
    )
    migrate.add_argument(
        "--redact-log",
        action="store_true",
        help="one time, after upgrading every replica: take the buyer personal data out of log rows "
        "written before this version (append-only is lifted for that one UPDATE; see README)",
    )
    migrate.set_defaults(handler=commands.cmd_migrate)

    forget = sub.add_parser(
        "forget",
        help="erase buyer personal data (by order, or every order past BUNSYNC_PII_RETENTION_DAYS)",
        description="Erase the buyer personal data (name, phone, addresses) of orders, at once and for "
        "good: later fetches of a forgotten order keep none. Idempotent; prints per order what it "
        "erased (field names, never values); an order the log has never seen is reported, not an error. "
        "Every erasure is recorded in reporting.erasures.",
    )
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--order", type=int, action="append", metavar="ORDER_ID", help="this order (repeatable)"
    )
    which.add_argument(
        "--expired",
        action="store_true",
        help="every order whose items all reached a final status BUNSYNC_PII_RETENTION_DAYS ago "
        "(the daily job's pass, now)",
    )
    forget.set_defaults(handler=commands.cmd_forget)

    sandbox = sub.add_parser(
        "sandbox",
        help="run a local stand-in for the Bunjang Open API",
        description="Run a local, deterministic stand-in for Bunjang: Get Order, "
        "List Orders, signed webhooks with Bunjang's retry policy, and fault knobs.",
        # Its flags are parsed by app.sandbox.cli, imported only when this command runs: `bunsync serve`
        # never loads the sandbox. `bunsync sandbox --help` lists them.
        add_help=False,
    )
    sandbox.set_defaults(handler=commands.cmd_sandbox)
    redrive = sub.add_parser(
        "redrive",
        help="re-queue dead fetches (all, or by order id)",
        description="Re-queue fetches parked as dead (after BUNSYNC_FETCH_MAX_ATTEMPTS "
        "failures, or at once on 404/403) so the fetch workers try them again.",
    )
    redrive.add_argument(
        "--order",
        type=int,
        action="append",
        metavar="ORDER_ID",
        help="only this order (repeatable); default: every dead fetch",
    )
    redrive.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the database (default 30)",
    )
    redrive.set_defaults(handler=commands.cmd_redrive)

    reconcile = sub.add_parser(
        "reconcile",
        help="run one reconcile pass now (a backfill with an old --since)",
        description="List the orders whose items changed in a range and record every change bunsync "
        "missed (and fetch those orders). Without --since: from the watermark minus "
        "BUNSYNC_RECONCILE_OVERLAP_S (first time: BUNSYNC_RECONCILE_LOOKBACK_S ago) to now. Safe to run "
        "while serve runs: passes never overlap.",
    )
    reconcile.add_argument("--since", type=_parse_time, help="start of the range (ISO-8601 with zone)")
    reconcile.add_argument("--until", type=_parse_time, help="end of the range (default: now)")
    reconcile.set_defaults(handler=commands.cmd_reconcile)

    status_cmd = sub.add_parser(
        "status",
        help="summarise sync health (exit 0 healthy, 1 degraded, 2 unreachable)",
        description="A summary of reporting.sync_health, projection lag, the fetch queue, dead fetches, "
        "parked events and the last reconcile passes. Exit code 0 healthy, 1 degraded, 2 unreachable.",
    )
    status_cmd.add_argument("--json", action="store_true", help="machine-readable JSON (as GET /status)")
    status_cmd.add_argument(
        "--max-lag",
        type=int,
        default=status.DEFAULT_MAX_LAG,
        metavar="EVENTS",
        help=f"projection lag above which status is degraded (default {status.DEFAULT_MAX_LAG})",
    )
    status_cmd.set_defaults(handler=commands.cmd_status)

    explain_cmd = sub.add_parser(
        "explain",
        help="an order's whole story from the log, and why each item shows its status",
        description="Read every event of the order from the log (not the views): position, type, source, "
        "times, the item statuses each reports and what each did; the fetch job; the reconcile passes that "
        "listed it; and per item the current status with the reason in words, by the projector's own "
        "rule. Exit 1 when the log has never seen the order.",
    )
    explain_cmd.add_argument("order_id", type=int, metavar="ORDER_ID")
    explain_cmd.add_argument("--json", action="store_true", help="JSON (as GET /api/orders/ORDER_ID)")
    explain_cmd.set_defaults(handler=commands.cmd_explain)

    rebuild_cmd = sub.add_parser(
        "rebuild",
        help="rebuild projections from the log without taking the views away",
        description="Build the projections afresh from the event log into new tables while the live ones "
        "keep serving, catch up, then swap them in atomically. Interrupted: run it again.",
    )
    rebuild_cmd.add_argument(
        "projection",
        nargs="*",
        metavar="PROJECTION",
        help=f"which ones (default: all of {', '.join(sorted(PROJECTIONS))})",
    )
    rebuild_cmd.set_defaults(handler=commands.cmd_rebuild)

    retry_cmd = sub.add_parser(
        "retry-parked",
        help="retry events a projection parked (after fixing the cause)",
        description="Retry the events a projection could not apply and parked; by the active projector "
        "if one runs, else here.",
    )
    retry_cmd.add_argument("projection", nargs="?", help="only this projection (default: all)")
    retry_cmd.set_defaults(handler=commands.cmd_retry_parked)

    demo_cmd = sub.add_parser(
        "demo",
        help="run the end-to-end demo: sandbox Bunjang + bunsync, embedded DB",
        description="Start an embedded PostgreSQL, the sandbox Bunjang with webhook "
        "faults, and bunsync serve; drive orders; check nothing delivered was lost or "
        "doubled; stop everything.",
    )
    demo_cmd.add_argument("--orders", type=int, default=300, help="orders to create (default 300)")
    demo_cmd.add_argument("--rounds", type=int, default=20, help="rounds of status changes (default 20)")
    demo_cmd.add_argument(
        "--data-dir", help="folder for the demo's database and logs (default: a new temp dir)"
    )
    demo_cmd.set_defaults(handler=commands.cmd_demo)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"bunsync: {message}", file=sys.stderr)
    raise SystemExit(code)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; the flags of ``bunsync sandbox`` are left, in order, in ``sandbox_args``."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "sandbox":
        args.sandbox_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bunsync`` console script."""
    args = parse_args(argv)
    try:
        settings = Settings.from_env(_environment(args))
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", EXIT_CONFIG)
    logs.configure(settings.log_format)

    def early_stop(signum: int, frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, early_stop)
    try:
        code: int = args.handler(args, settings)
        return code
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", EXIT_CONFIG)
    except EmbeddedPostgresError as exc:
        _fail(str(exc), 1)
    except StorageUnavailable as exc:
        where = "BUNSYNC_DATABASE_URL" if settings.database_url else "the embedded PostgreSQL"
        _fail(f"database unavailable ({exc}): check {where} and that PostgreSQL is running", 1)
    except MigrationError as exc:
        _fail(f"migration error: {exc}", 1)
    except RoleError as exc:
        _fail(f"database role error: {exc}", 1)
    except CommandError as exc:
        _fail(str(exc), exc.code)
    except (_Stop, KeyboardInterrupt):
        return 130


if __name__ == "__main__":
    sys.exit(main())
