"""Bunjang REST authentication: a fresh HS256 JWT for every request.

Bunjang documents the claims (``accessKey``, ``iat`` in seconds, ``nonce`` a random UUID v4) and a
validity of a few seconds after ``iat``. That the token is HS256 keyed with the **base64-decoded** secret
key is what several independent clients do [field]; it lives here and nowhere else.

The token is put together here (header, claims, HMAC-SHA256, base64url: RFC 7519's compact form)
rather than by PyJWT, which spent ~130 µs per token (mostly checking on every call that the key is not
a PEM key) on the fetch path, one token per request; the tests decode it with PyJWT.

Neither the secret nor a token is ever logged or shown in a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
import uuid
from collections.abc import Callable

import msgspec
import structlog

log = structlog.get_logger(__name__)

_RECOMMENDED_KEY_BYTES = 32  # SHA-256 digest size: RFC 7518 asks for HMAC keys at least this long


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


def decode_secret_key(secret_key: str) -> bytes:
    """The HMAC key for a secret key as Bunjang issues it (base64); ``ValueError`` if it is not base64."""
    text = secret_key.strip()
    if not text:
        raise ValueError("the Bunjang secret key is empty")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the Bunjang secret key is not valid base64 (paste it exactly as issued)") from exc


class TokenMinter:
    """Mints one short-lived bearer token per call to :meth:`mint`."""

    __slots__ = ("_access_key", "_clock", "_key")

    def __init__(self, access_key: str, secret_key: str, *, clock: Callable[[], float] = time.time) -> None:
        """``secret_key``: the base64 text Bunjang issued; ``clock``: Unix seconds (tests skew it)."""
        if not access_key.strip():
            raise ValueError("the Bunjang access key is empty")
        self._access_key = access_key
        self._key = decode_secret_key(secret_key)
        self._clock = clock
        # Bunjang chooses the key length, not us: say so once instead of warning on every request.
        if len(self._key) < _RECOMMENDED_KEY_BYTES:
            log.info("bunjang.secret_key_short", key_bytes=len(self._key))

    def __repr__(self) -> str:
        return f"TokenMinter(access_key={self._access_key!r}, secret_key=<redacted>)"

    def claims(self) -> dict[str, object]:
        """The claims of a token minted now."""
        return {"accessKey": self._access_key, "iat": int(self._clock()), "nonce": str(uuid.uuid4())}

    def mint(self) -> str:
        """A new signed token (``Authorization: Bearer <token>``)."""
        signing_input = _HEADER + b"." + _b64url(msgspec.json.encode(self.claims()))
        signature = _b64url(hmac.digest(self._key, signing_input, "sha256"))
        return (signing_input + b"." + signature).decode("ascii")
