"""Bunjang REST authentication: a fresh HS256 JWT for every request.

Bunjang documents the claims (``accessKey``, ``iat`` in seconds, ``nonce`` a random UUID v4) and a
validity of a few seconds after ``iat``. That the token is HS256 keyed with the **base64-decoded** secret
key is what several independent clients do [field]; it lives here and nowhere else.

Neither the secret nor a token is ever logged or shown in a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
import warnings
from collections.abc import Callable

import jwt
import structlog

log = structlog.get_logger(__name__)

ALGORITHM = "HS256"
_RECOMMENDED_KEY_BYTES = 32  # SHA-256 digest size: PyJWT warns about shorter HMAC keys


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

    __slots__ = ("_access_key", "_clock", "_key", "_short_key")

    def __init__(self, access_key: str, secret_key: str, *, clock: Callable[[], float] = time.time) -> None:
        """``secret_key``: the base64 text Bunjang issued; ``clock``: Unix seconds (tests skew it)."""
        if not access_key.strip():
            raise ValueError("the Bunjang access key is empty")
        self._access_key = access_key
        self._key = decode_secret_key(secret_key)
        self._clock = clock
        # Bunjang chooses the key length, not us: say so once instead of warning on every request.
        self._short_key = len(self._key) < _RECOMMENDED_KEY_BYTES
        if self._short_key:
            log.info("bunjang.secret_key_short", key_bytes=len(self._key))

    def __repr__(self) -> str:
        return f"TokenMinter(access_key={self._access_key!r}, secret_key=<redacted>)"

    def claims(self) -> dict[str, object]:
        """The claims of a token minted now."""
        return {"accessKey": self._access_key, "iat": int(self._clock()), "nonce": str(uuid.uuid4())}

    def mint(self) -> str:
        """A new signed token (``Authorization: Bearer <token>``)."""
        if not self._short_key:
            return jwt.encode(self.claims(), self._key, algorithm=ALGORITHM)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            return jwt.encode(self.claims(), self._key, algorithm=ALGORITHM)
