"""``bunsync sandbox``: run the Bunjang stand-in from the command line.

:func:`configure_parser` adds one flag per knob of :class:`~app.sandbox.config.SandboxConfig` (and of its
fault settings); :func:`run` serves until SIGINT or SIGTERM and returns the exit code (0 after a clean
stop, 1 if the port cannot be bound, 2 for an invalid flag value).
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import datetime
from types import FrameType

import msgspec
import structlog

from app.feed import signing
from app.sandbox import config as defaults
from app.sandbox.config import SandboxConfig
from app.sandbox.faults import FaultSettings
from app.sandbox.server import bind, create_app, make_server, url_of

log = structlog.get_logger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add every sandbox flag to ``parser``."""
    parser.description = parser.description or (
        "Run a local stand-in for the Bunjang Open API: Get Order and List Orders (JWT checked), orders "
        "whose items move through the status lifecycle, signed webhooks with Bunjang's retry policy, fault "
        "knobs, and admin endpoints under /_sandbox/. Deterministic for a given --seed."
    )
    net = parser.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    net.add_argument(
        "--port",
        type=int,
        default=defaults.DEFAULT_PORT,
        help="listen port, 0 = any free port (default: %(default)s)",
    )
    net.add_argument("--access-log", action="store_true", help="log every HTTP request")
    creds = parser.add_argument_group("credentials (public sandbox values by default)")
    creds.add_argument("--access-key", default=defaults.DEFAULT_ACCESS_KEY, help="accepted accessKey claim")
    creds.add_argument(
        "--secret-key",
        default=defaults.DEFAULT_SECRET_KEY,
        help="secret key, base64 as Bunjang issues it; tokens must be HS256 with its decoded bytes",
    )
    creds.add_argument(
        "--token-validity",
        type=float,
        default=5.0,
        help="seconds a token stays valid after iat (default: 5, as Bunjang documents)",
    )
    hooks = parser.add_argument_group("webhooks")
    hooks.add_argument("--webhook-url", help="POST order.status.changed events here (default: no delivery)")
    hooks.add_argument(
        "--webhook-secret",
        default=defaults.DEFAULT_WEBHOOK_SECRET,
        help="signing secret (default: %(default)s)",
    )
    hooks.add_argument(
        "--webhook-timeout", type=float, default=10.0, help="seconds per attempt (default: 10)"
    )
    hooks.add_argument(
        "--webhook-retry-base",
        type=float,
        default=1.0,
        help="first retry delay; then x2, ±50%% jitter (default: 1)",
    )
    hooks.add_argument(
        "--webhook-max-retries", type=int, default=3, help="retries after the first try (default: 3)"
    )
    hooks.add_argument(
        "--webhook-all-items",
        action="store_true",
        help="list every item of the order, not only the changed ones",
    )
    feed = parser.add_argument_group("change-feed consumer (/_sandbox/consumer)")
    feed.add_argument(
        "--consumer-secret",
        default=defaults.DEFAULT_CONSUMER_SECRET,
        help="Standard Webhooks secret (whsec_...) it verifies signatures with; give bunsync the same as "
        "BUNSYNC_FORWARD_SECRET (default: %(default)s)",
    )
    feed.add_argument(
        "--consumer-fail-rate",
        type=float,
        default=0.0,
        help="probability it answers 500 to a valid delivery (default: 0)",
    )
    world = parser.add_argument_group("world")
    world.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    world.add_argument("--start-time", help="simulated time at start, ISO-8601 with offset (default: now)")
    world.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second; 0 freezes (default: 1)",
    )
    world.add_argument("--orders", type=int, default=0, help="orders to create at start (default: 0)")
    world.add_argument(
        "--create-every", type=float, default=0.0, help="create an order every N simulated seconds (0 = off)"
    )
    world.add_argument(
        "--advance-every",
        type=float,
        default=0.0,
        help="advance a random item every N simulated seconds (0 = off)",
    )
    world.add_argument(
        "--max-orders", type=int, default=0, help="stop auto-creating at this many orders (0 = no cap)"
    )
    faults = parser.add_argument_group("faults (also settable at runtime: PATCH /_sandbox/faults)")
    faults.add_argument(
        "--drop-rate", type=float, default=0.0, help="probability a webhook event is never sent"
    )
    faults.add_argument(
        "--duplicate-rate", type=float, default=0.0, help="probability an event is sent twice"
    )
    faults.add_argument("--delay", type=float, default=0.0, help="delay each event by a random 0..N seconds")
    faults.add_argument(
        "--reorder-rate", type=float, default=0.0, help="probability an event goes after the next"
    )
    faults.add_argument(
        "--get-order-error-rate", type=float, default=0.0, help="probability Get Order answers 500"
    )
    faults.add_argument(
        "--get-order-429-rate", type=float, default=0.0, help="probability Get Order answers 429"
    )
    faults.add_argument(
        "--retry-after", type=int, default=1, help="Retry-After seconds sent with a 429 (default: 1)"
    )
    faults.add_argument(
        "--list-orders-error-rate", type=float, default=0.0, help="probability List Orders answers 500"
    )
    faults.add_argument("--latency", type=float, default=0.0, help="seconds before every REST answer")
    faults.add_argument(
        "--not-found",
        type=int,
        action="append",
        default=[],
        metavar="ORDER_ID",
        help="Get Order of this order answers 404 (repeatable)",
    )
    faults.add_argument(
        "--api-script",
        default="",
        help="comma-separated exact faults for the next REST calls, one step per call: "
        "ok, 500 (any 5xx), 429[:s], expired, slow:s",
    )
    faults.add_argument(
        "--hostile",
        action="append",
        default=[],
        metavar="KIND=VALUE",
        help="a hostile answer (repeatable; off by default): nul, far-future, out-of-range, bad-field, "
        "wrong-id, oversize, drip = comma-separated order ids; endless-pages, drip-list = true; "
        "oversize-bytes, drip-interval, date-offset = a number (see app/sandbox/hostile.py)",
    )


_HOSTILE_IDS = {
    "nul": "nul_orders",
    "far-future": "far_future_orders",
    "out-of-range": "out_of_range_orders",
    "bad-field": "bad_field_orders",
    "wrong-id": "wrong_id_orders",
    "oversize": "oversize_orders",
    "drip": "drip_orders",
}
_HOSTILE_FLAGS = {"endless-pages": "endless_pages", "drip-list": "drip_list"}
_HOSTILE_NUMBERS = {
    "oversize-bytes": ("oversize_bytes", int),
    "drip-interval": ("drip_interval_s", float),
    "date-offset": ("date_offset_s", float),
}


def _hostile(values: list[str]) -> dict[str, object]:
    """The ``--hostile KIND=VALUE`` flags as FaultSettings fields; ``ValueError`` for a bad one."""
    fields: dict[str, object] = {}
    for value in values:
        kind, _, arg = value.partition("=")
        if kind in _HOSTILE_IDS:
            fields[_HOSTILE_IDS[kind]] = tuple(int(x) for x in arg.split(",") if x.strip())
        elif kind in _HOSTILE_FLAGS:
            fields[_HOSTILE_FLAGS[kind]] = arg.strip().lower() in ("", "1", "true", "yes")
        elif kind in _HOSTILE_NUMBERS:
            name, parse = _HOSTILE_NUMBERS[kind]
            fields[name] = parse(arg)
        else:
            raise ValueError(f"unknown --hostile kind {kind!r}")
    return fields


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """The configuration the flags describe; ``ValueError`` naming the bad value otherwise."""
    try:
        fault_settings = FaultSettings(
            webhook_drop_rate=args.drop_rate,
            webhook_duplicate_rate=args.duplicate_rate,
            webhook_delay_s=args.delay,
            webhook_reorder_rate=args.reorder_rate,
            get_order_error_rate=args.get_order_error_rate,
            get_order_throttle_rate=args.get_order_429_rate,
            list_orders_error_rate=args.list_orders_error_rate,
            retry_after_s=args.retry_after,
            api_latency_s=args.latency,
            not_found_orders=tuple(args.not_found),
            api_script=tuple(step.strip() for step in args.api_script.split(",") if step.strip()),
        )
        fault_settings = msgspec.structs.replace(fault_settings, **_hostile(args.hostile))
        # Struct constructors do not check Meta constraints; a round trip through convert does.
        fault_settings = msgspec.convert(msgspec.to_builtins(fault_settings), FaultSettings)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"invalid fault flag: {exc}") from exc
    try:
        signing.parse_secret(args.consumer_secret)
    except ValueError as exc:
        raise ValueError(f"--consumer-secret {exc}") from exc
    if not 0.0 <= args.consumer_fail_rate <= 1.0:
        raise ValueError("--consumer-fail-rate must be between 0 and 1")
    try:
        start = datetime.fromisoformat(args.start_time) if args.start_time else None
    except ValueError as exc:
        raise ValueError(f"--start-time {args.start_time!r} is not an ISO-8601 date-time") from exc
    return SandboxConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        access_key=args.access_key,
        secret_key=args.secret_key,
        token_validity_s=args.token_validity,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        webhook_timeout_s=args.webhook_timeout,
        webhook_retry_base_s=args.webhook_retry_base,
        webhook_max_retries=args.webhook_max_retries,
        webhook_all_items=args.webhook_all_items,
        start_time=start,
        clock_speed=args.clock_speed,
        initial_orders=args.orders,
        create_every_s=args.create_every,
        advance_every_s=args.advance_every,
        max_orders=args.max_orders,
        faults=fault_settings,
        consumer_secret=args.consumer_secret,
        consumer_fail_rate=args.consumer_fail_rate,
        access_log=args.access_log,
    )


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Swallow the signal uvicorn re-raises after its graceful shutdown, so :func:`run` can return."""


def run(args: argparse.Namespace) -> int:
    """Serve the sandbox until SIGINT/SIGTERM; return the process exit code."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"bunsync sandbox: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(config.host, config.port)
    except OSError as exc:
        print(
            f"bunsync sandbox: cannot listen on {config.host}:{config.port} ({exc.strerror}); "
            "choose another --port (0 = any free port)",
            file=sys.stderr,
        )
        return 1
    url = url_of(sock)
    log.info(
        "sandbox.listening",
        url=url,
        access_key=config.access_key,
        hint=f"point bunsync at it with BUNSYNC_BUNJANG_BASE_URL={url}",
    )
    server = make_server(create_app(config), access_log=config.access_log)
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    log.info("sandbox.stopped")
    return 0
