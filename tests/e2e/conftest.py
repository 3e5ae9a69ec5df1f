"""End-to-end fixtures: real ``bunsync serve`` and ``bunsync sandbox`` processes, and a database proxy.

What tests import (``Serve``, ``SandboxProcess``, ``TcpProxy``, ``SECRET``, ``free_port``...) lives in
``tests/e2e/helpers.py``; this file only defines fixtures. Every process listens on a port the kernel
chose free a moment before (``free_port``): with pytest-xdist each worker has its own PostgreSQL and
picks its own ports, so workers do not share a listener.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.helpers import (
    ENV_BASE,
    SECRET,
    SandboxProcess,
    Serve,
    TcpProxy,
    free_port,
    limit_open_files,
    wait_ready,
)


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
                preexec_fn=(lambda: limit_open_files(open_files)) if open_files else None,
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


@pytest.fixture
def db_proxy(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of this test's database, and the DSN that goes through it."""
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    yield proxy, database_url.replace(f":{parts.port}/", f":{proxy.port}/")
    proxy.close()


@pytest.fixture
def start_sandbox_process(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
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
