"""Bunjang webhook signatures: parse, verify and (for the sandbox and tests) produce them.

Pure functions only: the caller passes the raw body bytes, the header value, the secrets and ``now``.

The header is ``X-Bun-Webhook-Signature: t=<unix seconds>,v0=<64 lowercase hex>[,v0=...]``.
Bunjang documents the header shape, HMAC-SHA256 and the signing secret, but not the exact signed
message. :func:`signed_message` holds bunsync's single **assumption** about it (see README, "Assumptions").
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

HEADER = "X-Bun-Webhook-Signature"
_HEX = frozenset("0123456789abcdef")
_MAX_HEADER_LEN = 4096  # a real header is ~80 bytes; anything huge is garbage, not worth parsing


class Rejection(StrEnum):
    """Why a signature was refused; the value is stable (used in problem types, logs and metrics)."""

    MISSING = "signature-missing"
    MALFORMED = "signature-malformed"
    STALE = "signature-stale"
    INVALID = "signature-invalid"


class SignatureError(Exception):
    """The request is not validly signed; ``reason`` says how."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    """The parts of a signature header that bunsync uses."""

    t: int
    v0: tuple[str, ...]


def signed_message(t: int, body: bytes) -> bytes:
    """The bytes Bunjang signs. **Assumption** (undocumented): ASCII ``t``, a ``.``, the raw body."""
    return str(t).encode("ascii") + b"." + body


def compute_v0(secret: str, t: int, body: bytes) -> str:
    """HMAC-SHA256 of :func:`signed_message`, keyed by the secret's UTF-8 bytes, as lowercase hex."""
    return hmac.new(secret.encode("utf-8"), signed_message(t, body), hashlib.sha256).hexdigest()


def sign(secret: str, t: int, body: bytes) -> str:
    """A header value signing ``body`` at time ``t`` (what Bunjang, the sandbox and tests send)."""
    return f"t={t},v0={compute_v0(secret, t, body)}"


def parse_header(value: str | None) -> ParsedHeader:
    """Parse a header value; raise :class:`SignatureError` (never anything else) if it is unusable.

    Keys other than ``t`` and ``v0`` are ignored; several ``v0`` may appear (secret rotation).
    """
    if value is None or not value.strip():
        raise SignatureError(Rejection.MISSING, f"{HEADER} header is missing")
    if len(value) > _MAX_HEADER_LEN:
        raise SignatureError(Rejection.MALFORMED, f"{HEADER} header is too long")
    t: int | None = None
    v0: list[str] = []
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            continue
        key, val = key.strip(), val.strip()
        if key == "t":
            if t is not None or not val.isascii() or not val.isdigit() or len(val) > 12:
                raise SignatureError(Rejection.MALFORMED, "t must appear once, as whole Unix seconds")
            t = int(val)
        elif key == "v0" and len(val) == 64 and set(val) <= _HEX:
            v0.append(val)
    if t is None:
        raise SignatureError(Rejection.MALFORMED, "no t= in signature header")
    if not v0:
        raise SignatureError(Rejection.MALFORMED, "no well-formed v0= in signature header")
    return ParsedHeader(t=t, v0=tuple(v0))


def verify(
    header: str | None,
    body: bytes,
    secrets: tuple[str, ...],
    now: float,
    tolerance_s: int,
) -> int:
    """Verify ``header`` over the raw ``body``; return the signature time ``t`` on success.

    Accepts if any ``v0`` matches any secret (constant-time comparison) and ``|now - t|`` is within
    ``tolerance_s``. Raises :class:`SignatureError` otherwise.
    """
    return verify_body(check_header(header, now, tolerance_s), body, secrets)


def check_header(header: str | None, now: float, tolerance_s: int) -> ParsedHeader:
    """The checks that need no body: the header's shape and ``t``'s freshness (cheap refusals first:
    the webhook endpoint runs them before it reads a body). Raises :class:`SignatureError`."""
    parsed = parse_header(header)
    if abs(now - parsed.t) > tolerance_s:
        raise SignatureError(
            Rejection.STALE, f"signature time is {int(now - parsed.t)} s from now (tolerance {tolerance_s} s)"
        )
    return parsed


def verify_body(parsed: ParsedHeader, body: bytes, secrets: tuple[str, ...]) -> int:
    """Return ``t`` if any ``v0`` of ``parsed`` signs ``body`` with any secret; else raise
    :class:`SignatureError` (``INVALID``)."""
    matched = False
    for secret in secrets:
        expected = compute_v0(secret, parsed.t, body).encode("ascii")
        for candidate in parsed.v0:
            # No early exit: every comparison is made, so timing says nothing about which one matched.
            matched |= hmac.compare_digest(expected, candidate.encode("ascii"))
    if not matched:
        raise SignatureError(Rejection.INVALID, "signature does not match any configured secret")
    return parsed.t
