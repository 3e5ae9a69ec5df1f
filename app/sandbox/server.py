"""Build the sandbox's Litestar app and serve it with uvicorn.

- :func:`create_app` gives the ASGI app for a :class:`SandboxConfig`; its :class:`Sandbox` is
  ``app.state.sandbox`` (tests read it directly; everything else goes through ``/_sandbox/``).
- :func:`bind` opens the listening socket (port 0 = any free port) so the real port is known before
  serving; :func:`serve` runs uvicorn on it until ``server.should_exit`` or a signal.

Errors that Litestar raises itself (unknown route, wrong method, bad admin body, a crash) are answered
in Bunjang's error shape ``{"errorCode", "reason"}`` too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException

from app.sandbox import admin, api, consumer_api
from app.sandbox.config import SandboxConfig
from app.sandbox.service import Sandbox
from app.sandbox.wire import error_body

log = structlog.get_logger(__name__)

_CODES = {
    400: "BAD_REQUEST",
    401: "INVALID_AUTH_TOKEN",
    403: "NOT_ENOUGH_PERMISSION",
    404: "RESOURCE_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    429: "TOO_MANY_REQUESTS",
}


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    reason = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        reason = f"{reason}: {exc.extra}"
    code = _CODES.get(exc.status_code, "INTERNAL_ERROR")
    return Response(
        content=error_body(code, reason), status_code=exc.status_code, media_type="application/json"
    )


def _crash(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("sandbox.handler_crashed", path=request.url.path, error=repr(exc))
    return Response(
        content=error_body("INTERNAL_ERROR", "sandbox bug: see its log"),
        status_code=500,
        media_type="application/json",
    )


def create_app(config: SandboxConfig, sandbox: Sandbox | None = None) -> Litestar:
    """The sandbox as an ASGI app: Bunjang's REST API, ``/_sandbox/`` admin endpoints and the
    simulated partner endpoint ``/_sandbox/consumer`` (:mod:`app.sandbox.consumer_api`).

    Pass ``sandbox`` to keep a handle on the instance the app serves (default: a new one).
    """
    sandbox = sandbox or Sandbox(config)

    def provide_sandbox() -> Sandbox:
        return sandbox

    return Litestar(
        route_handlers=[api.get_order, api.list_orders, *admin.ROUTES, *consumer_api.ROUTES],
        dependencies={"sandbox": Provide(provide_sandbox, sync_to_thread=False)},
        on_startup=[sandbox.start],
        on_shutdown=[sandbox.stop],
        exception_handlers={HTTPException: _http_error, Exception: _crash},
        state=State({"sandbox": sandbox}),
        openapi_config=None,
        logging_config=None,  # the process configures logging (app.logs), as bunsync serve does
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``OSError`` if it is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(app: Callable[..., Any], *, access_log: bool = False) -> uvicorn.Server:
    """A uvicorn server for ``app`` (logging left to the caller's configuration)."""
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=access_log,
        timeout_graceful_shutdown=5,
        # The REST answers carry their own Date (the dateOffsetS fault shifts it); two would be ambiguous.
        date_header=False,
    )
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    """The base URL clients use for a socket from :func:`bind`."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True, slots=True)
class Running:
    """A server started by :func:`serve_in_background`: its base URL."""

    url: str


@asynccontextmanager
async def serve_in_background(
    app: Callable[..., Any], host: str = "127.0.0.1", port: int = 0, *, startup_timeout_s: float = 10.0
) -> AsyncIterator[Running]:
    """Serve any ASGI ``app`` with uvicorn on the running loop (port 0 = ephemeral) until the block ends."""
    sock = bind(host, port)
    server = make_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{url_of(sock)}")
    try:
        async with asyncio.timeout(startup_timeout_s):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("uvicorn stopped during startup")
                await asyncio.sleep(0.01)
        yield Running(url_of(sock))
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(startup_timeout_s):
                await task
        finally:
            sock.close()


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    """A sandbox served by :func:`run_sandbox`: its base URL and the live instance."""

    url: str
    sandbox: Sandbox


@asynccontextmanager
async def run_sandbox(config: SandboxConfig) -> AsyncIterator[RunningSandbox]:
    """Run a sandbox in this process (tests, the demo): ``async with run_sandbox(cfg) as sb: sb.url``."""
    sandbox = Sandbox(config)
    async with serve_in_background(create_app(config, sandbox), config.host, config.port) as running:
        yield RunningSandbox(running.url, sandbox)
