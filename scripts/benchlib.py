"""Shared pieces of the benchmark scripts (stdlib only, importable before the venv is active).

- :func:`reexec_in_venv`: run a script under the project's ``.venv`` whatever python started it;
- :class:`Cluster`: a throwaway PostgreSQL cluster on 127.0.0.1, started with ``pg_ctl_unprivileged``
  (so it also works as root), stopped and removed by the caller;
- :func:`machine`: the facts a benchmark table names (cores, CPU model, Python, kernel, load, date).

``scripts/bench_ingest`` keeps its own copy of the cluster code; new benchmarks use this module.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
PG_CTL = ROOT / "scripts" / "pg_ctl_unprivileged"


class BenchError(Exception):
    """Something the user can fix, or a phase that failed; printed as one line."""


def reexec_in_venv(script: str) -> None:
    """Re-execute ``script`` with the venv's python unless it already runs there."""
    if not VENV_PYTHON.exists():
        raise SystemExit(
            f"{Path(script).name}: {VENV_PYTHON} is missing: create the venv first (scripts/setup)"
        )
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(script).resolve()), *sys.argv[1:]])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()


def machine() -> dict[str, str]:
    """What a benchmark table says about where it ran (PostgreSQL's version comes from the cluster)."""
    one, five, fifteen = load_average()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        "load": f"{one:.2f} {five:.2f} {fifteen:.2f}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


class Cluster:
    """A throwaway PostgreSQL cluster in ``workdir`` on 127.0.0.1, durable settings (fsync on)."""

    def __init__(self, workdir: Path, *, max_connections: int = 100, settings: str = "") -> None:
        self.data = workdir / "pgdata"
        self.logfile = workdir / "pglog" / "postgres.log"
        self.port = free_port()
        self.max_connections = max_connections
        self.settings = settings
        self.started = False

    def dsn(self, database: str) -> str:
        """The DSN of ``database`` as the superuser ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """initdb and start; raises :class:`BenchError` with the server log's tail if either fails."""
        self._pg_ctl("initdb", "-D", str(self.data), "-o", "--auth=trust -U postgres --encoding=UTF8")
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data} "
            f"-c max_connections={self.max_connections} -c fsync=on -c synchronous_commit=on {self.settings}"
        )
        self._pg_ctl("start", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "-o", options)
        self.started = True

    def stop(self) -> None:
        """Stop the server (immediate: the data is thrown away); never raises."""
        if self.started:
            self.started = False
            with contextlib.suppress(subprocess.SubprocessError, BenchError):
                self._pg_ctl("stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30")

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            [str(PG_CTL), *args], capture_output=True, text=True, timeout=120, check=False, cwd="/"
        )
        if done.returncode:
            log_tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise BenchError(
                f"pg_ctl {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}\n{log_tail}"
            )
