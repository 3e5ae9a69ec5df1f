#!/usr/bin/env python3
"""Regenerate the console screenshots the README shows (docs/console-overview.png, docs/console-order.png).

Runs the real browser test (tests/e2e/test_console_browser.py: a real `bunsync serve` against the sandbox,
on the test PostgreSQL, driven by headless Chromium) in a private temporary folder and copies its
overview and order-page screenshots into docs/. Needs chromium and chromium-driver (Debian packages).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bunsync-shots-") as tmp:
        done = subprocess.run(
            [
                str(ROOT / ".venv/bin/pytest"),
                "-p",
                "no:cacheprovider",
                "--basetemp",
                tmp,
                "-q",
                "-rs",
                "tests/e2e/test_console_browser.py",
            ],
            cwd=ROOT,
            check=False,
        )
        shots = {p.name: p for p in Path(tmp).rglob("*.png")}
        if done.returncode or not {"overview.png", "order.png"} <= shots.keys():
            print("screenshots: the browser test failed or was skipped; nothing copied", file=sys.stderr)
            return 1
        (ROOT / "docs").mkdir(exist_ok=True)
        for name, target in (("overview.png", "console-overview.png"), ("order.png", "console-order.png")):
            shutil.copyfile(shots[name], ROOT / "docs" / target)
            print(f"screenshots: docs/{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
