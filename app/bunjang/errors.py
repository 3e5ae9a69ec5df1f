"""The errors the Bunjang client raises: one small hierarchy, sorted by what the caller should do.

- :class:`TransientError` (5xx, 429, 408, timeouts, connection failures): worth trying again later. The
  client already retried it in-process with backoff before raising; a caller with a persistent queue
  (the fetcher) reschedules it. ``retry_after`` carries the server's ``Retry-After`` when it sent one.
- :class:`PermanentError` (400, 403, 404 and any other unexpected 4xx/3xx): the same request will fail
  the same way; never retried. :class:`NotFound` and :class:`Forbidden` let the fetcher park a job at once.
- :class:`ConfigurationError` / :class:`AuthError` (401 other than a once-expired token, an unusable
  base URL): an operator must fix the credentials or settings; retrying cannot help.
- :class:`MalformedResponse`: a 2xx whose body does not decode as documented; ``raw`` keeps the body so
  it can be stored or inspected.
- :class:`ResponseTooLarge`, :class:`WrongOrder`, :class:`ListingTooLong` (permanent): an answer bunsync
  refuses to take in (over the size limit, for another order, more pages than it will read). A request
  that outlives its total deadline (a dripping body) is a :class:`RequestTimeout`.

Every error keeps Bunjang's ``errorCode`` and ``reason`` (from the ``{"errorCode", "reason"}`` error body)
and the HTTP status, so logs and parked jobs say exactly what Bunjang said.
"""

from __future__ import annotations

from typing import Any


class BunjangError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.reason = reason

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.error_code:
            parts.append(f"errorCode={self.error_code}")
        if self.reason:
            parts.append(f"reason={self.reason!r}")
        return " ".join(parts)


class TransientError(BunjangError):
    """A failure that may succeed later: 5xx, 429, 408, timeouts and connection errors."""

    def __init__(self, message: str, *, retry_after: float | None = None, **details: Any) -> None:
        """``details``: as for :class:`BunjangError` (status, error_code, reason)."""
        super().__init__(message, **details)
        self.retry_after = retry_after


class ServerError(TransientError):
    """Bunjang answered 5xx (``INTERNAL_ERROR`` and friends)."""


class RateLimited(TransientError):
    """Bunjang answered 429 Too Many Requests (or 408); ``retry_after`` holds its ``Retry-After``."""


class NetworkError(TransientError):
    """The request did not get an HTTP answer: connection refused or reset, protocol error."""


class RequestTimeout(NetworkError):
    """Connecting, sending or reading took longer than the client's timeout."""


class PermanentError(BunjangError):
    """A request Bunjang will refuse every time (400, 403, 404, other 4xx); never retried."""


class BadRequest(PermanentError):
    """400 ``BAD_REQUEST``: the request itself is wrong (e.g. a List Orders window over 15 days)."""


class Forbidden(PermanentError):
    """403 ``NOT_ENOUGH_PERMISSION``: e.g. the order belongs to another partner."""


class NotFound(PermanentError):
    """404 ``RESOURCE_NOT_FOUND``: no such order."""


class ConfigurationError(BunjangError):
    """The client cannot work as configured (credentials, base URL); an operator must act."""


class AuthError(ConfigurationError):
    """401 with a code other than a once-expired token: the access key or secret key is wrong.

    ``EXPIRED_AUTH_TOKEN`` twice in a row also ends here: the token is minted fresh for every request,
    so a token that is expired on arrival means this host's clock is wrong.
    """


class MalformedResponse(BunjangError):
    """A 2xx answer whose body is not the documented JSON; ``raw`` holds the body as received."""

    def __init__(self, message: str, *, status: int | None, raw: bytes) -> None:
        super().__init__(message, status=status)
        self.raw = raw


class ResponseTooLarge(PermanentError):
    """A body longer than the client's limit (``BUNSYNC_BUNJANG_MAX_BODY_BYTES``): read no further."""


class WrongOrder(PermanentError):
    """Get Order answered for another order than the one asked: never recorded under either."""


class ListingTooLong(PermanentError):
    """A List Orders window announced more pages than the client will read (its hard maximum)."""
