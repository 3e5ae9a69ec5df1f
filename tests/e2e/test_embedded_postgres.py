"""``bunsync serve`` with no database configured: the embedded cluster, its life cycle, clear errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.webhook.signature import sign
from tests.e2e.helpers import ENV_BASE, SECRET, Serve

pytestmark = pytest.mark.e2e

BODY = (
    b'{"eventId":"EMB1","eventType":"order.status.changed","payloadVersion":"v1",'
    b'"data":{"orderId":7,"orderItems":[{"orderItemId":71,"pid":5,"orderStatus":"PAYMENT_RECEIVED"}]}}'
)


def _postmaster_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pg" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _events(data_dir: Path) -> str:
    return _query(data_dir, "SELECT string_agg(event_id, ',') FROM reporting.webhook_events")


def _query(data_dir: Path, sql: str) -> str:
    """One value, read as the cluster's owner over its private socket."""
    return subprocess.run(
        [
            "psql",
            "-h",
            str(data_dir / "run"),
            "-U",
            "bunsync",
            "-d",
            "bunsync",
            "-tAc",
            sql,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's 0700 temp tree: as root, the server runs as an unprivileged user who must reach it.
    top = Path(tempfile.mkdtemp(prefix="bunsync-e2e-", dir="/tmp"))
    top.chmod(0o711)
    yield top / "data"
    shutil.rmtree(top, ignore_errors=True)


def test_embedded_cluster_starts_stops_on_sigterm_and_keeps_data(
    data_dir: Path, start_serve: Callable[..., Serve]
) -> None:
    env = {"BUNSYNC_DATA_DIR": str(data_dir), "BUNSYNC_DATABASE_URL": ""}

    first = start_serve(env)
    r = httpx.post(
        f"{first.url}/webhooks/bunjang",
        content=BODY,
        headers={"X-Bun-Webhook-Signature": sign(SECRET, int(time.time()), BODY)},
    )
    assert r.status_code == 204
    assert _postmaster_running(data_dir)
    # The embedded cluster's owner is a superuser: serve's own sessions are bunsync_app's, not its.
    logins = (
        "SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity "
        "WHERE application_name LIKE 'bunsync:%'"
    )
    assert _query(data_dir, logins) == "bunsync_app"
    assert first.stop(signal.SIGTERM) == 0
    assert not _postmaster_running(data_dir), "SIGTERM must stop the embedded PostgreSQL"
    assert not list((data_dir / "run").glob(".s.PGSQL.*")), "the socket must be gone"

    second = start_serve(env)
    assert second.stop(signal.SIGINT) == 0
    assert not _postmaster_running(data_dir)
    # Data survived the restarts; read it with the cluster started once more.
    third = start_serve(env)
    assert _events(data_dir) == "EMB1"
    third.stop()


def _bunsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_configuration_is_one_clear_line(tmp_path: Path) -> None:
    done = _bunsync("serve", env={**ENV_BASE, "BUNSYNC_PORT": "eighty"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bunsync: configuration error: BUNSYNC_PORT: must be an integer (got 'eighty')"
    ]
    missing = {k: v for k, v in ENV_BASE.items() if k != "BUNSYNC_WEBHOOK_SECRETS"}
    done = _bunsync("serve", env={**missing, "BUNSYNC_WEBHOOK_SECRETS": ""})
    assert done.returncode == 2
    assert "BUNSYNC_WEBHOOK_SECRETS" in done.stderr and "Traceback" not in done.stderr


def test_unreachable_database_is_one_clear_line() -> None:
    done = _bunsync(
        "migrate",
        "--wait",
        "1",
        env={**ENV_BASE, "BUNSYNC_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("bunsync: database unavailable")


def test_missing_postgresql_binaries_say_what_to_install(tmp_path: Path) -> None:
    from app.store.embedded_pg import EmbeddedPostgresError, find_binary

    with pytest.raises(EmbeddedPostgresError, match="install them"):
        find_binary("definitely-not-a-postgres-binary")


def test_demo_runs_end_to_end_and_leaves_nothing_running(tmp_path: Path) -> None:
    top = Path(tempfile.mkdtemp(prefix="bunsync-demo-test-", dir="/tmp"))
    top.chmod(0o711)
    try:
        done = _bunsync("demo", "--orders", "40", "--rounds", "5", "--data-dir", str(top / "demo"), env={})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 mismatches" in done.stdout
        # The change feed, forwarded to the sandbox's consumer (down, then failing at random, meanwhile).
        assert "the consumer received every confirmed change once, in order, each signature valid" in (
            done.stdout
        )
        assert "clean: no byte of the forgotten buyer's data is left" in done.stdout  # the pg_dump scan
        assert "0 after" in done.stdout and ": erased (request): /data/delivery/address:" in done.stdout
        assert not _postmaster_running(top / "demo" / "db")
    finally:
        shutil.rmtree(top, ignore_errors=True)
