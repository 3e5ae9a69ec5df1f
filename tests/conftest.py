"""The one place shared fixtures are registered, for every tier.

- ``tests.fixtures.database``: a real PostgreSQL (one per pytest-xdist worker) and a fresh, migrated
  database per test: ``database_url``, ``empty_database_url``, ``service_url``, ``pool``, ``admin``;
- ``tests.fixtures.sandbox``: the Bunjang sandbox served in-process: ``sandbox``, ``client``,
  ``start_sandbox``, ``make_client``, ``start_receiver``, ``wait_until``.

Tiers: ``tests/unit`` (no database, no sockets, no processes), ``tests/integration`` (real PostgreSQL
and in-process servers on loopback), ``tests/e2e`` (real ``bunsync`` processes; fixtures in
``tests/e2e/conftest.py``, helpers in ``tests/e2e/helpers.py``).
"""

from __future__ import annotations

pytest_plugins = ["tests.fixtures.database", "tests.fixtures.sandbox"]
