"""Benchmark webhook ingest against ceilings measured in the same run, on the same machine and database.

What it measures, in ONE run on a throwaway PostgreSQL cluster (default durability: fsync and
synchronous_commit on), each phase for the same duration and with the same concurrency (64):

  (a) ceiling:  pgbench, 64 clients (-j 2), each transaction inserting one row shaped like a webhook
                event into a scratch table shaped like bunsync.event_log (text/jsonb/bytea/timestamptz
                columns, unique idempotency key, the same indexes): tx/s.
  (b) baseline: scripts/bench_ingest_baseline.py, a bare Litestar route that verifies the signature and
                inserts the row in one transaction per request, served as `bunsync serve` serves.
  (c) bunsync:  `bunsync serve` (its own database on the same cluster).

(b) and (c) are loaded by wrk in its own process (64 connections, 2 threads) with a Lua script that sends
precomputed, distinct, validly signed webhooks (each wrk thread takes its own disjoint subset, so no
eventId repeats); it reports req/s, p50, p99 and non-2xx. After (c) the rows in bunsync.event_log are
checked against the 2xx answers. Then one table: the figures, (c)/(a), (c)/(b), and the targets of
issue 2 ((c) >= 0.5 x (a), (c) >= 2 x (b), p99 <= 50 ms, no non-2xx) with PASS/FAIL.

Everything listens on 127.0.0.1 only; the cluster, servers and files are removed at the end, also on
Ctrl-C or failure. Needs the project's venv (.venv: it re-executes itself with .venv/bin/python), the
PostgreSQL 15+ server binaries and pgbench, and wrk (installed with apt-get when missing and run as root).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    ROOT,
    VENV_PYTHON,
    BenchError,
    Cluster,
    clean_env,
    cpu_model,
    free_port,
    pg_bin,
    reexec_in_venv,
    serve,
)

BASELINE_APP = ROOT / "scripts" / "bench_ingest_baseline.py"
WEBHOOK_PATH = "/webhooks/bunjang"
SECRET = "bench-ingest-secret"
MAX_DURATION_S = 240  # signatures are made before a phase and must stay within the 300 s tolerance

# The scratch table for (a) and (b): the columns, key and indexes of bunsync.event_log (0001_event_log.sql).
SCRATCH_DDL = """
CREATE SCHEMA bench;
CREATE TABLE bench.event_log (
    position        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream          text        NOT NULL,
    type            text        NOT NULL,
    payload         jsonb,
    raw             bytea,
    source          text        NOT NULL,
    signed_at       timestamptz,
    received_at     timestamptz,
    idempotency_key text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT event_log_idempotency_key_key UNIQUE (idempotency_key)
);
CREATE INDEX event_log_tx_position ON bench.event_log (tx_id, position);
CREATE INDEX event_log_stream ON bench.event_log (stream, position);
"""

# (a): one transaction = one row of the same shape as a webhook event, with a fresh eventId.
PGBENCH_SCRIPT = r"""
\set order random(1, 10000000)
\set item random(1, 1000000000)
INSERT INTO bench.event_log (stream, type, payload, raw, source, signed_at, received_at, idempotency_key)
SELECT 'order-' || :order::bigint, 'webhook.order_status_changed.v1', body::jsonb,
       convert_to(body, 'UTF8'), 'webhook', now(), now(), 'webhook:' || event_id
FROM (SELECT event_id,
             format('{"eventId":"%s","eventType":"order.status.changed","payloadVersion":"v1",'
                    '"data":{"orderId":%s,"orderItems":[{"orderItemId":%s,"pid":%s,'
                    '"orderStatus":"PAYMENT_RECEIVED"}]}}',
                    event_id, :order::bigint, :item::bigint, :item::bigint) AS body
      FROM (SELECT gen_random_uuid()::text AS event_id) AS k) AS b;
"""

# wrk: every thread loads its own disjoint share (line i goes to thread i mod n) of a file of
# "<signature header>\t<body>" lines, pre-formats the requests, and counts answers in response().
# done() runs in the main Lua state and sums the threads' counters into one machine-readable line.
WRK_LUA = r"""
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  reqs, sent, ok, non2xx = {}, 0, 0, 0
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then
      local tab = line:find("\t", 1, true)
      reqs[#reqs + 1] = wrk.format("POST", args[3], {
        ["Content-Type"] = "application/json",
        ["X-Bun-Webhook-Signature"] = line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
    i = i + 1
  end
  available = #reqs
end

function request()
  sent = sent + 1
  -- Past the end we must send something: repeats are reported, and the caller flags the run.
  return reqs[((sent - 1) % available) + 1]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local sums = {sent = 0, ok = 0, non2xx = 0, repeats = 0, available = 0}
  for _, t in ipairs(threads) do
    local s, a = t:get("sent"), t:get("available")
    sums.sent = sums.sent + s
    sums.ok = sums.ok + t:get("ok")
    sums.non2xx = sums.non2xx + t:get("non2xx")
    sums.available = sums.available + a
    if s > a then sums.repeats = sums.repeats + (s - a) end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d sent=%d ok=%d non2xx=%d repeats=%d available=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, sums.sent, sums.ok, sums.non2xx, sums.repeats, sums.available,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    latency_ms: float
    failed: int


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    sent: int
    ok: int
    non2xx: int
    repeats: int
    available: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    rows: int = -1  # rows the phase added to its table, once counted
    server_cpu_s: float = 0.0  # CPU time of the server's processes during the measured run
    pg_cpu_s: float = 0.0  # CPU time of PostgreSQL's processes during the measured run

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    def cpu_us_per_request(self) -> tuple[float, float]:
        """CPU µs per answered request of the server and of PostgreSQL: unlike req/s, this hardly moves
        when other work on the machine takes cores away, so it is what compares two versions."""
        answered = max(1, self.ok + self.non2xx)
        return self.server_cpu_s * 1e6 / answered, self.pg_cpu_s * 1e6 / answered

    @property
    def in_flight(self) -> int:
        """Requests sent but unanswered when wrk stopped (the server may still have stored them)."""
        return max(0, self.sent - self.ok - self.non2xx)


# --------------------------------------------------------------------------------------------- tools


def _ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk not found: install it (Debian/Ubuntu: sudo apt-get install -y wrk) and rerun")
    print("bench_ingest: wrk not found; installing it with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str) -> int:
        quiet = subprocess.DEVNULL
        command = ["apt-get", *args]
        return subprocess.run(
            command, env=env, check=False, stdout=quiet, stderr=quiet, timeout=300
        ).returncode

    if apt_get("install", "-y", "wrk"):
        apt_get("update")
        apt_get("install", "-y", "wrk")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("could not install wrk with apt-get: install it by hand and rerun")
    return found


async def _sql(dsn: str, *statements: str) -> list[Any]:
    """Run each statement on one connection; return each query's first value (None for commands)."""
    import asyncpg  # the venv's; imported late because this file re-executes itself into the venv

    conn = await asyncpg.connect(dsn)
    try:
        return [
            await conn.fetchval(s) if s.startswith("SELECT") else await conn.execute(s) and None
            for s in statements
        ]
    finally:
        await conn.close()


def sql(dsn: str, *statements: str) -> list[Any]:
    return asyncio.run(_sql(dsn, *statements))


# ----------------------------------------------------------------------------------------- load: wrk


def write_requests(path: Path, count: int, prefix: str) -> None:
    """``count`` distinct, validly signed webhooks (signed now) as ``<header>\\t<body>`` lines."""
    from app.webhook.signature import sign  # the venv's, see _sql

    rng = random.Random(prefix)
    t = int(time.time())
    with path.open("w") as out:
        for i in range(count):
            order = rng.randrange(1, 10_000_000)
            item = rng.randrange(1, 1_000_000_000)
            body = json.dumps(
                {
                    "eventId": f"{prefix}-{i}",
                    "eventType": "order.status.changed",
                    "payloadVersion": "v1",
                    "data": {
                        "orderId": order,
                        "orderItems": [{"orderItemId": item, "pid": item, "orderStatus": "PAYMENT_RECEIVED"}],
                    },
                },
                separators=(",", ":"),
            ).encode()
            out.write(f"{sign(SECRET, t, body)}\t{body.decode()}\n")


def run_wrk(
    wrk: str, args: argparse.Namespace, workdir: Path, port: int, name: str, seconds: int
) -> WrkResult:
    """Load ``127.0.0.1:port`` with fresh signed requests for ``seconds``; the summed counters."""
    lua = workdir / "bench_ingest.lua"
    lua.write_text(WRK_LUA)
    requests = workdir / f"requests-{name}.tsv"
    write_requests(requests, args.rate * seconds, f"{name}-{os.getpid()}-{time.time_ns()}")
    cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
        "--",
        str(requests),
        str(args.threads),
        WEBHOOK_PATH,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    requests.unlink()
    if args.verbose:
        print(done.stdout, done.stderr, sep="\n")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if done.returncode or line is None:
        raise BenchError(f"wrk failed ({name}): {done.stderr.strip() or done.stdout.strip()}")
    v = {k: int(x) for k, x in (kv.split("=") for kv in line.split()[1:])}
    return WrkResult(
        requests=v["requests"],
        duration_s=v["duration_us"] / 1e6,
        sent=v["sent"],
        ok=v["ok"],
        non2xx=v["non2xx"],
        repeats=v["repeats"],
        available=v["available"],
        p50_ms=v["p50_us"] / 1e3,
        p90_ms=v["p90_us"] / 1e3,
        p99_ms=v["p99_us"] / 1e3,
        max_ms=v["max_us"] / 1e3,
        socket_errors=v["connect"] + v["read"] + v["write"] + v["timeout"],
    )


# --------------------------------------------------------------------------------------------- CPU

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is field 3, the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and its descendants: the live ones' own, and
    through their parents' ``cutime``/``cstime`` the ones already reaped."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (fields := _stat(int(entry.name))) is None:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / _CLOCK_TICKS


def postmaster_pid(cluster: Cluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


# ------------------------------------------------------------------------------------------- servers


# -------------------------------------------------------------------------------------------- phases


def phase_pgbench(args: argparse.Namespace, cluster: Cluster, workdir: Path) -> PgbenchResult:
    db = "bench_pgbench"
    sql(cluster.dsn("postgres"), "CREATE DATABASE bench_pgbench")
    sql(cluster.dsn(db), SCRATCH_DDL, "CHECKPOINT")
    script = workdir / "insert_event.sql"
    script.write_text(PGBENCH_SCRIPT)
    cmd = [
        pg_bin("pgbench"),
        "-n",
        "-M",
        "prepared",
        f"-c{args.connections}",
        f"-j{args.threads}",
        f"-T{args.duration}",
        "-f",
        str(script),
        "-h",
        "127.0.0.1",
        "-p",
        str(cluster.port),
        "-U",
        "postgres",
        db,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 120, check=False)
    if args.verbose:
        print(done.stdout, done.stderr, sep="\n")
    tps = re.search(r"^tps = ([\d.]+)", done.stdout, re.M)
    lat = re.search(r"^latency average = ([\d.]+) ms", done.stdout, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", done.stdout, re.M)
    if done.returncode or not tps or not lat:
        raise BenchError(f"pgbench failed: {done.stderr.strip() or done.stdout.strip()}")
    return PgbenchResult(float(tps.group(1)), float(lat.group(1)), int(failed.group(1)) if failed else 0)


def _load_phase(
    args: argparse.Namespace,
    wrk: str,
    workdir: Path,
    port: int,
    name: str,
    dsn: str,
    count: str,
    pids: tuple[int, int],
) -> WrkResult:
    """Warm up, then measure; count (with the query ``count``) the rows the measured run added, and the
    CPU time used meanwhile by the server (``pids[0]``'s tree) and PostgreSQL (``pids[1]``'s)."""
    if args.warmup:
        run_wrk(wrk, args, workdir, port, f"{name}-warmup", args.warmup)
    sql(dsn, "CHECKPOINT")
    before = sql(dsn, count)[0]
    cpu_before = [tree_cpu_s(pid) for pid in pids]
    result = run_wrk(wrk, args, workdir, port, name, args.duration)
    cpu = [tree_cpu_s(pid) - b for pid, b in zip(pids, cpu_before, strict=True)]
    time.sleep(1.0)  # let requests that were in flight when wrk stopped finish
    after = sql(dsn, count)[0]
    return WrkResult(
        **{**result.__dict__, "rows": after - before, "server_cpu_s": cpu[0], "pg_cpu_s": cpu[1]}
    )


def phase_baseline(args: argparse.Namespace, cluster: Cluster, wrk: str, workdir: Path) -> WrkResult:
    db = "bench_baseline"
    sql(cluster.dsn("postgres"), "CREATE DATABASE bench_baseline")
    sql(cluster.dsn(db), SCRATCH_DDL)
    port = free_port()
    cmd = [str(VENV_PYTHON), str(BASELINE_APP), "--dsn", cluster.dsn(db), "--port", str(port)]
    env = clean_env(BUNSYNC_WEBHOOK_SECRETS=SECRET)
    ready = f"http://127.0.0.1:{port}/health/ready"
    logfile = workdir / "baseline.log"
    with serve(cmd, env=env, ready_url=ready, logfile=logfile, name="bench_ingest_baseline.py") as proc:
        count = "SELECT count(*) FROM bench.event_log"
        pids = (proc.pid, postmaster_pid(cluster))
        return _load_phase(args, wrk, workdir, port, "baseline", cluster.dsn(db), count, pids)


def phase_bunsync(args: argparse.Namespace, cluster: Cluster, wrk: str, workdir: Path) -> WrkResult:
    db = "bench_bunsync"
    sql(cluster.dsn("postgres"), "CREATE DATABASE bench_bunsync")
    port = free_port()
    env = clean_env(
        BUNSYNC_DATABASE_URL=cluster.dsn(db),
        BUNSYNC_HOST="127.0.0.1",
        BUNSYNC_PORT=str(port),
        BUNSYNC_ADMIN_PORT=str(free_port()),  # both listeners, as served; off the default 8081
        BUNSYNC_WEBHOOK_SECRETS=SECRET,
        BUNSYNC_BUNJANG_BASE_URL="http://127.0.0.1:9",  # nothing leaves the machine
        BUNSYNC_BUNJANG_ACCESS_KEY="bench",
        BUNSYNC_BUNJANG_SECRET_KEY=base64.b64encode(b"bench-secret-key").decode(),
        BUNSYNC_LOG_FORMAT=args.log_format,
    )
    logfile = Path(os.devnull) if args.bunsync_log == "devnull" else workdir / "bunsync.log"
    ready = f"http://127.0.0.1:{port}/health/ready"
    command = shlex.split(args.bunsync_command)
    with serve(command, env=env, ready_url=ready, logfile=logfile, name="bunsync serve") as proc:
        count = "SELECT count(*) FROM bunsync.event_log"
        pids = (proc.pid, postmaster_pid(cluster))
        return _load_phase(args, wrk, workdir, port, "bunsync", cluster.dsn(db), count, pids)


# -------------------------------------------------------------------------------------------- report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _rows_check(r: WrkResult) -> tuple[bool, str]:
    """The rows a run added must be its 2xx answers, plus at most the requests in flight at the end."""
    ok = r.repeats == 0 and r.ok <= r.rows <= r.ok + r.in_flight
    text = f"{r.rows} rows for {r.ok} 2xx ({r.in_flight} in flight when wrk stopped"
    if r.repeats:
        text += f"; {r.repeats} REPEATED requests: raise --rate"
    return ok, text + ")"


def report(
    args: argparse.Namespace,
    pg_version: str,
    a: PgbenchResult | None,
    b: WrkResult | None,
    c: WrkResult | None,
) -> bool:
    """Print the machine, the table, the ratios and the targets; whether every target passed."""
    print()
    print(
        f"machine: nproc={os.cpu_count()}, CPU {cpu_model()}, {pg_version}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(
        f"load: {args.duration} s per phase, {args.connections} connections, {args.threads} threads "
        f"(wrk / pgbench -j), warm-up {args.warmup} s; fsync=on, synchronous_commit=on; loopback TCP"
    )
    print()
    head = f"{'':34} {'tx/s | req/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'sock err':>8}"
    print(head)
    print("-" * len(head))
    if a:
        print(
            f"{'(a) pgbench insert (ceiling)':34} {a.tps:12.0f} {'':>8} {'':>8} {a.failed:>8} {'':>8}"
            f"   (latency avg {a.latency_ms:.1f} ms)"
        )
    for label, r in (("(b) baseline, 1 tx per request", b), ("(c) bunsync serve", c)):
        if r:
            print(
                f"{label:34} {r.rps:12.0f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} {r.non2xx:>8} {r.socket_errors:>8}"
            )
    for label, r in (("(b)", b), ("(c)", c)):
        if r:
            server, pg = r.cpu_us_per_request()
            print(f"CPU per answered request {label}: server {server:.0f} us, PostgreSQL {pg:.0f} us")
    print()
    results: list[bool] = []
    if c:
        if a:
            print(f"(c)/(a) = {c.rps / a.tps:.2f}")
        if b:
            print(f"(c)/(b) = {c.rps / b.rps:.2f}")
        print()
        print("targets (issue 2):")
        checks: list[tuple[str, str, bool]] = []
        if a:
            checks.append(("(c) >= 0.5 x (a)", f"{c.rps / a.tps:.2f} x", c.rps >= 0.5 * a.tps))
        if b:
            checks.append(("(c) >= 2 x (b)", f"{c.rps / b.rps:.2f} x", c.rps >= 2 * b.rps))
        checks.append(("(c) p99 <= 50 ms", f"{c.p99_ms:.1f} ms", c.p99_ms <= 50))
        checks.append(("(c) no non-2xx", f"{c.non2xx + c.socket_errors}", c.non2xx + c.socket_errors == 0))
        for name, value, ok in checks:
            print(f"  {name:22} {value:>10}   {_verdict(ok)}")
            results.append(ok)
    print()
    for label, r in (("(b)", b), ("(c)", c)):
        if r:
            ok, text = _rows_check(r)
            print(f"rows check {label}: {text}   {_verdict(ok)}")
            results.append(ok)
    return all(results)


# ---------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench_ingest",
        description=__doc__,
        epilog="Prints one table with (a) tx/s, (b)/(c) req/s, p50, p99, non-2xx, the ratios (c)/(a) and "
        "(c)/(b), and issue 2's targets with PASS/FAIL. Exit status: 0 all targets and checks pass, "
        "1 a target or check fails, 2 the benchmark could not run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def duration(value: str) -> int:
        seconds = int(value)
        if not 1 <= seconds <= MAX_DURATION_S:
            raise argparse.ArgumentTypeError(f"must be 1..{MAX_DURATION_S} seconds")
        return seconds

    parser.add_argument("--duration", type=duration, default=15, help="seconds per phase (default 15)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of unmeasured load before (b) and (c) (default 2)"
    )
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections/clients (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads and pgbench -j (default 2)")
    parser.add_argument(
        "--rate",
        type=int,
        default=15_000,
        help="precomputed requests per second of load (default 15000; must exceed what is reached)",
    )
    parser.add_argument(
        "--phases", default="abc", help="which measurements to run, e.g. 'c' (default abc: all)"
    )
    parser.add_argument(
        "--bunsync-command",
        default=f"{shlex.quote(str(ROOT / '.venv' / 'bin' / 'bunsync'))} serve",
        help="command that starts (c) (default: the venv's `bunsync serve`)",
    )
    parser.add_argument(
        "--log-format", default="json", choices=["json", "console"], help="BUNSYNC_LOG_FORMAT for (c)"
    )
    parser.add_argument(
        "--bunsync-log",
        default="file",
        choices=["file", "devnull"],
        help="where (c)'s stderr goes: a file in the work directory (default) or /dev/null",
    )
    parser.add_argument("--verbose", action="store_true", help="also print wrk's and pgbench's own output")
    args = parser.parse_args()
    if not set(args.phases) <= set("abc") or not args.phases:
        parser.error("--phases takes letters from 'abc'")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _idle_warning() -> None:
    """Say so when other work is running: the three phases share the 2 cores with it."""
    with contextlib.suppress(OSError):
        load = float(Path("/proc/loadavg").read_text().split()[0])
        if load > 0.5:
            print(
                f"bench_ingest: warning: 1-min load average is {load:.2f} before starting; other work on "
                "this machine skews the figures (rerun when it is idle)",
                flush=True,
            )


def main() -> int:
    args = parse_args()
    _idle_warning()
    # Ctrl-C and SIGTERM unwind through the finally blocks below: servers stopped, cluster removed.
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="bench_ingest-"))
    cluster = Cluster(workdir, max_connections=args.connections + 100)
    a = b = c = None
    try:
        wrk = _ensure_wrk() if set(args.phases) & set("bc") else ""
        pg_bin("pgbench")
        print(f"bench_ingest: starting PostgreSQL on 127.0.0.1:{cluster.port} in {workdir}", flush=True)
        cluster.start()
        pg_version = sql(
            cluster.dsn("postgres"), "SELECT 'PostgreSQL ' || current_setting('server_version')"
        )[0]
        if "a" in args.phases:
            print(f"bench_ingest: (a) pgbench, {args.duration} s ...", flush=True)
            a = phase_pgbench(args, cluster, workdir)
        if "b" in args.phases:
            print(f"bench_ingest: (b) baseline app under wrk, {args.duration} s ...", flush=True)
            b = phase_baseline(args, cluster, wrk, workdir)
        if "c" in args.phases:
            print(f"bench_ingest: (c) bunsync serve under wrk, {args.duration} s ...", flush=True)
            c = phase_bunsync(args, cluster, wrk, workdir)
        return 0 if report(args, pg_version, a, b, c) else 1
    except BenchError as exc:
        print(f"bench_ingest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_ingest: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    reexec_in_venv(__file__)
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
