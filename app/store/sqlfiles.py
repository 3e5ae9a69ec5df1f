"""Named SQL statements and the schema files, loaded once from the ``sql`` package.

A query file holds statements each headed by ``-- name: <name>`` and a comment saying what it does
and its ``$1…$n`` parameters. Python code never assembles SQL; it asks for a statement by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: *([a-z_][a-z0-9_]*) *$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class SqlFile:
    """One ``.sql`` file of a folder of the ``sql`` package, e.g. a migration or a view."""

    name: str
    text: str


def _read(folder: str, filename: str) -> str:
    return resources.files("sql").joinpath(folder, filename).read_text(encoding="utf-8")


def files(folder: str) -> list[SqlFile]:
    """The ``.sql`` files of ``sql/<folder>``, sorted by name."""
    root = resources.files("sql").joinpath(folder)
    names = sorted(p.name for p in root.iterdir() if p.name.endswith(".sql"))
    return [SqlFile(name=n, text=_read(folder, n)) for n in names]


@cache
def queries(module: str) -> dict[str, str]:
    """The named statements of ``sql/queries/<module>.sql``."""
    text = _read("queries", f"{module}.sql")
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"sql/queries/{module}.sql: query {name!r} is defined twice")
        found[name] = body.strip()
    return found
