"""Prove an erasure: dump the whole database's data with ``pg_dump`` and look for personal values in it.

Used by ``bunsync demo`` (its closing check) and the tests. A data-only dump holds every row of every
table, including the log's ``bytea`` (as hex) and ``jsonb`` columns;
:func:`app.privacy.personal_data.found_in` looks for each value as UTF-8 text, as hex, and as JSON
``\\u`` escapes.
"""

from __future__ import annotations

import asyncio

from app.privacy.personal_data import found_in
from app.store.embedded_pg import find_binary

DUMP_TIMEOUT_S = 120.0


class DumpFailed(RuntimeError):
    """pg_dump did not produce a dump."""


async def data_dump(dsn: str) -> bytes:
    """A data-only plain-text ``pg_dump`` of the whole database at ``dsn``."""
    proc = await asyncio.create_subprocess_exec(
        find_binary("pg_dump"),
        "--data-only",
        "--no-owner",
        "--dbname",
        dsn,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(DUMP_TIMEOUT_S):
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DumpFailed(f"pg_dump exited with {proc.returncode}: {err.decode(errors='replace')[:300]}")
    return out


async def scan(dsn: str, values: list[str]) -> dict[str, list[str]]:
    """Which ``values`` a data-only dump of the database at ``dsn`` contains, and in which encodings."""
    return found_in(await data_dump(dsn), values)
