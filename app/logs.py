"""Logging set-up: structlog for bunsync's own events, the standard library's records routed alike.

One line per event, with a machine-readable event name and key-values: JSON off a terminal, coloured
console on one (``BUNSYNC_LOG_FORMAT``). Never log secrets, tokens, request bodies or buyer data.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Configure structlog and the standard library root logger to write to stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would log every request a second time, without our outcome; ours suffices.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # While the database is away asyncpg's pool logs a traceback per reconnect attempt; bunsync's own
    # storage_unavailable / webhook_unavailable lines already say what is wrong, once per request.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
