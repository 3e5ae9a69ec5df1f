"""End-to-end fixtures: the real ``bunsync serve`` process, over HTTP, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

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


def _limit_open_files(n: int | None) -> None:
    import resource

    if n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """Start ``bunsync serve`` with extra env; every process started is stopped at the end."""
    started: list[Serve] = []

    def start(env: dict[str, str], *args: str, wait: bool = True, open_files: int | None = None) -> Serve:
        port = int(env.get("BUNSYNC_PORT") or free_port())
        admin_port = int(env.get("BUNSYNC_ADMIN_PORT") or free_port())
        full_env = {
            **os.environ,
            **ENV_BASE,
            "BUNSYNC_PORT": str(port),
            "BUNSYNC_ADMIN_PORT": str(admin_port),
            **env,
        }
        log_path = tmp_path / f"serve-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", *args],
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                # open_files: soft and hard RLIMIT_NOFILE of the process (fd exhaustion tests)
                preexec_fn=(lambda: _limit_open_files(open_files)) if open_files else None,
            )
        admin_host = full_env.get("BUNSYNC_ADMIN_HOST", "127.0.0.1")
        serve = Serve(
            process=process,
            url=f"http://127.0.0.1:{port}",
            log_path=log_path,
            admin_url=f"http://{admin_host}:{admin_port}" if admin_port else None,
        )
        started.append(serve)
        if wait:
            wait_ready(serve.url, process, log_path)
        return serve

    yield start
    for s in started:
        if s.process.poll() is None:
            s.process.kill()
            s.process.wait(10)


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


@pytest.fixture
def db_proxy(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of this test's database, and the DSN that goes through it."""
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    yield proxy, database_url.replace(f":{parts.port}/", f":{proxy.port}/")
    proxy.close()


@dataclass
class SandboxProcess:
    """A running ``bunsync sandbox`` process."""

    process: subprocess.Popen[bytes]
    url: str

    def admin(self, method: str, path: str, **kw: object) -> httpx.Response:
        return httpx.request(method, f"{self.url}/_sandbox/{path}", timeout=60, **kw)  # type: ignore[arg-type]


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
    """Start ``bunsync sandbox`` processes (signing with the e2e secret); stopped at the end."""
    started: list[SandboxProcess] = []

    def start(*args: str) -> SandboxProcess:
        port = free_port()
        log_path = tmp_path / f"sandbox-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "sandbox",
                    "--port",
                    str(port),
                    "--webhook-secret",
                    SECRET,
                    "--webhook-retry-base",
                    "0.2",
                    *args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        sandbox = SandboxProcess(process=process, url=f"http://127.0.0.1:{port}")
        started.append(sandbox)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{sandbox.url}/_sandbox/clock", timeout=1).status_code == 200:
                    return sandbox
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.1)

    yield start
    for s in started:
        s.process.terminate()
        try:
            s.process.wait(10)
        except subprocess.TimeoutExpired:
            s.process.kill()
