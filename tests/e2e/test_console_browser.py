"""The operator console in a real headless Chromium, against a real ``bunsync serve`` and the sandbox:
open the overview, search an order id, open its page and see every item's status, press redrive on a
dead letter and see it leave the list. Screenshots go to the test's temporary directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import browser
from tests.e2e.helpers import (
    SandboxProcess,
    Serve,
    bunsync_env,
    fetch_rows,
    free_port,
    post_webhook,
    scalar,
    wait_in_sync,
    webhook_body,
)

pytestmark = pytest.mark.e2e
TOKEN = "browser-test-token-0123456789"
UNKNOWN_ORDER = 987654  # the sandbox answers 404 for it: its fetch is dead at once


def _wait(check: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_console_in_a_real_browser(
    database_url: str,
    tmp_path: Path,
    start_sandbox_process: Callable[..., SandboxProcess],
    start_serve: Callable[..., Serve],
) -> None:
    why = browser.missing()
    if why:
        pytest.skip(f"no browser: {why}")
    port = free_port()
    sandbox = start_sandbox_process(
        "--webhook-url", f"http://127.0.0.1:{port}/webhooks/bunjang", "--seed", "5"
    )
    serve = start_serve(bunsync_env(database_url, sandbox, port, BUNSYNC_ADMIN_TOKEN=TOKEN), "--no-scheduler")
    sandbox.admin("POST", "orders", json={"count": 3})
    sandbox.admin("POST", "advance", json={"steps": 8})
    assert wait_in_sync(sandbox, database_url, 30) == []
    assert post_webhook(serve, webhook_body("dead-1", UNKNOWN_ORDER)).status_code == 204
    _wait(
        lambda: (
            scalar(database_url, "SELECT count(*) FROM bunsync.fetch_queue WHERE dead_at IS NOT NULL") == 1
        ),
        30,
        "the unknown order's fetch to die",
    )
    order_id = int(
        fetch_rows(database_url, "SELECT min(order_id) AS o FROM reporting.order_item_status")[0]["o"]
    )
    items = fetch_rows(
        database_url,
        "SELECT order_item_id, status FROM reporting.order_item_status "
        "WHERE order_id = $1 ORDER BY order_item_id",
        order_id,
    )

    from selenium.webdriver.common.by import By

    driver = browser.chrome()
    try:
        assert serve.admin_url is not None
        driver.get(serve.admin_url + "/")
        assert driver.current_url.endswith("/sign-in")  # no session yet
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button").click()
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".verdict h1"), 10, "the overview")
        assert driver.find_element(By.CSS_SELECTOR, ".verdict h1").text == "Degraded"  # one dead fetch
        assert driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        browser.full_page_screenshot(driver, tmp_path / "overview.png")

        box = driver.find_element(By.ID, "q")
        box.send_keys(str(order_id))
        box.submit()
        _wait(lambda: driver.current_url.endswith(f"/orders/{order_id}"), 10, "the order page")
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.item")
        shown = {
            int(r.get_attribute("data-item")): r.find_element(By.CSS_SELECTOR, ".status").text for r in rows
        }
        assert shown == {r["order_item_id"]: r["status"] for r in items}
        browser.full_page_screenshot(driver, tmp_path / "order.png")

        # Bunjang now answers 5xx, so the re-queued fetch waits out a backoff instead of meeting the same
        # 404 and going dead again before the page reloads: it leaves the list and stays out of it.
        sandbox.admin("PATCH", "faults", json={"getOrderErrorRate": 1.0})  # the admin helper checks the 2xx
        driver.get(serve.admin_url + "/dead-letters")
        assert driver.find_elements(By.CSS_SELECTOR, f"tr[data-order='{UNKNOWN_ORDER}']")
        driver.find_element(By.CSS_SELECTOR, f"tr[data-order='{UNKNOWN_ORDER}'] button").click()
        # The confirmation page: a click's navigation is not awaited by every driver, so wait for it.
        _wait(lambda: driver.find_elements(By.ID, "confirm"), 10, "the confirmation page")
        driver.find_element(By.ID, "confirm").click()
        _wait(lambda: "re-queued 1" in driver.page_source, 10, "the redrive notice")
        assert not driver.find_elements(By.CSS_SELECTOR, f"tr[data-order='{UNKNOWN_ORDER}']")
        browser.full_page_screenshot(driver, tmp_path / "dead-letters.png")
    finally:
        driver.quit()
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("overview.png", "order.png"))
