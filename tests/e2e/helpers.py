"""Helpers shared by the end-to-end tests: the running processes (``Serve``, ``SandboxProcess``), a TCP
proxy that can cut the database, signed webhooks, the service's environment, database reads, and waiting
until the views equal the sandbox's truth. Fixtures that start these are in ``tests/e2e/conftest.py``."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from app.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from app.sandbox.demo import Mismatch, mismatches_against_truth
from app.webhook.signature import sign

SECRET = "e2e-secret"
ENV_BASE = {
    "BUNSYNC_WEBHOOK_SECRETS": f"old-secret,{SECRET}",
    "BUNSYNC_BUNJANG_ACCESS_KEY": "e2e-access",
    "BUNSYNC_BUNJANG_SECRET_KEY": "ZTJlLXNlY3JldC1rZXk=",
    "BUNSYNC_LOG_FORMAT": "json",
    # Never the real Bunjang from tests: a loopback port nothing listens on (tests that need an API
    # start the sandbox and override this).
    "BUNSYNC_BUNJANG_BASE_URL": "http://127.0.0.1:9",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serve:
    """A running ``bunsync serve`` process: ``url`` is its webhook listener, ``admin_url`` its operator
    listener (``/status``, ``/metrics``; ``None`` when ``BUNSYNC_ADMIN_PORT=0``)."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    admin_url: str | None = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"bunsync serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"bunsync serve not ready after {deadline_s} s:\n{log_path.read_text()}")


def limit_open_files(n: int | None) -> None:
    """In a child before exec: soft and hard RLIMIT_NOFILE of ``n`` (fd exhaustion tests)."""
    import resource

    if n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@dataclass
class SandboxProcess:
    """A running ``bunsync sandbox`` process."""

    process: subprocess.Popen[bytes]
    url: str

    def admin(self, method: str, path: str, **kw: object) -> httpx.Response:
        """Call an admin endpoint; raises on any answer but 2xx, so that a refused set-up step (a fault
        knob misspelt, an order that does not exist) fails the test where it happened instead of
        leaving the sandbox in another state than the test believes."""
        response = httpx.request(method, f"{self.url}/_sandbox/{path}", timeout=60, **kw)  # type: ignore[arg-type]
        response.raise_for_status()
        return response


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL, on its own thread, that a test can cut (an outage)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._server:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def webhook_body(
    event_id: str,
    order_id: int = 100,
    *,
    status: str = "PAYMENT_RECEIVED",
    version: str = "v1",
    item_id: int | None = None,
) -> bytes:
    """An ``order.status.changed`` body for one item (item id ``<order_id>1`` unless given)."""
    item = item_id if item_id is not None else int(f"{order_id}1")
    return (
        f'{{"eventId":"{event_id}","eventType":"order.status.changed","payloadVersion":"{version}",'
        f'"data":{{"orderId":{order_id},"orderItems":[{{"orderItemId":{item},"pid":5,"orderStatus":"{status}"}}]}}}}'
    ).encode()


def post_webhook(
    serve: Serve,
    body: bytes,
    *,
    secret: str = SECRET,
    t: int | None = None,
    header: str | None = None,
    **headers: str,
) -> httpx.Response:
    """POST ``body`` signed at ``t`` (default now) with ``secret``, or with the raw ``header`` given."""
    signature = header if header is not None else sign(secret, int(time.time()) if t is None else t, body)
    return httpx.post(
        f"{serve.url}/webhooks/bunjang",
        content=body,
        headers={"X-Bun-Webhook-Signature": signature, "Content-Type": "application/json", **headers},
        timeout=10,
    )


def bunsync_env(
    database_url: str | None, sandbox: SandboxProcess | None, port: int, **extra: str
) -> dict[str, str]:
    """Environment for ``bunsync serve`` on ``port``, against the database and sandbox given."""
    env = {"BUNSYNC_PORT": str(port), **extra}
    if database_url:
        env["BUNSYNC_DATABASE_URL"] = database_url
    if sandbox:
        env.update(
            BUNSYNC_BUNJANG_BASE_URL=sandbox.url,
            BUNSYNC_BUNJANG_ACCESS_KEY=DEFAULT_ACCESS_KEY,
            BUNSYNC_BUNJANG_SECRET_KEY=DEFAULT_SECRET_KEY,
        )
    return env


def fetch_rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of one query (from a synchronous test)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def scalar(dsn: str, sql: str) -> int:
    """The integer one query returns."""
    return int(fetch_rows(dsn, sql)[0][0])


def wait_in_sync(sandbox: SandboxProcess, dsn: str, deadline_s: float) -> list[Mismatch]:
    """Wait until ``reporting.order_item_status`` equals the sandbox's truth; the mismatches left."""
    end = time.monotonic() + deadline_s
    while True:
        truth = sandbox.admin("GET", "truth").json()["items"]
        wrong = asyncio.run(mismatches_against_truth(truth, dsn))
        if not wrong or time.monotonic() > end:
            return wrong
        time.sleep(0.3)
