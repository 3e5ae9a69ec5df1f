"""How the sandbox checks a REST request's bearer token, the way Bunjang documents it.

Pure: :func:`check_token` takes the header, the credentials and ``now``, and returns ``None`` (accepted)
or the documented 401 ``errorCode`` with a reason. Checks, in order:

1. a ``Bearer`` token is present (else ``MISSING_AUTH_TOKEN``);
2. it is a JWT with an ``accessKey`` claim (``MISSING_ACCESS_KEY``) naming the configured key
   (``INVALID_ACCESS_KEY``), read before the signature because the key selects the secret;
3. it is HS256-signed with the base64-decoded secret key (``INVALID_AUTH_TOKEN``);
4. it has an integer ``iat`` (``MISSING_IAT_CLAIM`` / ``INVALID_AUTH_TOKEN``) no older than the validity
   (``EXPIRED_AUTH_TOKEN``; 5 s by default, as Bunjang documents) and not from the future beyond the
   same allowance.
"""

from __future__ import annotations

import base64
import warnings
from typing import NamedTuple

import jwt


class Rejection(NamedTuple):
    """Why a token was refused: a documented 401 ``errorCode`` and a human reason."""

    error_code: str
    reason: str


def check_token(
    authorization: str | None, access_key: str, secret_key_b64: str, now: float, validity_s: float
) -> Rejection | None:
    """``None`` if ``authorization`` carries a valid token, else the :class:`Rejection`."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return Rejection("MISSING_AUTH_TOKEN", "Authorization: Bearer <token> is required")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return Rejection("INVALID_AUTH_TOKEN", "the token is not a JWT")
    claimed_key = unverified.get("accessKey")
    if not claimed_key:
        return Rejection("MISSING_ACCESS_KEY", "the token has no accessKey claim")
    if claimed_key != access_key:
        return Rejection("INVALID_ACCESS_KEY", "unknown accessKey")
    try:
        with warnings.catch_warnings():
            # A short key is the operator's choice in the sandbox; Bunjang would not warn about it either.
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            claims = jwt.decode(
                token,
                base64.b64decode(secret_key_b64.strip()),
                algorithms=["HS256"],
                options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
            )
    except jwt.PyJWTError:
        return Rejection(
            "INVALID_AUTH_TOKEN", "the token signature does not verify (HS256, base64-decoded secret)"
        )
    iat = claims.get("iat")
    if iat is None:
        return Rejection("MISSING_IAT_CLAIM", "the token has no iat claim")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        return Rejection("INVALID_AUTH_TOKEN", "iat must be Unix seconds")
    if now - iat > validity_s:
        return Rejection("EXPIRED_AUTH_TOKEN", f"the token was issued {int(now - iat)} s ago")
    if iat - now > validity_s:
        return Rejection("INVALID_AUTH_TOKEN", "iat is in the future: check this host's clock")
    return None
