"""Hostile HTTP against the real ``bunsync serve``: each attack of issue 9 (section 2) in a bounded form,
on loopback, while signed webhooks keep flowing; and the two listeners' contract (section 1).

Each attack asserts what a user needs: the process's RSS stays under a stated bound, every real
webhook sent during the attack is answered 204 within 1 s, the attack connections are closed within
the configured deadlines, the refusals are counted in ``/metrics`` on the operator listener, and the
log has a few summary lines, not one line per refused request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.webhook.signature import sign
from tests.e2e.helpers import ENV_BASE, SECRET, Serve, TcpProxy, fetch_rows, post_webhook, webhook_body

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
MIN_ATTACK_S = 3.0  # each attack goes on (repeated if need be) for at least this long
SLACK_S = 1.5  # scheduling on a shared 2-core machine: a deadline is met within this
# The process's resident memory may grow by at most this much over its size before the attack (it was
# 58 MB -> 556 MB / 375 MB / 508 MB under the attacks measured in the issue).
RSS_GROWTH_BOUND_MB = 64
HOSTILE_ENV = {
    "BUNSYNC_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "BUNSYNC_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
}
FORGED_SIGNATURE = "t={t},v0=" + "ab" * 32  # well-formed and fresh, but signs nothing


# ------------------------------------------------------------------------------------- observers


@dataclass(eq=False)
class Deliveries(threading.Thread):
    """Real, signed webhooks, one every 100 ms, each on a new connection (as a sender that does not
    keep connections alive), until stopped: (status, seconds to the answer) of each."""

    serve: Serve
    prefix: str
    results: list[tuple[int, float]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        no_keep_alive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(limits=no_keep_alive, timeout=10) as client:
            n = 0
            while not self.stopping.is_set():
                body = webhook_body(f"{self.prefix}-{n}", order_id=500 + n)
                headers = {"X-Bun-Webhook-Signature": sign(SECRET, int(time.time()), body)}
                start = time.monotonic()
                try:
                    status = client.post(f"{self.serve.url}/webhooks/bunjang", content=body, headers=headers)
                    code = status.status_code
                except httpx.HTTPError:
                    code = 0
                self.results.append((code, time.monotonic() - start))
                n += 1
                self.stopping.wait(0.1)


@dataclass(eq=False)
class RssSampler(threading.Thread):
    """The serve process's resident set size, sampled every 50 ms; the peak in MB."""

    pid: int
    peak_mb: float = 0.0
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        process = psutil.Process(self.pid)
        while not self.stopping.is_set():
            self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)
            self.stopping.wait(0.05)


def rss_mb(serve: Serve) -> float:
    return float(psutil.Process(serve.process.pid).memory_info().rss) / 2**20


def refusals(serve: Serve) -> dict[str, float]:
    """``bunsync_http_refusals_total`` and the webhook refusals, by reason, from the operator listener."""
    text = httpx.get(f"{serve.admin_url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "bunsync_http_refusals_total":
                out[s.labels["reason"]] = out.get(s.labels["reason"], 0) + s.value
            elif s.name == "bunsync_webhooks_total" and s.labels["result"] in (
                "rejected",
                "busy",
                "too_large",
            ):
                key = s.labels["reason"] or s.labels["result"]
                out[key] = out.get(key, 0) + s.value
    return out


def log_lines(serve: Serve) -> list[dict[str, object]]:
    return [json.loads(line) for line in serve.logs().splitlines() if line.startswith("{")]


# ---------------------------------------------------------------------------------------- attacks


async def hold(
    port: int, first: bytes, *, drip: bytes = b"", every_s: float = 0.5, give_up_s: float = 15
) -> float | None:
    """Open a connection, send ``first``, then ``drip`` every ``every_s``; return the seconds until the
    server closed it (EOF or reset), or ``None`` if it was still open after ``give_up_s``."""
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0  # refused at once counts as closed
    try:
        writer.write(first)
        closed = asyncio.ensure_future(_until_eof(reader))
        while not closed.done() and time.monotonic() - start < give_up_s:
            await asyncio.wait([closed], timeout=every_s)
            if drip and not closed.done():
                with contextlib.suppress(OSError):
                    writer.write(drip)
        if not closed.done():
            closed.cancel()
            return None
        return time.monotonic() - start
    finally:
        writer.transport.abort()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass


async def many(n: int, make: Callable[[], Awaitable[float | None]]) -> list[float | None]:
    return list(await asyncio.gather(*(make() for _ in range(n))))


def post_head(extra: str = "", length: int = 100) -> bytes:
    return (
        f"POST /webhooks/bunjang HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def forged(length: int) -> bytes:
    return post_head(f"X-Bun-Webhook-Signature: {FORGED_SIGNATURE.format(t=int(time.time()))}\r\n", length)


TINY_UNSIGNED = post_head(length=2) + b"{}"


async def pipelined_flood(port: int) -> list[float | None]:
    """10 connections x 20,000 pipelined tiny unsigned POSTs, never reading the answers."""
    return await many(10, lambda: hold(port, TINY_UNSIGNED * 20_000))


async def pipelined_health_flood(port: int) -> list[float | None]:
    """10 connections x 20,000 pipelined GET /health/live (answered 200, kept alive), never read."""
    return await many(10, lambda: hold(port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 20_000))


async def held_large_bodies(port: int) -> list[float | None]:
    """300 connections each sending a 1 MiB - 1 body (well-formed forged signature) minus its last
    byte, then holding it."""
    size = 1024 * 1024 - 1
    return await many(300, lambda: hold(port, forged(size) + b"x" * (size - 1)))


async def unfinished_big_headers(port: int) -> list[float | None]:
    """50 connections each sending an 8 MB header that never ends (in 64 KiB writes)."""
    first = b"POST /webhooks/bunjang HTTP/1.1\r\nX-Big: "
    return await many(50, lambda: hold(port, first, drip=b"a" * 65536, every_s=0.01))


async def slowloris(port: int) -> list[float | None]:
    """300 connections sending one more header line every 0.5 s, never ending the headers."""
    return await many(300, lambda: hold(port, b"POST /webhooks/bunjang HTTP/1.1\r\n", drip=b"X-A: b\r\n"))


async def slow_bodies(port: int) -> list[float | None]:
    """100 connections with complete, plausibly signed headers, then one body byte every 0.5 s."""
    return await many(100, lambda: hold(port, forged(100), drip=b"x"))


async def idle_connections(port: int) -> list[float | None]:
    """400 connections that send nothing (at an open-file limit of 256 for the server)."""
    return await many(400, lambda: hold(port, b""))


@dataclass(frozen=True)
class Attack:
    run: Callable[[int], Awaitable[list[float | None]]]
    closed_within_s: float  # the configured deadline that must have closed every attack connection
    refusal: str  # a reason that must be counted in /metrics


ATTACKS = {
    "pipelined_unsigned_posts": Attack(pipelined_flood, 0.0, "signature-missing"),
    "pipelined_health_gets": Attack(pipelined_health_flood, 0.0, "pipeline_overflow"),
    "held_1MiB_bodies": Attack(held_large_bodies, BODY_TIMEOUT_S, "body_timeout"),
    "unfinished_8MB_headers": Attack(unfinished_big_headers, 0.0, "headers_too_large"),
    "slowloris": Attack(slowloris, HEADER_TIMEOUT_S, "header_timeout"),
    "slow_bodies": Attack(slow_bodies, BODY_TIMEOUT_S, "body_timeout"),
}


@dataclass
class Outcome:
    """What one attack did to the process."""

    name: str
    rss_before_mb: float
    rss_peak_mb: float
    closed: list[float | None]
    deliveries: list[tuple[int, float]]
    seconds: float

    def __str__(self) -> str:
        slowest_close = max((c for c in self.closed if c is not None), default=0.0)
        slowest = max((d for _, d in self.deliveries), default=0.0)
        return (
            f"{self.name}: RSS {self.rss_before_mb:.0f} -> peak {self.rss_peak_mb:.0f} MB; "
            f"{len(self.closed)} attack connections, last closed after {slowest_close:.1f} s, "
            f"{self.closed.count(None)} never; {len(self.deliveries)} real webhooks, "
            f"statuses {sorted({s for s, _ in self.deliveries})}, slowest {slowest:.2f} s"
        )


def under_attack(serve: Serve, name: str, attack: Callable[[int], Awaitable[list[float | None]]]) -> Outcome:
    """Run ``attack`` (repeated until MIN_ATTACK_S have passed) while real webhooks flow and RSS is
    sampled."""
    before = rss_mb(serve)
    sampler, deliveries = RssSampler(serve.process.pid), Deliveries(serve, name)
    sampler.start()
    deliveries.start()
    started = time.monotonic()
    closed: list[float | None] = []
    port = int(serve.url.rsplit(":", 1)[1])
    while time.monotonic() - started < MIN_ATTACK_S:  # an attack that is over at once is repeated
        closed += asyncio.run(attack(port))
    seconds = time.monotonic() - started
    deliveries.stopping.set()
    deliveries.join(10)
    sampler.stopping.set()
    sampler.join(10)
    return Outcome(name, before, sampler.peak_mb, closed, deliveries.results, seconds)


def assert_bounded(outcome: Outcome, closed_within_s: float) -> None:
    """The outcome a user needs: memory bounded, real webhooks answered 204 within 1 s, attack
    connections closed within the configured deadline."""
    assert outcome.rss_peak_mb - outcome.rss_before_mb < RSS_GROWTH_BOUND_MB, str(outcome)
    assert len(outcome.deliveries) >= 5, str(outcome)
    assert {status for status, _ in outcome.deliveries} == {204}, str(outcome)
    assert max(latency for _, latency in outcome.deliveries) < 1.0, str(outcome)
    assert None not in outcome.closed, str(outcome)
    assert max(c for c in outcome.closed if c is not None) <= closed_within_s + SLACK_S, str(outcome)


def assert_refusals_summarised(serve: Serve, outcomes: list[Outcome]) -> None:
    """After stopping: one summary line per 10 s while refusals came (and one at stop), never a line
    per refused request; nothing crashed."""
    assert serve.stop() == 0
    lines = log_lines(serve)
    refused_lines = [line for line in lines if "refus" in str(line.get("event"))]
    assert all(line["event"] == "http_refused_summary" for line in refused_lines), refused_lines[:3]
    attack_s = sum(o.seconds for o in outcomes)
    assert 1 <= len(refused_lines) <= attack_s / 10 + 1 + len(outcomes)
    real = sum(len(o.deliveries) for o in outcomes)
    assert len(lines) < 2 * real + 60  # the deliveries' own lines, start-up and stop, and the summaries
    assert "Traceback" not in serve.logs()


# Timed under load: on the same xdist worker as the chaos bursts (tests/e2e/test_chaos.py), so no other
# webhook flood competes with it for the cores and its 1 s bound measures bunsync, not the test machine.
@pytest.mark.xdist_group("bursts")
def test_attacks_are_bounded_while_webhooks_flow(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    serve = start_serve({"BUNSYNC_DATABASE_URL": database_url, **HOSTILE_ENV}, "--no-fetch", "--no-scheduler")
    post_webhook(serve, webhook_body("warm-up"))  # the first request pays for imports and connections
    outcomes = [under_attack(serve, name, attack.run) for name, attack in ATTACKS.items()]
    print("", *outcomes, sep="\n")
    for outcome in outcomes:
        assert_bounded(outcome, ATTACKS[outcome.name].closed_within_s)
    counted = refusals(serve)
    assert {a.refusal for a in ATTACKS.values()} <= {k for k, v in counted.items() if v > 0}, counted
    assert serve.process.poll() is None
    assert_refusals_summarised(serve, outcomes)


@pytest.mark.xdist_group("bursts")
def test_connections_beyond_the_open_file_limit_do_not_stop_deliveries(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    """At an open-file limit of 256 (the webhook listener's cap becomes 60 connections), 400 idle
    connections at once: the oldest idle ones are evicted for newcomers, real webhooks keep flowing."""
    serve = start_serve(
        {"BUNSYNC_DATABASE_URL": database_url, **HOSTILE_ENV}, "--no-fetch", "--no-scheduler", open_files=256
    )
    post_webhook(serve, webhook_body("warm-up"))
    outcome = under_attack(serve, "idle_connections", idle_connections)
    print("", outcome, sep="\n")
    assert_bounded(outcome, HEADER_TIMEOUT_S)
    counted = refusals(serve)
    assert counted.get("connection_evicted", 0) > 0, counted
    assert "Too many open files" not in serve.logs()
    assert_refusals_summarised(serve, [outcome])


# ------------------------------------------------------------------------------ the two listeners

TOKEN = "e2e-operator-token-0123456789"


def test_the_operator_listener_needs_its_token_and_the_webhook_listener_serves_nothing_else(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    serve = start_serve(
        {"BUNSYNC_DATABASE_URL": database_url, "BUNSYNC_ADMIN_TOKEN": TOKEN}, "--no-fetch", "--no-scheduler"
    )
    admin = serve.admin_url
    for path in ("/status", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
            r = httpx.get(f"{admin}{path}", headers=headers, timeout=10)
            assert r.status_code == 401, (path, headers)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"] == "urn:bunsync:problem:unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status = httpx.get(f"{admin}/status", headers=bearer, timeout=10)
    assert status.status_code == 200 and "events_total" in status.json()
    assert "bunsync_webhooks_total" in httpx.get(f"{admin}/metrics", headers=bearer, timeout=10).text
    # Health is open on the operator listener, with details.
    assert httpx.get(f"{admin}/health/live", timeout=10).status_code == 200
    ready = httpx.get(f"{admin}/health/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and "schema_version" in ready.json()

    # The webhook listener: /status and /metrics are not there, nor anything but webhooks and health.
    for path in ("/status", "/metrics", "/", "/admin", "/health", "/webhooks/bunjang/x"):
        r = httpx.get(f"{serve.url}{path}", headers=bearer, timeout=10)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {
            "type": "urn:bunsync:problem:not-found",
            "title": "Not found",
            "status": 404,
            "detail": None,
        }
    ready = httpx.get(f"{serve.url}/health/ready", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert "server" not in ready.headers
    counted = httpx.get(f"{admin}/metrics", headers=bearer, timeout=10).text
    assert 'bunsync_http_refusals_total{listener="operator",reason="unauthorized"} 6.0' in counted
    assert 'bunsync_http_refusals_total{listener="webhook",reason="not_found"} 6.0' in counted


def test_not_ready_says_nothing_more_on_the_webhook_listener(
    db_proxy: tuple[TcpProxy, str], start_serve: Callable[..., Serve]
) -> None:
    proxy, dsn = db_proxy
    serve = start_serve({"BUNSYNC_DATABASE_URL": dsn}, "--no-fetch", "--no-scheduler", "--no-projectors")
    proxy.cut()
    public = httpx.get(f"{serve.url}/health/ready", timeout=30)
    assert (public.status_code, public.content) == (503, b'{"status":"not ready"}')
    private = httpx.get(f"{serve.admin_url}/health/ready", timeout=30)
    assert private.status_code == 503 and private.json()["detail"].startswith("database unavailable")
    proxy.restore()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "bunsync.example"])
def test_an_operator_listener_off_loopback_without_a_token_is_refused(host: str) -> None:
    env = {
        **os.environ,
        **ENV_BASE,
        "BUNSYNC_ADMIN_HOST": host,
        "BUNSYNC_DATABASE_URL": "postgresql://x@127.0.0.1:9/x",
    }
    env.pop("BUNSYNC_ADMIN_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"bunsync: configuration error: BUNSYNC_ADMIN_TOKEN: required when BUNSYNC_ADMIN_HOST ({host}) is "
        "not a loopback address: the operator listener serves /status and /metrics, which must not be "
        "open to the network"
    ]


# ---------------------------------------------------------------------- bodies that decode badly


def test_signed_bodies_that_decode_badly_are_stored_verbatim(
    database_url: str, start_serve: Callable[..., Serve]
) -> None:
    serve = start_serve({"BUNSYNC_DATABASE_URL": database_url}, "--no-fetch", "--no-scheduler")
    known = webhook_body("D1")
    bodies = [
        known.replace(b'"data"', b'"note":"\xff\xfe","data"'),  # invalid UTF-8 in an unknown field
        known.replace(b'"D1"', b'"D2"').replace(
            b'"data"', b'"deep":' + b"[" * 10_000 + b"]" * 10_000 + b',"data"'
        ),
        b"{" * 20_000,  # deep and not even JSON
        known.replace(b'"D1"', b'"D\\u00003"'),  # NUL in the eventId
        b"\x00" * 1000,
        b"x" * (1024 * 1024),  # exactly the limit
    ]
    for body in bodies:
        assert post_webhook(serve, body).status_code == 204
    stored = fetch_rows(database_url, "SELECT type, raw FROM bunsync.event_log ORDER BY position")
    assert [bytes(r["raw"]) for r in stored] == bodies
    assert {r["type"] for r in stored} == {"webhook.unrecognized"}
    assert "http_unexpected_error" not in serve.logs()
