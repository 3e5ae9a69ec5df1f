"""The SQL that reads the log names events as app.events defines them (SQL must repeat them as literals)."""

from __future__ import annotations

import re
from pathlib import Path

from app import events

ROOT = Path(__file__).resolve().parents[2]
SQL = sorted([*(ROOT / "sql" / "queries").glob("*.sql"), *(ROOT / "sql" / "views").glob("*.sql")])
TYPES = {
    events.WEBHOOK_STATUS_CHANGED,
    events.WEBHOOK_UNRECOGNIZED,
    events.ORDER_OBSERVED,
    events.ORDER_LISTED,
    events.PERSONAL_DATA_ERASED,
}
SOURCES = {events.SOURCE_WEBHOOK, events.SOURCE_GET_ORDER, events.SOURCE_LIST_ORDERS, events.SOURCE_BUNSYNC}
# A literal that looks like an event type: `webhook.…` or `order.…`.
_TYPE_LITERAL = re.compile(r"'((?:webhook|order)\.[^']*)'")
# A literal compared with or assigned to a source: `source = '…'`, or a CASE … END AS source.
_SOURCE_LITERAL = re.compile(r"source\s*(?:=|<>)\s*'([^']*)'")
_CASE_AS_SOURCE = re.compile(r"CASE((?:(?!CASE).)*?)END\s+AS\s+source", re.DOTALL)
_THEN_ELSE = re.compile(r"(?:THEN|ELSE)\s+'([^']*)'")


def _code(path: Path) -> str:
    """The file without its comments (they may quote anything)."""
    return re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))


def test_every_event_type_literal_in_sql_is_in_the_catalogue() -> None:
    found = {(p.name, t) for p in SQL for t in _TYPE_LITERAL.findall(_code(p))}
    assert found, "the SQL reads event types"
    assert {t for _, t in found} <= TYPES, sorted(f for f in found if f[1] not in TYPES)
    # The status views read webhooks, Get Order and List Orders observations by type.
    used = {t for _, t in found}
    assert {events.WEBHOOK_STATUS_CHANGED, events.ORDER_OBSERVED, events.ORDER_LISTED} <= used


def test_every_source_literal_in_sql_is_in_the_catalogue() -> None:
    found: set[tuple[str, str]] = set()
    for p in SQL:
        code = _code(p)
        found |= {(p.name, s) for s in _SOURCE_LITERAL.findall(code)}
        for case in _CASE_AS_SOURCE.findall(code):
            found |= {(p.name, s) for s in _THEN_ELSE.findall(case)}
    assert ("order_item_status.sql", events.SOURCE_GET_ORDER) in found
    assert ("webhook_events.sql", events.SOURCE_WEBHOOK) in found
    assert {s for _, s in found} <= SOURCES, sorted(f for f in found if f[1] not in SOURCES)


def test_order_streams_in_sql_are_named_as_the_catalogue_names_them() -> None:
    prefixes = {m for p in SQL for m in re.findall(r"'(order-)'\s*\|\|", _code(p))}
    assert prefixes == {events.order_stream(7).removesuffix("7")}


def test_keys_and_streams() -> None:
    assert events.order_stream(42) == "order-42"
    assert events.webhook_key("E1") == "webhook:E1"
    assert events.listed_key(5, b"{}") == events.listed_key(5, b"{}") != events.listed_key(5, b"[]")
    assert events.observed_key(5) != events.observed_key(5)  # every fetch is an observation of its own
    assert events.erased_key(5) == "erasure:5"


def test_an_order_stream_gives_back_its_order_and_nothing_else_does() -> None:
    assert events.order_of_stream(events.order_stream(7_000_004)) == 7_000_004
    for other in (events.UNRECOGNIZED_STREAM, "order-", "order-x1", "orders-5", "order-" + "9" * 40):
        assert events.order_of_stream(other) is None
