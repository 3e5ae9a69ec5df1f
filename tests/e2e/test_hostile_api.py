"""A hostile stand-in for Bunjang (the sandbox's hostile faults) against the real ``bunsync serve``.

Each fault of issue 9, section 3 and 6, in a bounded form; each test asserts what a user needs: the
process stays up and small, nothing else is lost, the view is not corrupted, the anomaly is visible
(``bunsync status``, ``bunsync.item_anomalies`` and ``bunsync.order_anomalies``, dead fetches with
their reasons).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import ENV_BASE, SandboxProcess, Serve, bunsync_env, fetch_rows, free_port, scalar

pytestmark = pytest.mark.e2e

RSS_LIMIT_MB = 400  # serve idles near 60 MB; a 10 MiB answer read whole would not show, 200 MB would


def _until(check: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, f"not within {deadline_s} s: {what}"
        time.sleep(0.2)


def _rss_mb(serve: Serve) -> float:
    for line in Path(f"/proc/{serve.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _status(dsn: str) -> dict[str, Any]:
    env = {**ENV_BASE, "PATH": "/usr/bin:/bin", "BUNSYNC_DATABASE_URL": dsn}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "status", "--json"], env=env, capture_output=True, timeout=60
    )
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _dead_reason(dsn: str, order_id: int) -> str | None:
    rows = fetch_rows(dsn, "SELECT dead_reason FROM bunsync.fetch_queue WHERE order_id = $1", order_id)
    return rows[0]["dead_reason"] if rows else None


def _last_error(dsn: str, order_id: int) -> str:
    rows = fetch_rows(dsn, "SELECT last_error FROM bunsync.fetch_queue WHERE order_id = $1", order_id)
    return str(rows[0]["last_error"] or "") if rows else ""


def _view(dsn: str, order_id: int) -> list[tuple[str, Any, str]]:
    rows = fetch_rows(
        dsn,
        "SELECT status, status_updated_at, source FROM reporting.order_item_status WHERE order_id = $1 "
        "ORDER BY order_item_id",
        order_id,
    )
    return [(r["status"], r["status_updated_at"], r["source"]) for r in rows]


def test_hostile_get_order_answers_become_anomalies_or_dead_letters_never_a_dead_process(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    port = free_port()
    sandbox = start_sandbox_process(
        "--webhook-url", f"http://127.0.0.1:{port}/webhooks/bunjang", "--orders", "9"
    )
    truth = sandbox.admin("GET", "truth").json()["items"]
    orders = sorted({i["orderId"] for i in truth})
    nul, future, out_of_range, bad, wrong, oversize, drip, *fine = orders
    faults = {
        "nulOrders": [nul],
        "farFutureOrders": [future],
        "outOfRangeOrders": [out_of_range],
        "badFieldOrders": [bad],
        "wrongIdOrders": [wrong],
        "oversizeOrders": [oversize],
        "oversizeBytes": 10 * 1024 * 1024,
        "dripOrders": [drip],
        "dripIntervalS": 0.5,
    }
    assert sandbox.admin("PATCH", "faults", json=faults).status_code == 200
    env = bunsync_env(
        database_url,
        sandbox,
        port,
        BUNSYNC_RECONCILE_INTERVAL_S="2",
        BUNSYNC_BUNJANG_MAX_BODY_BYTES=str(1024 * 1024),
        BUNSYNC_BUNJANG_REQUEST_DEADLINE_S="2",
    )
    serve = start_serve(env)
    # Every order changes once more: webhooks, fetches and the reconciler all meet the hostile answers.
    for order_id in orders:
        sandbox.admin("POST", f"orders/{order_id}/advance", json={})
    truth = {i["orderItemId"]: i for i in sandbox.admin("GET", "truth").json()["items"]}

    def settled() -> bool:
        return (
            _dead_reason(database_url, wrong) is not None
            and _dead_reason(database_url, oversize) is not None
            and "within 2 s" in _last_error(database_url, drip)
            and all(_view(database_url, o) for o in (nul, future, out_of_range, bad))
            and all(
                _view(database_url, o)[0][0] == truth[_first_item(truth, o)]["status"]
                for o in (nul, future, out_of_range, bad)
            )
        )

    _until(settled, 40, "every hostile order handled")
    assert serve.process.poll() is None, serve.logs()
    assert _rss_mb(serve) < RSS_LIMIT_MB

    # Refused answers are dead letters with their reason; nothing was recorded under the wrong order.
    assert "WrongOrder" in (_dead_reason(database_url, wrong) or "")
    assert "ResponseTooLarge" in (_dead_reason(database_url, oversize) or "")
    assert (
        scalar(
            database_url,
            "SELECT count(*) FROM bunsync.event_log "
            f"WHERE type = 'order.observed' AND stream = 'order-{wrong}'",
        )
        == 0
    )
    # The NUL answer was stored, escaped (never a crash loop), and its status counts.
    escaped = fetch_rows(
        database_url,
        "SELECT payload::text AS p FROM bunsync.event_log WHERE type = 'order.observed' AND stream = $1",
        f"order-{nul}",
    )
    assert escaped and all("\\\\u0000" in r["p"] for r in escaped)
    # Implausible times never become the authority, and the status change still shows.
    for order_id in (future, out_of_range):
        assert all(at is None for _, at, _ in _view(database_url, order_id))
    status = _status(database_url)
    anomalies = status["anomalies"]
    assert anomalies["item_anomalies"] > 0
    fields = {
        (a["order_id"], a["field"])
        for a in fetch_rows(database_url, "SELECT order_id, field FROM bunsync.item_anomalies")
    }
    assert (future, "statusUpdatedAt") in fields and (out_of_range, "statusUpdatedAt") in fields
    assert (bad, "product.price") in fields
    # Bad order-level fields are NULL in the orders row and anomalies; the rest of the row is there.
    assert anomalies["order_anomalies"] >= 3
    order_fields = {
        (a["order_id"], a["field"])
        for a in fetch_rows(database_url, "SELECT order_id, field FROM bunsync.order_anomalies")
    }
    assert {(out_of_range, "order.orderDoneAt"), (bad, "order.totalPrice"), (bad, "seller")} <= order_fields
    rows = {
        r["order_id"]: r
        for r in fetch_rows(
            database_url,
            "SELECT order_id, total_price, delivery_price, order_done_at, seller_id FROM bunsync.orders "
            "WHERE order_id = ANY($1::bigint[])",
            [bad, out_of_range],
        )
    }
    assert (rows[bad]["total_price"], rows[bad]["seller_id"]) == (None, None)
    assert rows[bad]["delivery_price"] is not None and rows[bad]["order_done_at"] is not None
    assert rows[out_of_range]["order_done_at"] is None and rows[out_of_range]["total_price"] is not None
    assert scalar(database_url, "SELECT count(*) FROM bunsync.parked_events WHERE projection = 'orders'") == 0
    # The reconciler keeps passing (no OverflowError), and the orders without faults are in sync.
    _until(
        lambda: scalar(database_url, "SELECT count(*) FROM bunsync.reconcile_passes WHERE ok") >= 2,
        20,
        "two successful reconcile passes",
    )
    assert scalar(database_url, "SELECT count(*) FROM bunsync.reconcile_passes WHERE ok IS false") == 0
    expected = {
        i: (item["status"], datetime.fromisoformat(item["statusUpdatedAt"]))
        for i, item in truth.items()
        if item["orderId"] in (*fine, nul, bad, wrong, oversize, drip)
    }
    _until(lambda: _shown(database_url, list(expected)) == expected, 20, "the other orders in sync")
    assert serve.process.poll() is None, serve.logs()

    # A rebuild (serve stopped: nothing moves meanwhile) reproduces the same view and anomalies.
    assert serve.stop() == 0
    tables = ("order_item_status", "item_anomalies", "orders", "order_anomalies")
    before = {t: fetch_rows(database_url, f"SELECT * FROM bunsync.{t} ORDER BY 1, 2") for t in tables}
    rebuilt = subprocess.run(
        [sys.executable, "-m", "app.cli", "rebuild", "order_item_status", "orders"],
        env={**ENV_BASE, "PATH": "/usr/bin:/bin", "BUNSYNC_DATABASE_URL": database_url},
        capture_output=True,
        timeout=60,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    after = {t: fetch_rows(database_url, f"SELECT * FROM bunsync.{t} ORDER BY 1, 2") for t in tables}
    assert after == before


def _first_item(truth: dict[int, dict[str, Any]], order_id: int) -> int:
    return min(i for i, item in truth.items() if item["orderId"] == order_id)


def _shown(dsn: str, items: list[int]) -> dict[int, tuple[str, Any]]:
    rows = fetch_rows(
        dsn,
        "SELECT order_item_id, status, status_updated_at FROM reporting.order_item_status "
        "WHERE order_item_id = ANY($1::bigint[])",
        items,
    )
    return {r["order_item_id"]: (r["status"], r["status_updated_at"]) for r in rows}


def test_endless_and_dripping_pages_cannot_hold_a_pass_and_the_clock_is_watched(
    database_url: str, start_sandbox_process: Callable[..., SandboxProcess], start_serve: Callable[..., Serve]
) -> None:
    sandbox = start_sandbox_process(
        "--orders", "3", "--hostile", "endless-pages=true", "--hostile", "date-offset=5"
    )
    env = bunsync_env(
        database_url,
        sandbox,
        free_port(),
        BUNSYNC_RECONCILE_INTERVAL_S="1",
        BUNSYNC_RECONCILE_MAX_PAGES="50",
        BUNSYNC_BUNJANG_REQUEST_DEADLINE_S="2",
        BUNSYNC_RECONCILE_PASS_DEADLINE_S="4",
    )
    serve = start_serve(env)
    _until(
        lambda: scalar(database_url, "SELECT count(*) FROM bunsync.reconcile_passes WHERE ok") >= 3,
        20,
        "three passes over endless pages",
    )
    # Each pass read what the first page announced (2 pages), not for ever: a handful of events.
    listed = scalar(database_url, "SELECT count(*) FROM bunsync.event_log WHERE type = 'order.listed'")
    assert listed <= 3 + 3  # the three real orders, and one invented order per pass's second page
    assert scalar(database_url, "SELECT count(*) FROM bunsync.fetch_queue") <= 10

    # A page that drips: each request is cut at its deadline, and the pass at its own.
    sandbox.admin("PATCH", "faults", json={"dripList": True, "dripIntervalS": 0.5})
    _until(
        lambda: scalar(database_url, "SELECT count(*) FROM bunsync.reconcile_passes WHERE ok IS false") >= 1,
        20,
        "a failed pass instead of a hanging one",
    )
    error = fetch_rows(database_url, "SELECT error FROM bunsync.reconcile_passes WHERE ok IS false LIMIT 1")
    assert "RequestTimeout" in error[0]["error"] or "deadline" in error[0]["error"]
    assert serve.process.poll() is None, serve.logs()

    # The sandbox's Date is 5 s ahead: bunsync's clock is 5 s behind, which status flags.
    _until(lambda: _status(database_url)["anomalies"]["clock"] is not None, 20, "a clock reading")
    status = _status(database_url)
    assert -6.5 < status["anomalies"]["clock"]["skew_s"] < -3.5
    assert any("clock" in reason for reason in status["reasons"])
    assert "clock_skew" in serve.logs()


def test_a_refused_value_is_not_quoted_into_the_embedded_postgresql_log() -> None:
    import asyncio
    import shutil
    import tempfile

    import asyncpg

    from app.store.embedded_pg import EmbeddedPostgres

    top = Path(tempfile.mkdtemp(prefix="bunsync-e2e-", dir="/tmp"))
    top.chmod(0o711)  # as root, the server runs as an unprivileged user who must reach it
    try:
        with EmbeddedPostgres(top / "data") as pg:

            async def refuse() -> None:
                conn = await asyncpg.connect(pg.dsn)
                try:
                    await conn.fetchval("SELECT $1::text::jsonb", '{"name": "Buyer Kim\\u0000"}')
                except asyncpg.UntranslatableCharacterError:
                    return
                finally:
                    await conn.close()
                raise AssertionError("jsonb accepted \\u0000")

            asyncio.run(refuse())
            log_text = pg.logfile.read_text(errors="replace")
        assert "unsupported Unicode escape sequence" in log_text  # the error is logged...
        assert "Buyer Kim" not in log_text  # ...without the content (no DETAIL, CONTEXT or parameters)
    finally:
        shutil.rmtree(top, ignore_errors=True)
