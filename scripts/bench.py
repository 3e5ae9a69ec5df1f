"""Run bunsync's benchmarks and print ONE table of their figures, same-run references and ratios.

Runs, one after the other (each on its own throwaway PostgreSQL cluster, loopback only), and shows
their output as it comes:

  ingest     scripts/bench_ingest.py: `bunsync serve` under wrk (64 connections): req/s and p99, as ratios
             to (a) pgbench inserting the same rows (the database's ceiling) and (b) a bare one-
             transaction-per-request app, both measured in the same run.
  rebuild    scripts/bench_rebuild.py: `rebuild` of order_item_status, order_item_history and orders over
             N events (default 1,000,000): events/s of each as a ratio to a set-based SQL ceiling
             (INSERT ... SELECT DISTINCT ON) measured on the same log, peak RSS of each.
  catchup    scripts/bench_catchup.py: every live projector (the real engine) from checkpoint 0 over
             N events (default 1,000,000): events/s as a ratio to the same DISTINCT ON ceiling.
  reconcile  scripts/bench_reconcile.py: one full List Orders backfill of N sandbox orders (default 100,000)
             on an empty database: time, orders/s, List Orders calls vs the minimum number of pages,
             and time as a ratio to paging alone (same client, no database).
  fetch      scripts/bench_fetch.py: fetch -> observed event with the personal-data split, as a ratio to
             the same fetcher logging answers as received.
  console    scripts/bench_console.py: the operator console's overview (GET /) with N events in the log
             (default 1,000,000): median and p95 render time, as a ratio to the 200 ms target.
  feed       scripts/bench_feed.py: change-feed forwarding throughput and append-to-receipt latency.
  latency    scripts/bench_latency.py: `serve` with the sandbox as Bunjang at 200 webhooks/s for 30 s:
             204 -> provisional status in the view, and Get Order logged -> confirmed status (p99s).
  memory     scripts/bench_memory.py: `serve` (all roles) with the sandbox as Bunjang at 500 webhooks/s for
             10 minutes: RSS and open fds every 10 s, growth after the first minute.

The figures are parsed from each script's output; then one table (machine: cores, CPU, PostgreSQL,
Python, date, load; each figure with its reference, ratio, target and PASS/FAIL), and the same table as
Markdown between the marker lines `<!-- bench:begin -->` and `<!-- bench:end -->`, ready for the README's
Performance section. `--quick` runs smaller sizes (ingest 3 s per phase without warm-up, rebuild
30,000 events, catch-up 20,000 events, reconcile 3,000 orders, fetch 200 orders once, console 50,000
events, feed 500 changes and 5 s, latency 5 s, memory 40 s over 1,000 orders) so that all of it runs in
under 3 minutes; its figures check that everything works and are not the ones to publish (small sizes
favour fixed costs; the memory verdict of a 40 s run is indicative only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import benchlib
from benchlib import ROOT

SCRIPTS = ROOT / "scripts"
BENCHMARKS = ("ingest", "rebuild", "catchup", "reconcile", "fetch", "console", "feed", "latency", "memory")
MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"
NUM = r"([\d,]+(?:\.\d+)?)"


@dataclass
class Run:
    """One benchmark script's run: its command, exit status, output and wall time."""

    name: str
    command: list[str]
    returncode: int | None = None
    output: str = ""
    seconds: float = 0.0
    timed_out: bool = False
    load_before: float = 0.0


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    benchmark: str
    measure: str
    value: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    result: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    pg_version: str = ""
    loads: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        self.rows.append(Row(*cells))


# ------------------------------------------------------------------------------------------- running


def run(name: str, command: list[str], timeout_s: float) -> Run:
    """Run one benchmark, echoing its output indented as it comes; interrupt it after ``timeout_s``."""
    print(f"\nbench: {name}: {' '.join(command)}", flush=True)
    result = Run(name, command, load_before=benchlib.load_average()[0])
    started = time.monotonic()
    # Own session: a timeout interrupts the benchmark and everything it started, and nothing else.
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def stop() -> None:
        result.timed_out = True
        _signal_group(proc, signal.SIGINT)  # the scripts clean up (cluster, servers) on Ctrl-C
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
            return
        _signal_group(proc, signal.SIGKILL)

    timer = threading.Timer(timeout_s, stop)
    timer.start()
    lines: list[str] = []
    try:
        for line in proc.stdout or ():
            lines.append(line)
            print(f"  | {line}", end="", flush=True)
        proc.wait()
    except KeyboardInterrupt:
        _signal_group(proc, signal.SIGINT)
        proc.wait(timeout=60)
        raise
    finally:
        timer.cancel()
    result.returncode = proc.returncode
    result.output = "".join(lines)
    result.seconds = time.monotonic() - started
    state = "timed out" if result.timed_out else f"exit {proc.returncode}"
    print(f"bench: {name}: {state} after {result.seconds:.0f} s", flush=True)
    return result


def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# ------------------------------------------------------------------------------------------- parsing


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _find(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.M)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _failed(report: Report, run_: Run, what: str) -> None:
    why = "timed out" if run_.timed_out else f"exit {run_.returncode}"
    tail = run_.output.strip().splitlines()[-1:] or ["no output"]
    report.add(run_.name, what, f"not measured ({why}: {tail[0][:80]})", "", "", "", "FAIL")


def _pg_version(report: Report, text: str) -> None:
    found = _find(r"(PostgreSQL [\d.]+)", text)
    if found and not report.pg_version:
        report.pg_version = found.group(1)


def parse_ingest(report: Report, run_: Run, duration: int) -> None:
    """Rows from scripts/bench_ingest's table: (a) tx/s, (b) and (c) req/s p50 p99 non-2xx."""
    out = run_.output
    _pg_version(report, out)
    a = _find(rf"^\(a\) pgbench insert \(ceiling\)\s+{NUM}", out)
    b = _find(rf"^\(b\)[^\n]*?\s{{2,}}{NUM}\s+{NUM}\s+{NUM}\s+(\d+)", out)
    c = _find(rf"^\(c\) bunsync serve\s+{NUM}\s+{NUM}\s+{NUM}\s+(\d+)\s+(\d+)", out)
    if not c:
        _failed(report, run_, "webhooks accepted/s")
        return
    rps, p50, p99 = _num(c.group(1)), _num(c.group(2)), _num(c.group(3))
    errors = int(c.group(4)) + int(c.group(5))
    label = f"`bunsync serve` webhooks/s (64 conns, {duration} s, fsync on)"
    if a:
        tps = _num(a.group(1))
        ratio = rps / tps
        report.add(
            "ingest",
            label,
            f"{rps:,.0f} req/s",
            f"(a) pgbench insert: {tps:,.0f} tx/s",
            f"{ratio:.2f}",
            ">= 0.5",
            _verdict(ratio >= 0.5),
        )
    if b:
        base = _num(b.group(1))
        ratio = rps / base
        report.add(
            "ingest",
            label if not a else "  vs a bare 1-tx-per-request app",
            f"{rps:,.0f} req/s",
            f"(b) baseline: {base:,.0f} req/s, p99 {_num(b.group(3)):.1f} ms",
            f"{ratio:.2f}",
            ">= 2",
            _verdict(ratio >= 2),
        )
    report.add(
        "ingest",
        "  latency p50 / p99",
        f"{p50:.1f} / {p99:.1f} ms",
        "",
        "",
        "p99 <= 50 ms",
        _verdict(p99 <= 50),
    )
    rows = _find(r"^rows check \(c\): (.*?)\s+(PASS|FAIL)$", out)
    rows_ok = bool(rows and rows.group(2) == "PASS")
    report.add(
        "ingest",
        "  non-2xx + socket errors; rows == 2xx",
        f"{errors}; {'rows match' if rows_ok else 'rows DO NOT match'}",
        "",
        "",
        "0; match",
        _verdict(errors == 0 and rows_ok),
    )


def parse_rebuild(report: Report, run_: Run, events: int) -> None:
    """Rows from scripts/bench_rebuild's lines: the ceiling, then events/s and peak RSS per projection."""
    out = run_.output
    ceiling = _find(rf"^ceiling[^:]*:\s*{NUM}\s*s,\s*{NUM} events/s", out)
    rebuilds = re.findall(rf"^rebuild (\w+):\s*{NUM}\s*s,\s*{NUM} events/s, peak RSS (\d+) MB", out, re.M)
    if not rebuilds:
        _failed(report, run_, "rebuild events/s")
        return
    ceil_rate = _num(ceiling.group(2)) if ceiling else 0.0
    reference = (
        f"SQL DISTINCT ON: {ceil_rate:,.0f} events/s ({_num(ceiling.group(1)):.1f} s)"
        if ceiling
        else "ceiling not found"
    )
    for k, (name, seconds, rate_text, peak) in enumerate(rebuilds):
        rate, mb = _num(rate_text), int(peak)
        ratio = rate / ceil_rate if ceil_rate else float("nan")
        report.add(
            "rebuild",
            f"`rebuild {name}`, {events:,} events",
            f"{rate:,.0f} events/s ({_num(seconds):.1f} s)",
            reference if k == 0 else "  same ceiling",
            f"{ratio:.2f}",
            ">= 0.5",
            _verdict(ratio >= 0.5),
        )
        report.add(
            "rebuild", "  peak RSS of the rebuild process", f"{mb} MB", "", "", "< 300 MB", _verdict(mb < 300)
        )
    if run_.returncode:
        _failed(report, run_, "  exit status")


def parse_reconcile(report: Report, run_: Run) -> None:
    """Rows from scripts/bench_reconcile's `BENCH_RECONCILE {json}` line."""
    line = next((ln for ln in run_.output.splitlines() if ln.startswith("BENCH_RECONCILE ")), None)
    if line is None:
        _failed(report, run_, "full backfill")
        return
    f = json.loads(line.split(" ", 1)[1])
    _pg_version(report, f.get("pg", ""))
    paging = f.get("paging_s")
    report.add(
        "reconcile",
        f"full List Orders backfill, {f['orders']:,} orders ({f['windows']} windows), empty DB",
        f"{f['reconcile_s']:.1f} s ({f['orders_per_s']:,.0f} orders/s)",
        f"paging only, no DB: {paging:.1f} s" if paging else "",
        f"{f['reconcile_s'] / paging:.2f}" if paging else "",
        "finishes",
        _verdict(not f["timed_out"]),
    )
    ratio = f["calls"] / f["min_pages"] if f["min_pages"] else float("nan")
    report.add(
        "reconcile",
        "  List Orders calls",
        f"{f['calls']:,}",
        f"minimum pages: {f['min_pages']:,}",
        f"{ratio:.2f}",
        "<= 1.00",
        _verdict(f["calls"] <= f["min_pages"]),
    )
    n = f["orders"]
    ok = f["orders_seen"] == n and f["differences"] == n and f["events"] == n
    report.add(
        "reconcile",
        "  orders seen / differences / events appended",
        f"{f['orders_seen']:,} / {f['differences']:,} / {f['events']:,}",
        "",
        "",
        f"all == {n:,}",
        _verdict(ok),
    )


def parse_console(report: Report, run_: Run) -> None:
    """The row of scripts/bench_console.py: overview render time with N events in the log."""
    found = _find(rf"^console overview \(([\d,]+) events\): median {NUM} ms, p95 {NUM} ms", run_.output)
    if not found:
        _failed(report, run_, "console overview render")
        return
    median = _num(found.group(2))
    report.add(
        "console",
        f"overview render (GET /), {found.group(1)} events in the log",
        f"median {median:.0f} ms, p95 {_num(found.group(3)):.0f} ms",
        "target 200 ms",
        f"{median / 200:.2f}",
        "< 200 ms",
        _verdict(median < 200),
    )


def parse_feed(report: Report, run_: Run) -> None:
    """Rows from scripts/bench_feed.py's `BENCH_FEED {json}` line."""
    line = next((ln for ln in run_.output.splitlines() if ln.startswith("BENCH_FEED ")), None)
    if line is None:
        _failed(report, run_, "change-feed forwarding")
        return
    f = json.loads(line.split(" ", 1)[1])
    ratio = f["throughput_per_s"] / f["ceiling_per_s"] if f["ceiling_per_s"] else float("nan")
    httpx_loop = f"; httpx: {f['ceiling_httpx_per_s']:,.0f}/s" if "ceiling_httpx_per_s" in f else ""
    report.add(
        "feed",
        f"forwarding throughput, {f['changes']:,} changes",
        f"{f['throughput_per_s']:,.0f}/s",
        f"bare signed POST loop, same client: {f['ceiling_per_s']:,.0f}/s{httpx_loop}",
        f"{ratio:.2f}",
        "",
        "",
    )
    split = (
        f" (projector {f['projector_p99_ms']}, forwarder {f['forwarder_p99_ms']} ms at p99)"
        if "projector_p99_ms" in f
        else ""
    )
    report.add(
        "feed",
        f"  append-to-receipt latency at {f['rate']}/s for {f['seconds']} s p50 / p99",
        f"{f['p50_ms']} / {f['p99_ms']} ms{split}",
        "",
        "",
        "p99 <= 250 ms",
        _verdict(f["p99_ms"] <= 250),
    )


def _summary(run_: Run, tag: str) -> dict[str, Any] | None:
    """The JSON of a script's ``<tag> {json}`` line, if it printed one."""
    line = next((ln for ln in run_.output.splitlines() if ln.startswith(f"{tag} ")), None)
    return dict(json.loads(line.split(" ", 1)[1])) if line else None


def parse_fetch(report: Report, run_: Run) -> None:
    """The row of scripts/bench_fetch.py's `BENCH_FETCH {json}` line."""
    f = _summary(run_, "BENCH_FETCH")
    if f is None:
        _failed(report, run_, "fetch -> observed event")
        return
    report.add(
        "fetch",
        f"fetch -> observed event with the personal-data split, {f['orders']:,} orders",
        f"{f['with']:,.0f} orders/s",
        f"same fetcher logging answers as received: {f['without']:,.0f} orders/s",
        f"{f['with'] / f['without']:.2f}",
        "cost < 10 % (>= 0.90)",
        _verdict(f["cost"] < 0.10),
    )


def parse_catchup(report: Report, run_: Run) -> None:
    """The row of scripts/bench_catchup.py's `BENCH_CATCHUP {json}` line."""
    f = _summary(run_, "BENCH_CATCHUP")
    if f is None:
        _failed(report, run_, "catch-up from checkpoint 0")
        return
    report.add(
        "catch-up",
        f"live projectors from checkpoint 0, {len(f['projections'])} projections, {f['events']:,} events",
        f"{f['rate']:,.0f} events/s ({f['seconds']:.1f} s), peak RSS {f['peak_mb']} MB; at the head after "
        + ", ".join(f"{name} {s:.1f} s" for name, s in f.get("at_head_s", {}).items()),
        f"SQL DISTINCT ON: {f['ceiling_rate']:,.0f} events/s",
        f"{f['ratio']:.2f}",
        ">= 0.5",
        _verdict(f["ratio"] >= 0.5),
    )


def parse_latency(report: Report, run_: Run) -> None:
    """Rows from scripts/bench_latency.py's `BENCH_LATENCY {json}` line."""
    f = _summary(run_, "BENCH_LATENCY")
    if f is None:
        _failed(report, run_, "webhook -> view latency")
        return
    load = f"{f['rate']}/s for {f['seconds']} s, {f['achieved_per_s']}/s achieved"
    for key, what in (
        ("provisional", "204 -> provisional status in the view"),
        ("confirmed", "Get Order logged -> confirmed status"),
    ):
        p99 = f[f"{key}_p99_ms"]
        complete = f[key if key == "confirmed" else "visible"] == f["sent"]
        report.add(
            "latency",
            f"{what} ({load}) p50 / p99",
            f"{f[f'{key}_p50_ms']} / {p99} ms",
            f"{f[key if key == 'confirmed' else 'visible']:,} of {f['sent']:,} seen",
            f"{p99 / 100:.2f}",
            "p99 <= 100 ms",
            _verdict(p99 <= 100 and complete and not f["non_2xx"]),
        )
    if "written_provisional_p99_ms" in f:
        report.add(
            "latency",
            "server side (database clock): webhook logged -> row written / Get Order logged -> row "
            "written, p50 / p99",
            f"{f['written_provisional_p50_ms']} / {f['written_provisional_p99_ms']} ms; "
            f"{f['written_confirmed_p50_ms']} / {f['written_confirmed_p99_ms']} ms",
            f"{f['written_seen']:,} items; no poller in it",
            "",
            "",
            "",
        )
    if "poll_gap_p99_ms" in f:
        report.add(
            "latency",
            "the poller's own resolution: time between its polls p50 / p99 (included above)",
            f"{f['poll_gap_p50_ms']} / {f['poll_gap_p99_ms']} ms",
            "10 ms sleep + one query",
            "",
            "",
            "",
        )


def parse_memory(report: Report, run_: Run) -> None:
    """Rows from scripts/bench_memory.py's `BENCH_MEMORY {json}` line: growth, and the series."""
    f = _summary(run_, "BENCH_MEMORY")
    if f is None:
        _failed(report, run_, "memory over time")
        return
    series = f["series"]
    after = [x for x in series if x["t"] >= f["warmup_s"]] or series[-1:]
    note = " (indicative only)" if f["indicative"] else ""
    ok = f["rss_growth"] < 0.10 and f["fd_growth"] < 0.10 and not f["non_2xx"] and not f["errors"]
    report.add(
        "memory",
        f"`serve` RSS / fds, {f['rate']}/s for {f['seconds']} s ({f['achieved_per_s']}/s achieved){note}",
        f"{after[-1]['rss_mb']} MB / {after[-1]['fds']} fds at {after[-1]['t']} s",
        f"at {after[0]['t']} s: {after[0]['rss_mb']} MB / {after[0]['fds']} fds",
        f"{1 + f['rss_growth']:.2f} / {1 + f['fd_growth']:.2f}",
        f"growth < 10 % after {f['warmup_s']} s",
        _verdict(ok),
    )
    report.add(
        "memory",
        "  series every 10 s: MB / fds",
        ", ".join(f"{x['rss_mb']:.0f}/{x['fds']}" for x in series),
    )


# -------------------------------------------------------------------------------------------- output


HEADERS = ("benchmark", "measure", "value", "reference (same run)", "ratio", "target", "result")


def machine_line(machine: dict[str, str], report: Report) -> str:
    loads = f"; 1-min load before {', '.join(report.loads)}" if report.loads else ""
    return (
        f"{machine['nproc']} cores, {machine['cpu']}; {report.pg_version or 'PostgreSQL ?'}; "
        f"Python {machine['python']}; {machine['kernel']}; {machine['date']}; "
        f"load average at start {machine['load']} (1/5/15 min){loads}"
    )


def print_table(report: Report, machine: dict[str, str], title: str) -> None:
    cells = [
        HEADERS,
        *[(r.benchmark, r.measure, r.value, r.reference, r.ratio, r.target, r.result) for r in report.rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    print()
    print(title)
    print(f"machine: {machine_line(machine, report)}")
    print(rule)
    for k, row in enumerate(cells):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if k == 0:
            print(rule)
    print(rule)


def print_markdown(report: Report, machine: dict[str, str], title: str) -> None:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").strip() or " "

    print()
    print(MARK_BEGIN)
    print(f"{title}, on {machine_line(machine, report)}.")
    print()
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "|".join(["---"] * 4 + ["---:", "---", "---"]) + "|")
    for r in report.rows:
        cells = (r.benchmark, r.measure, r.value, r.reference, r.ratio, r.target, r.result)
        print("| " + " | ".join(esc(c) for c in cells) + " |")
    print(MARK_END)


# ---------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 every target and check passes, 1 one fails or a benchmark could not run.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, to check that all of it runs")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of: %(default)s")
    parser.add_argument(
        "--ingest-duration", type=int, help="seconds per ingest phase (15; quick: 3, no warm-up)"
    )
    parser.add_argument("--rebuild-events", type=int, help="events to rebuild (1000000; quick: 30000)")
    parser.add_argument("--rebuild-items", type=int, help="items they touch (100000; quick: 3000)")
    parser.add_argument("--reconcile-orders", type=int, help="sandbox orders (100000; quick: 3000)")
    parser.add_argument("--catchup-events", type=int, help="events to catch up on (1000000; quick: 20000)")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds each benchmark may take (default 1800)"
    )
    args = parser.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    if not chosen or set(chosen) - set(BENCHMARKS):
        parser.error(f"--only takes names from {', '.join(BENCHMARKS)}")
    args.only = chosen
    quick = args.quick
    args.ingest_duration = args.ingest_duration or (3 if quick else 15)
    args.rebuild_events = args.rebuild_events or (30_000 if quick else 1_000_000)
    args.rebuild_items = args.rebuild_items or (3_000 if quick else 100_000)
    args.reconcile_orders = args.reconcile_orders or (3_000 if quick else 100_000)
    args.catchup_events = args.catchup_events or (20_000 if quick else 1_000_000)
    return args


def main() -> int:
    args = parse_args()
    machine = benchlib.machine()
    print(
        f"bench: load average at start {machine['load']} (1/5/15 min) on {machine['nproc']} cores", flush=True
    )
    report = Report()
    quick = int(args.quick)
    plan: dict[str, tuple[list[str], Callable[[Report, Run], None]]] = {
        "ingest": (
            [
                sys.executable,
                str(SCRIPTS / "bench_ingest.py"),
                "--duration",
                str(args.ingest_duration),
                *(["--warmup", "0"] * quick),
            ],
            lambda rep, r: parse_ingest(rep, r, args.ingest_duration),
        ),
        "rebuild": (
            [
                sys.executable,
                str(SCRIPTS / "bench_rebuild.py"),
                "--events",
                str(args.rebuild_events),
                "--items",
                str(args.rebuild_items),
            ],
            lambda rep, r: parse_rebuild(rep, r, args.rebuild_events),
        ),
        "catchup": (
            [
                sys.executable,
                str(SCRIPTS / "bench_catchup.py"),
                "--events",
                str(args.catchup_events),
                "--items",
                str(max(1, args.catchup_events // 10)),
            ],
            parse_catchup,
        ),
        "fetch": (
            [
                sys.executable,
                str(SCRIPTS / "bench_fetch.py"),
                *(["--orders", "200", "--rounds", "1"] * quick),
            ],
            parse_fetch,
        ),
        "latency": (
            [sys.executable, str(SCRIPTS / "bench_latency.py"), *(["--seconds", "5"] * quick)],
            parse_latency,
        ),
        "memory": (
            [sys.executable, str(SCRIPTS / "bench_memory.py"), *(["--quick", "--orders", "1000"] * quick)],
            parse_memory,
        ),
        "reconcile": (
            [sys.executable, str(SCRIPTS / "bench_reconcile.py"), "--orders", str(args.reconcile_orders)],
            parse_reconcile,
        ),
        "console": (
            [
                sys.executable,
                str(SCRIPTS / "bench_console.py"),
                *(["--events", "50000", "--runs", "10"] * quick),
            ],
            parse_console,
        ),
        "feed": (
            [
                sys.executable,
                str(SCRIPTS / "bench_feed.py"),
                *(["--changes", "500", "--seconds", "5"] * quick),
            ],
            parse_feed,
        ),
    }
    started = time.monotonic()
    try:
        for name in args.only:
            command, parse = plan[name]
            done = run(name, command, args.timeout)
            report.loads.append(f"{name} {done.load_before:.2f}")
            parse(report, done)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    title = f"bunsync performance (scripts/bench.py{' --quick' if args.quick else ''})"
    print(f"\nbench: all benchmarks ran in {time.monotonic() - started:.0f} s")
    print_table(report, machine, title)
    print_markdown(report, machine, title)
    return 0 if all(r.result != "FAIL" for r in report.rows) else 1


if __name__ == "__main__":
    benchlib.reexec_in_venv(__file__)
    sys.exit(main())
