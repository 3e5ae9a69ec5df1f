"""Standard Webhooks signing (https://www.standardwebhooks.com), the few lines bunsync needs.

Not the ``standardwebhooks`` PyPI package: its Python distribution is an OpenAPI-generated client
that pulls in attrs, python-dateutil, Deprecated and httpx pins for what is one HMAC over
``"{id}.{timestamp}.{body}"``; signing here is stdlib only, and ``tests/unit/test_feed_signing.py``
checks it against the specification's published test vector (the same one that package tests).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105  # the format's prefix, not a secret


def parse_secret(raw: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; ``ValueError`` says what is wrong (never the value)."""
    raw = raw.strip()
    if not raw.startswith(SECRET_PREFIX):
        raise ValueError("must start with 'whsec_' followed by base64 (Standard Webhooks secret)")
    try:
        key = base64.b64decode(raw[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after 'whsec_' must be base64") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes (24 base64 characters)")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(key: bytes, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any ``v1,`` signature in ``header`` (space-separated) signs this message (constant time)."""
    expected = sign(key, msg_id, timestamp, body).encode()
    return any(
        hmac.compare_digest(expected, part.encode()) for part in header.split() if part.startswith("v1,")
    )


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }
