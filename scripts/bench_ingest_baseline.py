"""The "straightforward way" for ``scripts/bench_ingest`` (measurement (b)): one transaction per request.

A bare Litestar app with one webhook route that verifies ``X-Bun-Webhook-Signature`` with bunsync's own
:func:`app.webhook.signature.verify`, decodes the body, and inserts one row shaped like ``bunsync.event_log``
into the scratch table ``bench.event_log`` in its own transaction (asyncpg pool), then answers 204.
No batching, no fetch queue, no logging: the obvious implementation, for comparison.

It is served exactly as ``bunsync serve`` serves: uvicorn's ``Server.serve()`` on a uvloop event loop,
``http="httptools"``, one process, access log off, lifespan off, backlog 2048.

The scratch table must exist (``scripts/bench_ingest`` creates it). Signing secrets come from
``BUNSYNC_WEBHOOK_SECRETS`` (comma list), as for bunsync. Run with the project's venv::

    BUNSYNC_WEBHOOK_SECRETS=s .venv/bin/python scripts/bench_ingest_baseline.py \\
        --dsn postgresql://postgres@127.0.0.1:5432/bench --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import uvicorn
import uvloop
from litestar import Litestar, Request, Response, get, post

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.webhook import signature  # the repository root, put on sys.path just above

INSERT_EVENT = """
INSERT INTO bench.event_log (stream, type, payload, raw, source, signed_at, received_at, idempotency_key)
VALUES ($1, 'webhook.order_status_changed.v1', $2::text::jsonb, $3, 'webhook', $4, $5, $6)
ON CONFLICT (idempotency_key) DO NOTHING
"""


class _Item(msgspec.Struct, frozen=True, rename="camel"):
    order_item_id: int
    pid: int
    order_status: str


class _Data(msgspec.Struct, frozen=True, rename="camel"):
    order_id: int
    order_items: list[_Item]


class _Webhook(msgspec.Struct, frozen=True, rename="camel"):
    event_id: str
    event_type: str
    payload_version: str
    data: _Data


_decoder = msgspec.json.Decoder(_Webhook)


def create_app(pool: asyncpg.Pool, secrets: tuple[str, ...], tolerance_s: int = 300) -> Litestar:
    """The baseline app: verify, insert in one transaction, answer 204."""

    @post("/webhooks/bunjang", request_max_body_size=1024 * 1024)
    async def receive(request: Request[Any, Any, Any]) -> Response[None]:
        body = await request.body()
        now = time.time()
        try:
            t = signature.verify(request.headers.get(signature.HEADER), body, secrets, now, tolerance_s)
        except signature.SignatureError:
            return Response(content=None, status_code=401)
        try:
            event = _decoder.decode(body)
        except msgspec.DecodeError:
            return Response(content=None, status_code=400)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                INSERT_EVENT,
                f"order-{event.data.order_id}",
                body.decode("utf-8"),
                body,
                datetime.fromtimestamp(t, UTC),
                datetime.fromtimestamp(now, UTC),
                f"webhook:{event.event_id}",
            )
        return Response(content=None, status_code=204)

    @get("/health/ready")
    async def ready() -> dict[str, str]:
        await pool.fetchval("SELECT 1")
        return {"status": "ready"}

    return Litestar(route_handlers=[receive, ready], openapi_config=None, logging_config=None, debug=False)


async def serve(dsn: str, host: str, port: int, pool_size: int, secrets: tuple[str, ...]) -> None:
    """Serve until SIGINT/SIGTERM, the way ``bunsync serve`` does (``app/service.py``)."""
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=pool_size)
    try:
        config = uvicorn.Config(
            create_app(pool, secrets),
            host=host,
            port=port,
            http="httptools",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            backlog=2048,
        )
        await uvicorn.Server(config).serve()
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Baseline webhook receiver for scripts/bench_ingest: verify the signature and insert "
        "one row per request in its own transaction. Secrets come from BUNSYNC_WEBHOOK_SECRETS."
    )
    parser.add_argument("--dsn", required=True, help="PostgreSQL DSN of a database holding bench.event_log")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="listen port (default 8081)")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=16,
        help="asyncpg pool max size (default 16; bunsync's pool holds 10)",
    )
    args = parser.parse_args()
    secrets = tuple(s for s in os.environ.get("BUNSYNC_WEBHOOK_SECRETS", "").split(",") if s)
    if not secrets:
        print("bench_ingest_baseline: set BUNSYNC_WEBHOOK_SECRETS (comma-separated secrets)", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.dsn, args.host, args.port, args.pool_size, secrets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
