"""Logging set-up: structlog for bunsync's own events, the standard library's records routed alike.

One line per event, with a machine-readable event name and key-values: JSON off a terminal, coloured
console on one (``BUNSYNC_LOG_FORMAT``). Never log secrets, tokens, request bodies or buyer data.
bunsync's own events go straight from structlog to stderr (the webhook path logs every outcome, and the
standard library's machinery would cost a tenth of its CPU); records of libraries (uvicorn, asyncpg,
APScheduler) go through the standard library and are rendered the same way.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import msgspec
import structlog

REQUEST_ID_HEADER = b"x-request-id"
# What bunsync takes from a caller's X-Request-Id: a bounded token that cannot forge log fields or
# carry anything but an id (letters, digits, and . _ : -). Anything else gets a fresh id.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,64}")


def request_id(header: bytes | None) -> str:
    """The request id for an HTTP request: the caller's ``X-Request-Id`` if it is a sane token, else a
    fresh 16-hex-digit one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header.decode("ascii")
    return os.urandom(8).hex()


def _json(obj: Any, **_: Any) -> bytes:
    return msgspec.json.encode(obj, enc_hook=repr)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Configure structlog and the standard library root logger to write to stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    logger_factory: Any
    if log_format == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_json)
        logger_factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
        stdlib_renderer: structlog.types.Processor = structlog.processors.JSONRenderer(
            serializer=lambda obj, **kw: _json(obj).decode()
        )
    else:
        renderer = stdlib_renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        logger_factory = structlog.WriteLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=logger_factory,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, stdlib_renderer],
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
