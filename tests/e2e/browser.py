"""A headless Chromium driven by Selenium through Debian's chromedriver (tests and scripts/screenshots.py).

:func:`chrome` returns None (with the reason) when Chromium or chromedriver is missing, so callers skip
cleanly; ``scripts/test`` installs them (Debian ``chromium`` and ``chromium-driver``) when run as root.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing() -> str | None:
    """Why no browser can run here, or None."""
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} is missing (apt-get install chromium chromium-driver; scripts/test does it)"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "chromium is missing (apt-get install chromium)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium WebDriver at ``width`` x ``height``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def full_page_screenshot(driver: Any, path: Path, width: int = 1280) -> None:
    """Save the whole page (not only the viewport) as a PNG."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(max(height + 40, 600), 4000))
    driver.save_screenshot(str(path))
