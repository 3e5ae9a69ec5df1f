"""Buyer personal data in a Get Order answer: find it, keep it apart, and say where it would show.

Pure functions, no I/O. A Get Order answer carries the buyer's name, phone and address under
``data.delivery.address`` and ``data.returns[].address``. :func:`split` cuts an answer into

- the **order facts**, which go to the append-only log: the same JSON with every personal value
  replaced by :data:`MARKER` (keys, nulls and everything outside an address untouched), and
- the **personal data**, which goes to ``bunsync.personal_data`` (a mutable table that erasure empties):
  each address object as received, keyed by its JSON Pointer (``/data/delivery/address``).

What counts as personal is decided by the key, not by a list of known fields, so a field Bunjang adds
tomorrow is kept apart too: the value of every key named ``address`` or ending in ``Address``
(``returnAddress``), at any depth, whatever its shape (object, list, string, number).

:func:`needles` gives the byte strings under which a value can show in a database dump (UTF-8 text,
bytea hex, JSON ``\\u`` escapes), for the erasure checks of the demo and the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

#: What replaces each personal value in the log.
MARKER = "<personal>"

# Decimal for floats so a number outside an address comes back out exactly as it came in (1.10 stays
# 1.10; msgspec keeps big integers exact by itself).
_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


class Unsplittable(ValueError):
    """An answer that cannot be checked for personal data (not JSON, or nested beyond the decoder's
    depth limit): it must not be logged as it is. The message holds no value from the answer."""


@dataclass(frozen=True, slots=True)
class Split:
    """A Get Order answer cut in two.

    ``facts_json``: the answer for the log, personal values replaced by :data:`MARKER`.
    ``personal``: JSON Pointer of each personal value → the value as received (empty when none).
    """

    facts_json: str
    personal: dict[str, Any]

    @property
    def personal_json(self) -> str | None:
        """``personal`` as JSON text, or None when the answer held no personal data."""
        return _encoder.encode(self.personal).decode("utf-8") if self.personal else None


def is_personal_key(key: str) -> bool:
    """Whether the value under ``key`` is personal data (``address``, ``…Address``)."""
    return key == "address" or key.endswith("Address")


def split(raw: bytes) -> Split:
    """Cut a Get Order answer (JSON bytes) into order facts and personal data.

    Raises :class:`Unsplittable` if ``raw`` is not JSON or is nested too deeply to walk.
    """
    # Fast path: neither "address" nor "…Address" can be in the answer. Any backslash defeats it, since
    # a key may be spelled with JSON escapes ("addr\u0065ss").
    if b"ddress" not in raw and b"\\" not in raw:
        return Split(facts_json=raw.decode("utf-8"), personal={})
    try:
        doc = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise Unsplittable(f"the answer is not JSON ({type(exc).__name__})") from None
    except RecursionError:
        raise Unsplittable("the answer is nested too deeply to check it for personal data") from None
    personal: dict[str, Any] = {}
    for container, key, pointer in _personal_slots(doc):
        value = container[key]
        if value is None:
            continue
        personal[pointer] = value
        container[key] = _masked(value)
    return Split(facts_json=_encoder.encode(doc).decode("utf-8"), personal=personal)


def _personal_slots(doc: Any) -> Iterator[tuple[Any, Any, str]]:
    """(container, key, JSON Pointer) of every personal value in ``doc``, outermost first.

    Iterative (an explicit stack), so a deeply nested answer cannot exhaust Python's recursion limit.
    The caller replaces what it finds, so the walk does not descend into a personal value.
    """
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                pointer = f"{path}/{_escape(key)}"
                if is_personal_key(key):
                    yield node, key, pointer
                elif isinstance(value, dict | list):
                    stack.append((value, pointer))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, dict | list):
                    stack.append((value, f"{path}/{i}"))


def _escape(key: str) -> str:
    """A key as a JSON Pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _masked(value: Any) -> Any:
    """``value`` with the same shape, every non-null leaf replaced by :data:`MARKER`."""
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return None if value is None else MARKER


def leaves(value: Any) -> list[str]:
    """Every non-null leaf of ``value`` as text (the strings an erasure must make disappear)."""
    found: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif node is not None and not isinstance(node, bool):
            found.append(str(node))
    return found


def describe(personal: Any) -> list[str]:
    """What a personal-data document holds, without any value: ``["/data/delivery/address: name,
    phone", …]`` (for the output of ``bunsync forget``)."""
    if not isinstance(personal, dict):
        return []
    out = []
    for pointer, value in sorted(personal.items()):
        fields = sorted(value) if isinstance(value, dict) else [type(value).__name__]
        out.append(f"{pointer}: {', '.join(fields)}")
    return out


def needles(value: str) -> list[bytes]:
    """The byte strings under which ``value`` can appear in a text dump of the database.

    UTF-8 text; bytea in hex output (``\\x…``, lower case as PostgreSQL writes it); and JSON with every
    non-ASCII character as a ``\\u`` escape of four hex digits (lower and upper case). Compare with
    :func:`found_in`, which also lowers the dump for the hex forms.
    """
    text = value.encode("utf-8")
    escaped = "".join(c if ord(c) < 128 else _u_escape(c) for c in value).encode("ascii")
    return list(dict.fromkeys([text, text.hex().encode("ascii"), escaped, escaped.lower()]))


def _u_escape(c: str) -> str:
    code = ord(c)
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    code -= 0x10000  # outside the BMP: a UTF-16 surrogate pair, as JSON writes it
    return f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}"


def found_in(dump: bytes, values: list[str]) -> dict[str, list[str]]:
    """Which of ``values`` occur in ``dump``, and in which encodings (``text``, ``hex``, ``json-escape``)."""
    lowered = dump.lower()
    hits: dict[str, list[str]] = {}
    for value in values:
        text, hexed, *escapes = needles(value)
        kinds = []
        if text in dump:
            kinds.append("text")
        if hexed in lowered:
            kinds.append("hex")
        if any(e != text and e.lower() in lowered for e in escapes):
            kinds.append("json-escape")
        if kinds:
            hits[value] = kinds
    return hits
