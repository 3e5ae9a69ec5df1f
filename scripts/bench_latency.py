"""Benchmark the webhook -> view latency a partner feels, through `bunsync serve` with the sandbox as Bunjang.

Usage: .venv/bin/python scripts/bench_latency.py [--rate R] [--seconds S] [--quick]
(defaults: 200 webhooks/s for 30 s; --quick: 10 s; scripts/bench.py runs it).

On a throwaway cluster (fsync on), ``bunsync sandbox --orders R*S`` (frozen clock) is Bunjang and
``bunsync serve --no-scheduler`` (HTTP, projectors, Get Order fetch workers; no reconcile, so every
row in the view comes from the webhook or its fetch) is loaded with a steady R signed webhooks/s, one
per sandbox order (scripts/benchload.py). A poller reads ``reporting.order_item_status`` every 10 ms
for the items that can change (same host clock for everything; see OBSERVED_AFTER):

1. provisional: from the 204 to the item's row being visible in the view (any source: a fetch that
   wins the race also shows the status); 0 when it was visible before the 204 reached the client;
2. confirmed: from the Get Order answer being logged (``recorded_at`` of the order.observed event of
   that order, the latest before the confirmation was seen) to the row's source being ``get_order``.

Both include the poller's resolution (10 ms plus one query; the measured time between its polls is
printed too). Also measured server side, on the database's clock, with no poller in it: a trigger
(installed on this throwaway cluster only) stamps every write of an ``order_item_status`` row, compared
with the ``recorded_at`` of the webhook and of the Get Order answer (just before their commits).
The server-side time is also split into stages (STAGES, with ``track_commit_timestamp`` on): logged
-> the event's transaction committed -> the row written by the projector -> the projector's commit.
Targets: p99 <= 100 ms each. The last line, ``BENCH_LATENCY {json}``, is for scripts/bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import sys
import time

import benchlib

benchlib.reexec_in_venv(__file__)

import asyncpg  # noqa: E402
import benchload  # noqa: E402
from benchload import Answer, percentile  # noqa: E402

POLL_S = 0.01
# The poller's view query: the items that can change, joined to the view (one primary-key probe each:
# "= ANY($1)" on the young table with a generic plan was a sequential scan testing every row against
# the whole array, 56 ms a poll, half of PostgreSQL's work during the run: the instrument loaded the
# system it measures).
VIEW = (
    "SELECT v.order_item_id, v.source FROM unnest($1::bigint[]) AS i(id) "
    "CROSS JOIN LATERAL (SELECT * FROM reporting.order_item_status AS v WHERE v.order_item_id = i.id "
    "OFFSET 0) AS v"
)
# Which items can change: those not visible yet, and those visible whose order's Get Order answer has
# been logged (before it, the row cannot become get_order; polling every item in flight was ~1,000
# probes a poll, 5 ms, 40 % of PostgreSQL's statement time). The answers are read from the log as the
# projectors read it (commit-safe order, see sql/queries/event_log.sql read_after), so the poller never
# learns of one before a projector could have: a late discovery only makes the figure larger.
OBSERVED_AFTER = """
SELECT tx_id::text AS tx_text, position, stream
FROM bunsync.event_log
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND type = 'order.observed'
ORDER BY tx_id, position
"""
OBSERVED = "SELECT stream, recorded_at FROM bunsync.event_log WHERE type = 'order.observed' ORDER BY position"
# Server-side trace (this throwaway cluster only, installed as its superuser): every write of a row of
# order_item_status is stamped with the server's clock by a trigger, so "event logged -> row written"
# is measured on the database's own clock, without the poller's stalls (the poller shares its process
# with the load generator). The AFTER trigger fires at the end of the projector's statement, before
# its commit (a commit with fsync on adds a few ms).
TRACE = """
CREATE TABLE public.bench_written (
    order_item_id bigint NOT NULL, source text NOT NULL, at timestamptz NOT NULL
);
CREATE FUNCTION public.bench_written() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.bench_written VALUES (NEW.order_item_id, NEW.source, clock_timestamp());
    RETURN NULL;
END $$;
CREATE TRIGGER bench_written AFTER INSERT OR UPDATE ON bunsync.order_item_status
    FOR EACH ROW EXECUTE FUNCTION public.bench_written();
"""
# The server-side latencies and where their time goes (track_commit_timestamp is on for this cluster):
# per item, the webhook (or its order's first Get Order answer) logged -> its transaction committed (the
# ingest's or the fetch's commit) -> the item's row first written by the projector (from Get Order, for
# the confirmed path; bench_written) -> the projector's transaction committed (the row visible to
# readers). Milliseconds; one row per item and path.
STAGES = """
WITH hooks AS (
    SELECT DISTINCT ON (1) (i ->> 'orderItemId')::bigint AS order_item_id, e.recorded_at AS logged,
           pg_xact_commit_timestamp(e.tx_id::text::xid) AS committed
    FROM bunsync.event_log AS e, jsonb_array_elements(e.payload::jsonb -> 'data' -> 'orderItems') AS i
    WHERE e.type = 'webhook.order_status_changed.v1'
    ORDER BY 1, e.position
), observed AS (
    SELECT DISTINCT ON (stream) stream, recorded_at AS logged,
           pg_xact_commit_timestamp(tx_id::text::xid) AS committed
    FROM bunsync.event_log WHERE type = 'order.observed' ORDER BY stream, position
), first_written AS (
    SELECT DISTINCT ON (order_item_id) order_item_id, at AS written, pg_xact_commit_timestamp(xmin) AS visible
    FROM public.bench_written ORDER BY order_item_id, at
), confirmed_written AS (
    SELECT DISTINCT ON (order_item_id) order_item_id, at AS written, pg_xact_commit_timestamp(xmin) AS visible
    FROM public.bench_written WHERE source = 'get_order' ORDER BY order_item_id, at
), paths AS (
    SELECT 'provisional' AS path, h.logged, h.committed, w.written, w.visible
    FROM hooks AS h JOIN first_written AS w USING (order_item_id)
    UNION ALL
    SELECT 'confirmed', o.logged, o.committed, w.written, w.visible
    FROM confirmed_written AS w JOIN bunsync.order_item_status AS s USING (order_item_id)
    JOIN observed AS o ON o.stream = 'order-' || s.order_id
)
SELECT path, extract(epoch FROM written - logged) * 1000 AS written_ms,
       extract(epoch FROM committed - logged) * 1000 AS commit_ms,
       extract(epoch FROM written - committed) * 1000 AS pickup_ms,
       extract(epoch FROM visible - written) * 1000 AS projector_commit_ms,
       extract(epoch FROM visible - committed) * 1000 AS after_commit_ms,
       extract(epoch FROM visible - logged) * 1000 AS total_ms
FROM paths
"""
# The fetch's own wait, which no target covers but a partner feels (webhook -> confirmed): per order, its
# first webhook logged -> its first Get Order answer logged (the fetch queue's wait, the call, the store).
FETCH_WAIT = """
WITH hooks AS (
    SELECT stream, min(recorded_at) AS logged FROM bunsync.event_log
    WHERE type = 'webhook.order_status_changed.v1' GROUP BY stream
), observed AS (
    SELECT stream, min(recorded_at) AS logged FROM bunsync.event_log
    WHERE type = 'order.observed' GROUP BY stream
)
SELECT extract(epoch FROM o.logged - h.logged) * 1000 AS wait_ms
FROM hooks AS h JOIN observed AS o USING (stream)
"""
STAGE_NAMES = ("commit_ms", "pickup_ms", "projector_commit_ms", "after_commit_ms", "total_ms")


def stages(rows: list[asyncpg.Record]) -> dict[str, dict[str, list[float]]]:
    """p50 and p99 of each stage (ms) per path, from STAGES' rows."""
    out: dict[str, dict[str, list[float]]] = {}
    for path in ("provisional", "confirmed"):
        mine = [r for r in rows if r["path"] == path]
        out[path] = {}
        for name in STAGE_NAMES:
            values = sorted(max(0.0, float(r[name])) for r in mine if r[name] is not None)
            out[path][name] = [round(percentile(values, 0.5), 1), round(percentile(values, 0.99), 1)]
    return out


class Poller:
    """Records, per item, when its row first showed in the view and when its source became get_order."""

    def __init__(self) -> None:
        self.pending: dict[int, Answer] = {}
        self.visible: dict[int, float] = {}
        self.confirmed: dict[int, float] = {}
        #: Orders whose Get Order answer the poller has read from the log, and where it read up to.
        self.observed: set[int] = set()
        self.cursor = ("0", 0)
        #: Seconds between the starts of consecutive polls: the measure's own resolution under load.
        self.gaps: list[float] = []
        #: Items asked about per poll.
        self.asked: list[int] = []

    def add(self, answer: Answer) -> None:
        self.pending[answer.item.item_id] = answer

    async def run(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            self.gaps.append(started - last)
            last = started
            for r in await conn.fetch(OBSERVED_AFTER, *self.cursor):
                self.observed.add(int(r["stream"].removeprefix("order-")))
                self.cursor = (r["tx_text"], r["position"])
            ask = [
                item
                for item, answer in self.pending.items()
                if item not in self.visible or answer.item.order_id in self.observed
            ]
            self.asked.append(len(ask))
            if ask:
                rows = await conn.fetch(VIEW, ask)
                now = time.time()
                for r in rows:
                    item = r["order_item_id"]
                    self.visible.setdefault(item, now)
                    if r["source"] == "get_order":
                        self.confirmed[item] = now
                        self.pending.pop(item, None)
            await asyncio.sleep(POLL_S)


async def measure(stack: benchload.Stack, rate: int, seconds: int) -> dict[str, object]:
    conn = await asyncpg.connect(stack.dsn)
    await conn.execute(TRACE)
    poller, stop = Poller(), asyncio.Event()
    polling = asyncio.create_task(poller.run(conn, stop))
    try:
        load = await benchload.steady_load(
            stack.port, stack.items, rate, seconds, connections=32, on_queue=poller.add
        )
        deadline = time.monotonic() + 60
        while poller.pending and time.monotonic() < deadline:  # noqa: ASYNC110  # the poller's own state
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await polling
    observed: dict[str, list[float]] = {}
    for r in await conn.fetch(OBSERVED):
        observed.setdefault(r["stream"], []).append(r["recorded_at"].timestamp())
    server = await conn.fetch(STAGES)
    split = stages(server)
    waits = sorted(max(0.0, float(r["wait_ms"])) for r in await conn.fetch(FETCH_WAIT))
    pg = str(await conn.fetchval("SELECT version()")).split(",")[0]
    await conn.close()
    written, confirmed_written = (
        sorted(max(0.0, float(r["written_ms"])) for r in server if r["path"] == path)
        for path in ("provisional", "confirmed")
    )
    ok = [a for a in load.answers if a.status == 204]
    provisional = sorted(
        max(0.0, poller.visible[a.item.item_id] - a.answered) * 1000
        for a in ok
        if a.item.item_id in poller.visible
    )
    confirmed = []
    for a in ok:
        seen = poller.confirmed.get(a.item.item_id)
        times = sorted(observed.get(f"order-{a.item.order_id}", []))
        k = bisect.bisect_right(times, seen) if seen is not None else 0
        if seen is not None and k:
            confirmed.append(max(0.0, seen - times[k - 1]) * 1000)
    confirmed.sort()
    gaps = sorted(g * 1000 for g in poller.gaps[1:])
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": len(load.answers),
        "achieved_per_s": round(len(load.answers) / load.seconds, 1),
        "non_2xx": load.non_2xx,
        "errors": load.errors,
        "visible": len(provisional),
        "confirmed": len(confirmed),
        "provisional_p50_ms": round(percentile(provisional, 0.5), 1),
        "provisional_p99_ms": round(percentile(provisional, 0.99), 1),
        "confirmed_p50_ms": round(percentile(confirmed, 0.5), 1),
        "confirmed_p99_ms": round(percentile(confirmed, 0.99), 1),
        "written_provisional_p50_ms": round(percentile(written, 0.5), 1),
        "written_provisional_p99_ms": round(percentile(written, 0.99), 1),
        "written_confirmed_p50_ms": round(percentile(confirmed_written, 0.5), 1),
        "written_confirmed_p99_ms": round(percentile(confirmed_written, 0.99), 1),
        "written_seen": len(written),
        "poll_gap_p50_ms": round(percentile(gaps, 0.5), 1),
        "poll_gap_p99_ms": round(percentile(gaps, 0.99), 1),
        "poll_items_p50": percentile(sorted(poller.asked), 0.5),
        "poll_items_p99": percentile(sorted(poller.asked), 0.99),
        "stages": split,
        "fetch_wait_p50_ms": round(percentile(waits, 0.5), 1),
        "fetch_wait_p99_ms": round(percentile(waits, 0.99), 1),
        "pg": pg,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=200, help="webhooks/s (200)")
    parser.add_argument("--seconds", type=int, help="duration (30; quick: 10)")
    parser.add_argument("--quick", action="store_true", help="10 s")
    args = parser.parse_args()
    seconds = args.seconds or (10 if args.quick else 30)
    try:
        settings = "-c track_commit_timestamp=on"  # for STAGES
        with benchload.sandbox_and_serve(
            args.rate * seconds, ["--no-scheduler"], "latency", cluster_settings=settings
        ) as stack:
            print(
                f"bench_latency: {args.rate} webhooks/s for {seconds} s over {len(stack.items):,} orders",
                flush=True,
            )
            result = asyncio.run(measure(stack, args.rate, seconds))
    except benchlib.BenchError as exc:
        print(f"bench_latency: {exc}", file=sys.stderr)
        return 1
    ok = (
        result["provisional_p99_ms"] <= 100  # type: ignore[operator]
        and result["confirmed_p99_ms"] <= 100  # type: ignore[operator]
        and result["visible"] == result["confirmed"] == result["sent"]
        and not result["non_2xx"]
    )
    print(
        f"sent {result['sent']:,} ({result['achieved_per_s']}/s achieved), non-2xx {result['non_2xx']}, "
        f"socket errors {result['errors']}; visible {result['visible']:,}, confirmed {result['confirmed']:,}"
    )
    print(
        f"204 -> provisional status in the view: p50 {result['provisional_p50_ms']} ms, "
        f"p99 {result['provisional_p99_ms']} ms (target p99 <= 100 ms)"
    )
    print(
        f"Get Order logged -> confirmed status in the view: p50 {result['confirmed_p50_ms']} ms, "
        f"p99 {result['confirmed_p99_ms']} ms (target p99 <= 100 ms): {'PASS' if ok else 'FAIL'}"
    )
    print(
        f"the poller's own resolution (time between its polls): p50 {result['poll_gap_p50_ms']} ms, "
        f"p99 {result['poll_gap_p99_ms']} ms; items asked about per poll p50 {result['poll_items_p50']}, "
        f"p99 {result['poll_items_p99']}"
    )
    print(
        f"server side, database clock: webhook logged -> item row written p50 "
        f"{result['written_provisional_p50_ms']} ms, p99 {result['written_provisional_p99_ms']} ms; "
        f"Get Order logged -> row written from it p50 {result['written_confirmed_p50_ms']} ms, "
        f"p99 {result['written_confirmed_p99_ms']} ms ({result['written_seen']:,} items)"
    )
    for path, split in result["stages"].items():  # type: ignore[attr-defined]
        a, b, c, d, e = (split[name] for name in STAGE_NAMES)
        print(
            f"  {path}, p50 / p99 ms: logged -> committed {a[0]} / {a[1]}; committed -> row written "
            f"{b[0]} / {b[1]}; written -> projector committed {c[0]} / {c[1]}; "
            f"committed -> visible {d[0]} / {d[1]}; logged -> visible {e[0]} / {e[1]}"
        )
    print(
        f"  webhook logged -> its order's Get Order answer logged (the fetch queue's wait, no target): "
        f"p50 {result['fetch_wait_p50_ms']} ms, p99 {result['fetch_wait_p99_ms']} ms"
    )
    print("BENCH_LATENCY " + json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
