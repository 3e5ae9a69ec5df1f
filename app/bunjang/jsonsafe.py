"""JSON text that PostgreSQL's ``jsonb`` can store, from a Bunjang answer as received.

``jsonb`` refuses one thing a valid JSON text may hold: the escape ``\\u0000`` (text cannot contain
NUL). Bunjang is not supposed to send it, but a single one would make the whole answer unstorable, so
:func:`storable_json` escapes it once more: the string then holds the six characters ``\\u0000``
(visible, never silently dropped), and the count says how many were repaired. Everything else is kept
byte for byte. Bodies without the escape (all of them, normally) are returned as they are, without
being parsed again.
"""

from __future__ import annotations

from typing import Any

import msgspec

_ESCAPE = "\\u0000"
_any = msgspec.json.Decoder()


class UnstorableJson(ValueError):
    """An answer that is not JSON text ``jsonb`` could ever hold."""


def storable_json(raw: bytes) -> tuple[str, int]:
    """``(text, repaired)``: ``raw`` as JSON text ``jsonb`` accepts, and how many NULs were escaped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnstorableJson(f"the answer is not UTF-8 (byte {exc.start})") from None
    if _ESCAPE not in text:
        return text, 0
    try:
        value = _any.decode(raw)
    except msgspec.DecodeError as exc:
        raise UnstorableJson(f"the answer is not JSON: {exc}") from None
    value, repaired = escape_nul(value)
    if not repaired:  # the six characters were there, escaped already: nothing to repair
        return text, 0
    return msgspec.json.encode(value).decode("utf-8"), repaired


def escape_nul(root: Any) -> tuple[Any, int]:
    """``root`` (decoded JSON) with every NUL in its strings and keys written as ``\\u0000``.

    Iterative, so the depth of the document does not matter; containers are changed in place.
    """
    count = 0

    def fix(text: str) -> str:
        nonlocal count
        found = text.count("\x00")
        count += found
        return text.replace("\x00", _ESCAPE) if found else text

    if isinstance(root, str):
        return fix(root), count
    stack = [root] if isinstance(root, list | dict) else []
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str):
                    node[i] = fix(value)
                elif isinstance(value, list | dict):
                    stack.append(value)
            continue
        for key in list(node):
            value = node[key]
            if isinstance(value, str):
                value = fix(value)
            elif isinstance(value, list | dict):
                stack.append(value)
            fixed = fix(key)
            if fixed != key:
                del node[key]
            node[fixed] = value
    return root, count
