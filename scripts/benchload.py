"""A steady webhook load on `bunsync serve` with the sandbox as Bunjang, for the latency and soak benchmarks.

Shared by scripts/bench_latency.py and scripts/bench_memory.py (each runs in the venv, see benchlib):

- :func:`sandbox_and_serve`: a throwaway PostgreSQL cluster (fsync on), ``bunsync sandbox --orders N``
  (frozen clock, no webhook delivery of its own), and ``bunsync serve`` pointed at it, all on loopback;
  yields a :class:`Stack` with the sandbox's items (from ``/_sandbox/truth``) to send webhooks about;
- :func:`steady_load`: validly signed ``order.status.changed`` webhooks at a fixed rate over a few
  kept-alive connections (plain asyncio, no HTTP library: the sender must cost little next to the
  server it loads); every answer is recorded with the time it arrived;
- :func:`tree_usage`: RSS and open file descriptors of a process and its children, from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import benchlib
from benchlib import ROOT

sys.path.insert(0, str(ROOT))

from app.sandbox.config import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    DEFAULT_WEBHOOK_SECRET,
)
from app.webhook.signature import HEADER, sign

WEBHOOK_PATH = "/webhooks/bunjang"


@dataclass(frozen=True)
class Item:
    """One sandbox order item a webhook can be about."""

    order_id: int
    item_id: int
    pid: int
    status: str


@dataclass
class Stack:
    """The running cluster, sandbox and server."""

    dsn: str
    port: int
    serve: subprocess.Popen[bytes]
    items: list[Item]
    pg_version: str = ""


@dataclass
class Answer:
    """One webhook sent: what about, when it was due, when its answer arrived, and the status code."""

    item: Item
    due: float
    answered: float = 0.0
    status: int = 0


@dataclass
class Load:
    """What :func:`steady_load` sent and got back."""

    answers: list[Answer] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def non_2xx(self) -> int:
        return sum(1 for a in self.answers if not 200 <= a.status < 300)


def _sandbox_command(port: int, orders: int) -> list[str]:
    cli = [sys.executable, "-m", "app.cli", "sandbox", "--port", str(port), "--seed", "1"]
    return [*cli, "--clock-speed", "0", "--orders", str(orders)]


def _truth(url: str) -> list[Item]:
    """The first item of every sandbox order (one webhook stream per order keeps the fetches apart)."""
    with urllib.request.urlopen(f"{url}/_sandbox/truth", timeout=60) as r:
        truth = json.loads(r.read())
    first: dict[int, Item] = {}
    for i in truth["items"]:
        first.setdefault(i["orderId"], Item(i["orderId"], i["orderItemId"], i["pid"], i["status"]))
    return list(first.values())


@contextlib.contextmanager
def sandbox_and_serve(
    orders: int, serve_args: list[str], name: str, *, cluster_settings: str = ""
) -> Iterator[Stack]:
    """Cluster (extra ``-c`` options ``cluster_settings``) + sandbox with ``orders`` orders + ``bunsync
    serve *serve_args`` against it, stopped and removed at the end of the block."""
    with tempfile.TemporaryDirectory(prefix=f"bunsync-bench-{name}-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        work.chmod(0o711)
        (work / "pglog").mkdir()
        cluster = benchlib.Cluster(work, settings=cluster_settings)
        stack.callback(cluster.stop)
        cluster.start()
        sandbox_port, port = benchlib.free_port(), benchlib.free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        stack.enter_context(
            benchlib.serve(
                _sandbox_command(sandbox_port, orders),
                env=benchlib.clean_env(),
                ready_url=f"{sandbox_url}/_sandbox/clock",
                logfile=work / "sandbox.log",
                name="bunsync sandbox",
                deadline_s=120,
            )
        )
        items = _truth(sandbox_url)
        env = benchlib.clean_env(
            BUNSYNC_DATABASE_URL=cluster.dsn("postgres"),
            BUNSYNC_HOST="127.0.0.1",
            BUNSYNC_PORT=str(port),
            BUNSYNC_ADMIN_PORT=str(benchlib.free_port()),
            BUNSYNC_WEBHOOK_SECRETS=DEFAULT_WEBHOOK_SECRET,
            BUNSYNC_BUNJANG_BASE_URL=sandbox_url,
            BUNSYNC_BUNJANG_ACCESS_KEY=DEFAULT_ACCESS_KEY,
            BUNSYNC_BUNJANG_SECRET_KEY=DEFAULT_SECRET_KEY,
            BUNSYNC_LOG_FORMAT="json",
        )
        proc = stack.enter_context(
            benchlib.serve(
                [sys.executable, "-m", "app.cli", "serve", *serve_args],
                env=env,
                ready_url=f"http://127.0.0.1:{port}/health/ready",
                logfile=work / "serve.log",
                name="bunsync serve",
            )
        )
        yield Stack(cluster.dsn("postgres"), port, proc, items)


def webhook(item: Item, event_id: str) -> tuple[bytes, str]:
    """A validly signed order.status.changed body about ``item`` (its sandbox status), signed now."""
    body = json.dumps(
        {
            "eventId": event_id,
            "eventType": "order.status.changed",
            "payloadVersion": "v1",
            "data": {
                "orderId": item.order_id,
                "orderItems": [{"orderItemId": item.item_id, "pid": item.pid, "orderStatus": item.status}],
            },
        },
        separators=(",", ":"),
    ).encode()
    return body, sign(DEFAULT_WEBHOOK_SECRET, int(time.time()), body)


async def _connection(port: int, queue: asyncio.Queue[tuple[Answer, str] | None], load: Load) -> None:
    """One kept-alive connection: send the queued webhooks one at a time, record each answer."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while (job := await queue.get()) is not None:
        answer, event_id = job
        body, signature = webhook(answer.item, event_id)
        request = (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"{HEADER}: {signature}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            answer.answered = time.time()
            answer.status = int(head.split(b" ", 2)[1])
            length = next(
                (
                    int(h.split(b":", 1)[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                ),
                0,
            )
            if length:
                await reader.readexactly(length)
            if b"connection: close" in head.lower():
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            load.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
        load.answers.append(answer)
    if writer is not None:
        writer.close()


async def steady_load(
    port: int,
    items: list[Item],
    rate: float,
    seconds: float,
    *,
    connections: int = 8,
    prefix: str = "bench",
    on_queue: Callable[[Answer], None] | None = None,
) -> Load:
    """``rate`` webhooks/s for ``seconds``, cycling over ``items`` (each with a fresh eventId), over
    ``connections`` kept-alive connections. A webhook is due at start + k / rate; if every connection
    is busy it waits in the queue (the server's slowness shows as a lower achieved rate, reported)."""
    load = Load()
    queue: asyncio.Queue[tuple[Answer, str] | None] = asyncio.Queue()
    workers = [asyncio.create_task(_connection(port, queue, load)) for _ in range(connections)]
    start = time.time()
    total = int(rate * seconds)
    for k in range(total):
        due = start + k / rate
        await asyncio.sleep(max(0.0, due - time.time()))
        answer = Answer(items[k % len(items)], due)
        queue.put_nowait((answer, f"{prefix}-{k}"))
        if on_queue is not None:
            on_queue(answer)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    load.seconds = time.time() - start
    return load


def tree_usage(pid: int) -> tuple[int, int]:
    """(RSS in kB, open file descriptors) of ``pid`` and its children, from /proc."""
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    rss = fds = 0
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            fds += sum(1 for _ in Path(f"/proc/{p}/fd").iterdir())
    return rss, fds


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of an ascending list (nearest rank); NaN if empty."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]
