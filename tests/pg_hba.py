"""Make the test cluster ask ``bunsync_app`` for a password on one database, as a managed PostgreSQL does.

The test cluster trusts every local login. A rule for one database and one role, put first in
``pg_hba.conf``, changes nothing for any other test; it is removed (and the server reloaded) on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_postgresql.executors import PostgreSQLExecutor


@contextmanager
def password_required(proc: PostgreSQLExecutor, dbname: str, role: str = "bunsync_app") -> Iterator[None]:
    """While inside, ``role`` must give its SCRAM password to reach ``dbname`` over TCP."""
    datadir = Path(proc.datadir)
    hba = datadir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host {dbname} {role} 127.0.0.1/32 scram-sha-256\n{original}")
    try:
        _reload(datadir)
        _wait_until(proc, dbname, role, refused=True)
        yield
    finally:
        hba.write_text(original)
        _reload(datadir)
        _wait_until(proc, dbname, role, refused=False)


def _reload(datadir: Path) -> None:
    # SIGHUP to the postmaster is what pg_ctl reload sends (pg_ctl refuses to run as root; tests may).
    pid = int((datadir / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGHUP)


def _wait_until(
    proc: PostgreSQLExecutor, dbname: str, role: str, *, refused: bool, deadline_s: float = 10
) -> None:
    """Wait (bounded) until a password-less login of ``role`` is refused (or accepted again)."""
    end = time.monotonic() + deadline_s
    while True:
        done = subprocess.run(
            [
                "psql",
                "-h",
                proc.host,
                "-p",
                str(proc.port),
                "-U",
                role,
                "-d",
                dbname,
                "-w",
                "-tAc",
                "SELECT 1",
            ],
            capture_output=True,
            text=True,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        )
        if (done.returncode != 0) == refused:
            return
        if time.monotonic() > end:
            raise AssertionError(f"pg_hba.conf reload not effective after {deadline_s} s: {done.stderr}")
        time.sleep(0.05)
