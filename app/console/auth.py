"""The console's sign-in session and its protection against cross-site requests.

Session: when ``BUNSYNC_ADMIN_TOKEN`` is set, the sign-in form trades the token for a cookie
``bunsync_session = <expiry>.<HMAC-SHA256(token, "session:<expiry>")>`` (HttpOnly, SameSite=Strict,
Path=/): stateless, valid on every replica that has the same token, void when the token changes, and
never the token itself. :func:`session_valid` is what the operator guard asks besides the bearer header.

Cross-site requests: every state-changing route is a POST that must carry the form field ``csrf``
equal to :meth:`Csrf.token` (an HMAC of a secret the page embeds; a cross-site page cannot read it),
and is refused when the browser says the request is cross-site (``Sec-Fetch-Site``). A request
authenticated by its bearer header needs no form token: a browser never attaches that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SESSION_COOKIE = "bunsync_session"
SESSION_TTL_S = 12 * 3600
_ALLOWED_FETCH_SITES = frozenset({"", "same-origin", "none"})


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def new_session(token: str, now: float | None = None) -> str:
    """A session cookie value valid for :data:`SESSION_TTL_S`."""
    expiry = int((now if now is not None else time.time()) + SESSION_TTL_S)
    return f"{expiry}.{_mac(token.encode(), f'session:{expiry}')}"


def session_valid(value: str | None, token: str, now: float | None = None) -> bool:
    """Whether ``value`` is an unexpired session cookie made with ``token`` (constant-time check)."""
    if not value or len(value) > 200:
        return False
    expiry, _, mac = value.partition(".")
    if not expiry.isdigit() or int(expiry) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(mac.encode(), _mac(token.encode(), f"session:{expiry}").encode())


class Csrf:
    """The form token of this listener: derived from the admin token (the same on every replica), or
    from a random per-process secret when there is none."""

    def __init__(self, admin_token: str | None) -> None:
        self._key = (admin_token or "").encode() or secrets.token_bytes(32)

    def token(self) -> str:
        """The value every form of the console carries in its ``csrf`` field."""
        return _mac(self._key, "csrf")

    def accepts(self, given: str | None, fetch_site: str | None) -> bool:
        """Whether a form POST is same-site and carries the right token."""
        if (fetch_site or "").lower() not in _ALLOWED_FETCH_SITES:
            return False
        return given is not None and hmac.compare_digest(given.encode(), self.token().encode())
