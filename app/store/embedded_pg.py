"""The embedded PostgreSQL cluster, used when ``BUNSYNC_DATABASE_URL`` is unset.

It lives under ``BUNSYNC_DATA_DIR`` (``pg/`` holds the cluster, ``run/`` its unix socket, ``postgresql.log``
its log), listens on that socket only (no TCP port to collide with), and is initialised on first use
with the local PostgreSQL binaries. PostgreSQL refuses to run as root, so as root the server runs as an
unprivileged system user (``postgres`` if it exists, else ``nobody``; ``BUNSYNC_PG_USER`` overrides).

Authentication is ``trust``, and safe as such: there is no TCP listener, and the socket's folder ``run/``
is ``0700``, so only bunsync's own user (and root) can reach it. Two roles log in through it: ``bunsync``,
the superuser that owns the database and migrates, and ``bunsync_app`` (created by ``migrate``), as which
every session of the running service logs in (``app.store.roles``), so none of them can lift the log's
protection.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import structlog

log = structlog.get_logger(__name__)

SUPERUSER = "bunsync"
DATABASE = "bunsync"
#: No database error may quote event content (buyer data) into postgresql.log: terse drops DETAIL,
#: CONTEXT (which quotes the offending JSON) and HINT; no bind parameter is ever logged with an error
#: or a statement. README ("External PostgreSQL") asks the same of an external server.
LOG_PRIVACY = (
    "-c log_error_verbosity=terse -c log_parameter_max_length=0 -c log_parameter_max_length_on_error=0"
)
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.5432" and a NUL must fit after the folder


class EmbeddedPostgresError(Exception):
    """The embedded cluster cannot be set up or started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class _RunAs:
    uid: int
    gid: int
    name: str
    home: str


def find_binary(name: str) -> str:
    """Path of a PostgreSQL server binary: ``PATH`` first, then Debian's and common install folders."""
    found = shutil.which(name)
    if found:
        return found
    candidates = [
        *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True),
        f"/usr/local/pgsql/bin/{name}",
        f"/opt/homebrew/bin/{name}",
    ]
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    raise EmbeddedPostgresError(
        f"PostgreSQL server binaries not found ({name}): install them (Debian/Ubuntu: "
        "'apt-get install postgresql', macOS: 'brew install postgresql@15') or set BUNSYNC_DATABASE_URL"
    )


class EmbeddedPostgres:
    """Start (initialising on first use) and stop a private cluster; a context manager."""

    def __init__(self, data_dir: Path, run_as: str | None = None) -> None:
        self.root = data_dir.expanduser().resolve()
        self.pgdata = self.root / "pg"
        self.socket_dir = self.root / "run"
        self.logfile = self.root / "postgresql.log"
        self._run_as = _unprivileged_user(run_as) if os.geteuid() == 0 else None
        self._started = False

    @property
    def dsn(self) -> str:
        """The DSN of the cluster's bunsync database, over the unix socket."""
        return f"postgresql://{SUPERUSER}@/{DATABASE}?host={quote(str(self.socket_dir), safe='')}"

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Initialise the cluster if needed, start it and make sure the database exists."""
        pg_ctl = find_binary("pg_ctl")
        find_binary("postgres")
        if len(str(self.socket_dir)) > _SOCKET_PATH_MAX - len("/.s.PGSQL.5432"):
            raise EmbeddedPostgresError(
                f"BUNSYNC_DATA_DIR {self.root} is too long for a unix socket path: choose a shorter one"
            )
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("embedded_postgres_initdb", pgdata=str(self.pgdata))
            self._run(
                [
                    find_binary("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                what="initdb",
            )
        if self._status(pg_ctl) == 0:
            raise EmbeddedPostgresError(
                f"an embedded PostgreSQL is already running in {self.pgdata}: is another bunsync using "
                "this BUNSYNC_DATA_DIR? Stop it, or use another directory"
            )
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' {LOG_PRIVACY}"
        self._run(
            [
                pg_ctl,
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logfile),
                "-o",
                options,
            ],
            what="pg_ctl start",
        )
        self._started = True
        log.info("embedded_postgres_started", socket_dir=str(self.socket_dir), log=str(self.logfile))
        self._ensure_database()

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: open transactions roll back, committed data is safe)."""
        if not self._started:
            return
        self._started = False
        try:
            self._run(
                [find_binary("pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.pgdata)],
                what="pg_ctl stop",
            )
            log.info("embedded_postgres_stopped")
        except EmbeddedPostgresError as exc:
            log.error(
                "embedded_postgres_stop_failed",
                error=str(exc),
                action=f"the cluster may still run: stop it with pg_ctl stop -D {self.pgdata}",
            )

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for d in (self.pgdata, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is None:
            return
        # The server user needs its own folders, the log file, and a way through the root folder.
        for path in (self.pgdata, self.socket_dir):
            os.chown(path, self._run_as.uid, self._run_as.gid)
        self.logfile.touch(exist_ok=True)
        os.chown(self.logfile, self._run_as.uid, self._run_as.gid)
        # Search permission only (no listing): the server user must reach pg/ and run/ inside.
        os.chmod(self.root, os.stat(self.root).st_mode | 0o011)  # noqa: S103
        for parent in self.root.parents:
            if not os.stat(parent).st_mode & 0o001:
                raise EmbeddedPostgresError(
                    f"{parent} cannot be entered by user {self._run_as.name}, who runs the embedded "
                    "PostgreSQL (PostgreSQL refuses to run as root): set BUNSYNC_DATA_DIR to a folder "
                    "outside it (e.g. /var/lib/bunsync)"
                )

    def _ensure_database(self) -> None:
        created = self._exec([find_binary("createdb"), "-h", str(self.socket_dir), "-U", SUPERUSER, DATABASE])
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise EmbeddedPostgresError(f"createdb failed: {created.stderr.strip()}; see {self.logfile}")

    def _status(self, pg_ctl: str) -> int:
        return self._exec([pg_ctl, "status", "-D", str(self.pgdata)]).returncode

    def _run(self, argv: list[str], *, what: str) -> str:
        done = self._exec(argv)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise EmbeddedPostgresError(f"{what} failed ({'; '.join(detail[-3:])}); see {self.logfile}")
        return done.stdout

    def _exec(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary (as the unprivileged user when we are root), capturing its output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if self._run_as is None:
            return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)  # noqa: S603
        env.update(HOME=self._run_as.home, USER=self._run_as.name, LOGNAME=self._run_as.name)
        return subprocess.run(  # noqa: S603  (fixed argv, no shell)
            argv,
            capture_output=True,
            text=True,
            check=False,
            env=env,
            user=self._run_as.uid,
            group=self._run_as.gid,
            extra_groups=[],
            cwd="/",
        )


def _unprivileged_user(name: str | None) -> _RunAs:
    candidates = [name] if name else ["postgres", "nobody"]
    for candidate in candidates:
        try:
            pw = pwd.getpwnam(candidate)
        except KeyError:
            continue
        home = pw.pw_dir if os.path.isdir(pw.pw_dir) else "/"
        return _RunAs(uid=pw.pw_uid, gid=pw.pw_gid, name=candidate, home=home)
    raise EmbeddedPostgresError(
        f"running as root, but no unprivileged user ({', '.join(candidates)}) exists to run PostgreSQL: "
        "create one, set BUNSYNC_PG_USER, or run bunsync as an ordinary user"
    )
