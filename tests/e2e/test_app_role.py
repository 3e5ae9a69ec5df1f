"""The real ``bunsync serve`` logs in as ``bunsync_app`` when its DSN is the owner's (a superuser here),
with ``BUNSYNC_APP_PASSWORD`` where PostgreSQL asks for a password, and says what to do when it cannot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from pytest_postgresql.executors import PostgreSQLExecutor

from tests.e2e.helpers import ENV_BASE, Serve, bunsync_env, fetch_rows, free_port, post_webhook, webhook_body
from tests.fixtures.pg_hba import password_required

pytestmark = pytest.mark.e2e

PROJECTIONS = 3  # each active projector holds an advisory lock on a connection of its own

SESSIONS = """
SELECT a.usename, count(*) AS sessions,
       count(*) FILTER (WHERE EXISTS (SELECT FROM pg_locks AS l
                                       WHERE l.pid = a.pid AND l.locktype = 'advisory')) AS lock_holders
FROM pg_stat_activity AS a
WHERE a.application_name = $1
GROUP BY a.usename
"""


def serve_sessions(dsn: str, serve: Serve, deadline_s: float = 30) -> dict[str, int]:
    """Wait until ``serve``'s projectors hold their locks; then its sessions per login role."""
    app_name = f"bunsync:{socket.gethostname()}:{serve.process.pid}"[:63]
    end = time.monotonic() + deadline_s
    while True:
        rows = fetch_rows(dsn, SESSIONS, app_name)
        if sum(r["lock_holders"] for r in rows) >= PROJECTIONS:
            return {r["usename"]: r["sessions"] for r in rows}
        assert time.monotonic() < end, f"serve's projectors never took their locks: {rows}"
        time.sleep(0.1)


def test_serve_logs_in_as_bunsync_app_on_every_connection(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    serve = start_serve(bunsync_env(database_url, None, free_port()))
    assert post_webhook(serve, webhook_body("ROLE1")).status_code == 204
    sessions = serve_sessions(database_url, serve)
    assert set(sessions) == {"bunsync_app"}, sessions
    assert sessions["bunsync_app"] >= PROJECTIONS + 2  # pools, ingest writers and the lock holders
    assert serve.stop() == 0


def _bunsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, **ENV_BASE, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_where_postgresql_asks_for_a_password_serve_uses_bunsync_app_password(
    database_url: str, postgresql_proc: PostgreSQLExecutor, start_serve: Callable[..., Serve]
) -> None:
    password = "e2e-app-password"
    env = bunsync_env(database_url, None, free_port())
    try:
        with password_required(postgresql_proc, database_url.rsplit("/", 1)[1]):
            refused = _bunsync("serve", env=env)
            assert refused.returncode == 1
            last = refused.stderr.strip().splitlines()[-1]
            assert last.startswith("bunsync: database role error:") and "BUNSYNC_APP_PASSWORD" in last
            assert "Traceback" not in refused.stderr

            env["BUNSYNC_APP_PASSWORD"] = password
            migrated = _bunsync("migrate", env=env)
            assert migrated.returncode == 0, migrated.stderr
            assert password not in migrated.stdout + migrated.stderr
            serve = start_serve(env)
            assert post_webhook(serve, webhook_body("ROLE2")).status_code == 204
            assert set(serve_sessions(database_url, serve)) == {"bunsync_app"}
            status = _bunsync("status", "--json", env=env)
            assert status.returncode in (0, 1), status.stderr  # answered (not 2, unreachable)
            assert serve.stop() == 0
            assert password not in serve.logs()
    finally:
        fetch_rows(database_url, "ALTER ROLE bunsync_app PASSWORD NULL")
