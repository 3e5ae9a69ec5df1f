"""Import edges that keep the layers honest: what importing one module drags in.

Each check runs in a fresh interpreter (a subprocess), so what other tests imported does not count.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(code: str) -> set[str]:
    """The modules of bunsync (app.*, projections.*) loaded after running ``code`` in a new interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return {m for m in json.loads(out.splitlines()[-1]) if m.split(".")[0] in {"app", "projections"}}


def test_the_bunjang_client_does_not_load_the_projector_or_the_status_reader() -> None:
    loaded = _loaded_after("import app.bunjang.client")
    assert "projections.engine" not in loaded
    assert "app.ops.status" not in loaded
    assert "app.ops.scrape" not in loaded


def test_the_counters_import_nothing_of_bunsync() -> None:
    assert _loaded_after("import app.ops.metrics") == {"app", "app.ops", "app.ops.metrics"}


def test_serve_does_not_load_the_sandbox() -> None:
    # What `bunsync serve` imports before it runs: the command line, its commands and the service.
    loaded = _loaded_after("from app import cli, service\ncli.parse_args(['serve'])")
    assert "app.service" in loaded
    assert not {m for m in loaded if m.startswith("app.sandbox")}


def test_only_the_http_layer_imports_the_scrape_time_gauges() -> None:
    importers = set()
    for path in [*(ROOT / "app").rglob("*.py"), *(ROOT / "projections").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [f"{node.module}.{a.name}" for a in node.names]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.startswith("app.ops.scrape") for n in names):
                importers.add(path.relative_to(ROOT).as_posix())
    assert importers and all(p.startswith("app/http/") for p in importers), importers
