#!/usr/bin/env python3
"""Benchmark the change feed's forwarding: throughput and end-to-end latency.

On a throwaway PostgreSQL cluster (loopback, fsync on), runs the real ``bunsync serve --no-scheduler``
with ``BUNSYNC_FORWARD_URL`` pointing at a consumer in this process that answers 204 at once and
records when each change arrived.

1. Throughput: N Get Order observations (one confirmed change each) are appended at once; changes/s
   from the first receipt to the last, against the ceiling of the same consumer driven by a bare
   loop of signed POSTs (no database) measured in the same run, with the forwarder's own HTTP client
   and with httpx.
2. Latency at a steady load: R changes/s for D seconds, each appended in its own transaction;
   latency = consumer receipt - append commit (same host clock), p50 / p99, split at the feed row's
   ``emitted_at`` into the projector's part and the forwarder's. Target p99 <= 250 ms at 200 changes/s.

Prints ``BENCH_FEED {json}`` for scripts/bench and a PASS/FAIL line. ``--quick``: N=1000, D=10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchlib
from benchlib import ROOT

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Consumer:
    """An HTTP/1.1 endpoint answering 204 at once; records receipt time per order_item_id."""

    def __init__(self) -> None:
        self.port = benchlib.free_port()
        self.received: dict[int, float] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                item = json.loads(body)["data"]["order_item_id"]
                self.received.setdefault(item, time.time())
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


async def _ceiling(consumer: Consumer, n: int) -> tuple[float, float]:
    """Signed POSTs to the consumer from a bare loop, one at a time (what forwarding does), no
    database: changes/s with the forwarder's own client (app.feed.transport) and with httpx."""
    import httpx

    from app.feed import signing
    from app.feed.transport import Poster

    key = signing.parse_secret(SECRET)
    url = f"http://127.0.0.1:{consumer.port}/hook"

    def signed(i: int) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"type": "t", "timestamp": "x", "data": {"order_item_id": -1 - i}}).encode()
        return body, signing.headers(key, f"c{i}", int(time.time()), body)

    poster = Poster(url)
    started = time.monotonic()
    for i in range(n):
        await poster.post(*signed(i), 10)
    own = n / (time.monotonic() - started)
    await poster.close()
    async with httpx.AsyncClient() as client:
        started = time.monotonic()
        for i in range(n):
            body, headers = signed(i)
            await client.post(url, content=body, headers=headers)
        return own, n / (time.monotonic() - started)


def _observed(item: int, t: datetime) -> object:
    from app import events as catalogue
    from app.store.event_log import NewEvent

    body = {
        "data": {
            "order": {
                "id": item,
                "orderItems": [
                    {
                        "id": item,
                        "status": "SHIP_READY",
                        "statusUpdatedAt": t.isoformat().replace("+00:00", "Z"),
                    }
                ],
            }
        }
    }
    return NewEvent(
        stream=catalogue.order_stream(item),
        type=catalogue.ORDER_OBSERVED,
        source=catalogue.SOURCE_GET_ORDER,
        idempotency_key=f"get_order:bench:{item}",
        payload_json=json.dumps(body),
    )


async def _wait(check: object, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def bench(dsn: str, n: int, rate: int, duration: int, workdir: Path) -> dict[str, object]:
    import asyncpg

    from app.store import event_log

    consumer = Consumer()
    server = await asyncio.start_server(consumer.handle, "127.0.0.1", consumer.port)
    ceiling, ceiling_httpx = await _ceiling(consumer, min(n, 1000))
    consumer.received.clear()
    env = {
        **os.environ,
        "BUNSYNC_DATABASE_URL": dsn,
        "BUNSYNC_PORT": str(benchlib.free_port()),
        "BUNSYNC_ADMIN_PORT": "0",
        "BUNSYNC_WEBHOOK_SECRETS": "bench-secret",
        "BUNSYNC_BUNJANG_ACCESS_KEY": "bench",
        "BUNSYNC_BUNJANG_SECRET_KEY": "YmVuY2g=",
        "BUNSYNC_BUNJANG_BASE_URL": "http://127.0.0.1:9",
        "BUNSYNC_LOG_FORMAT": "json",
        "BUNSYNC_FORWARD_URL": f"http://127.0.0.1:{consumer.port}/hook",
        "BUNSYNC_FORWARD_SECRET": SECRET,
    }
    log = (workdir / "serve.log").open("wb")
    serve = subprocess.Popen(  # noqa: ASYNC220  # started once, before anything is measured
        [sys.executable, "-m", "app.cli", "serve", "--no-scheduler"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        conn = await asyncpg.connect(dsn)
        t0 = datetime.now(UTC) - timedelta(hours=1)
        await event_log.append(conn, [_observed(i, t0) for i in range(1, n + 1)])  # type: ignore[misc]
        if not await _wait(lambda: len(consumer.received) >= n, 120):
            raise SystemExit(f"throughput: only {len(consumer.received)} of {n} delivered in 120 s")
        times = sorted(consumer.received.values())
        throughput = (n - 1) / (times[-1] - times[0]) if n > 1 else 0.0
        appended: dict[int, float] = {}
        start = time.monotonic()
        for k in range(rate * duration):
            due = start + k / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            item = n + 1 + k
            await event_log.append(conn, [_observed(item, t0)])  # type: ignore[list-item]
            appended[item] = time.time()
        if not await _wait(lambda: all(i in consumer.received for i in appended), 60):
            raise SystemExit("latency: not every change delivered within 60 s of the last append")
        lat = sorted((consumer.received[i] - appended[i]) * 1000 for i in appended)
        # Where the time goes: append -> feed row (the projector), feed row -> receipt (the forwarder).
        emitted = {
            r["order_item_id"]: r["emitted_at"].timestamp()
            for r in await conn.fetch(
                "SELECT order_item_id, emitted_at FROM bunsync.item_changes WHERE order_item_id > $1", n
            )
        }
        to_feed = sorted((emitted[i] - appended[i]) * 1000 for i in appended)
        to_consumer = sorted((consumer.received[i] - emitted[i]) * 1000 for i in appended)
        pg = await conn.fetchval("SELECT version()")
        await conn.close()
    finally:
        serve.terminate()
        serve.wait(30)
        server.close()
    return {
        "changes": n,
        "throughput_per_s": round(throughput, 1),
        "ceiling_per_s": round(ceiling, 1),
        "ceiling_httpx_per_s": round(ceiling_httpx, 1),
        "rate": rate,
        "seconds": duration,
        "p50_ms": round(lat[len(lat) // 2], 1),
        "p99_ms": _pct(lat, 0.99),
        "projector_p50_ms": _pct(to_feed, 0.5),
        "projector_p99_ms": _pct(to_feed, 0.99),
        "forwarder_p50_ms": _pct(to_consumer, 0.5),
        "forwarder_p99_ms": _pct(to_consumer, 0.99),
        "pg": str(pg).split(",")[0],
    }


def _pct(sorted_ms: list[float], q: float) -> float:
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))], 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench_feed.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="N=1000, D=10 s")
    parser.add_argument("--changes", type=int, help="changes for the throughput phase (5000; quick 1000)")
    parser.add_argument("--rate", type=int, default=200, help="changes/s of the latency phase (200)")
    parser.add_argument("--seconds", type=int, help="duration of the latency phase (30; quick 10)")
    args = parser.parse_args()
    n = args.changes or (1000 if args.quick else 5000)
    duration = args.seconds or (10 if args.quick else 30)
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        cluster = benchlib.Cluster(Path(tmp))
        cluster.start()
        try:
            subprocess.run(
                [sys.executable, "-m", "app.cli", "migrate"],
                check=True,
                cwd=ROOT,
                env={**os.environ, "BUNSYNC_DATABASE_URL": cluster.dsn("postgres")},
                stdout=subprocess.DEVNULL,
            )
            result = asyncio.run(bench(cluster.dsn("postgres"), n, args.rate, duration, Path(tmp)))
        finally:
            cluster.stop()
    print(
        f"forwarding throughput: {result['throughput_per_s']:,} changes/s "
        f"(bare signed POST loop to the same consumer, no database: {result['ceiling_per_s']:,}/s with "
        f"the forwarder's client, {result['ceiling_httpx_per_s']:,}/s with httpx)"
    )
    print(
        f"latency at {args.rate} changes/s for {duration} s: "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
    )
    ok = float(result["p99_ms"]) <= 250  # type: ignore[arg-type]
    print(
        f"  of which append -> feed row (projector): p50 {result['projector_p50_ms']} ms, "
        f"p99 {result['projector_p99_ms']} ms; feed row -> consumer (forwarder): "
        f"p50 {result['forwarder_p50_ms']} ms, p99 {result['forwarder_p99_ms']} ms"
    )
    print(f"target p99 <= 250 ms: {'PASS' if ok else 'FAIL'}")
    print("BENCH_FEED " + json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    benchlib.reexec_in_venv(__file__)
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
