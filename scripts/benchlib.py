"""Shared pieces of the benchmark scripts (stdlib only, importable before the venv is active).

- :func:`reexec_in_venv`: run a script under the project's ``.venv`` whatever python started it;
- :func:`free_port`, :func:`pg_bin`, :func:`clean_env`: a loopback port, a PostgreSQL binary, and an
  environment without the caller's ``BUNSYNC_*`` settings;
- :class:`Cluster`: a throwaway PostgreSQL cluster on 127.0.0.1, started with ``pg_ctl_unprivileged``
  (so it also works as root), stopped and removed by the caller;
- :func:`serve`: a server process (``bunsync serve``, ``bunsync sandbox``, a baseline) from start, once it
  answers a readiness URL, to SIGTERM at the end of the block;
- :func:`machine`: the facts a benchmark table names (cores, CPU model, Python, kernel, load, date).

Every benchmark script is ``scripts/<name>.py`` and imports this module (``scripts/`` is on ``sys.path``
when a script runs as ``python scripts/<name>.py``); see ``scripts/README.md``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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


def pg_bin(name: str) -> str:
    """A PostgreSQL binary: the newest /usr/lib/postgresql/*/bin one (it matches the server binaries
    pg_ctl uses), else the one on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]), reverse=True
    )
    if candidates:
        return str(candidates[0])
    found = shutil.which(name)
    if found:
        return found
    raise BenchError(f"{name} not found: install the PostgreSQL server binaries (apt-get install postgresql)")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``BUNSYNC_*`` variable, plus ``extra``: a server under
    benchmark is configured by the script alone, not by the shell that started it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNSYNC_")}
    return {**env, **extra}


@contextlib.contextmanager
def serve(
    cmd: list[str], *, env: dict[str, str], ready_url: str, logfile: Path, name: str, deadline_s: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (output to ``logfile``) until the block ends, once ``ready_url`` answers 200; raises
    :class:`BenchError` with the log's tail if it exits or is not ready within ``deadline_s``."""
    with logfile.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        end = time.monotonic() + deadline_s
        while not _answers(ready_url):
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{logfile.read_text()[-3000:]}")
            if time.monotonic() > end:
                raise BenchError(f"{name} not ready after {deadline_s:.0f} s:\n{logfile.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)
    return False


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
