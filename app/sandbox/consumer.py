"""The partner's endpoint, simulated: ``POST /_sandbox/consumer`` receives bunsync's change feed.

Point ``BUNSYNC_FORWARD_URL`` at ``{sandbox}/_sandbox/consumer`` and ``BUNSYNC_FORWARD_SECRET`` at the
sandbox's ``--consumer-secret`` (default :data:`app.sandbox.config.DEFAULT_CONSUMER_SECRET`, a public
demo value). Each request is checked as a Standard Webhooks consumer would: the ``v1`` HMAC over
``"{webhook-id}.{webhook-timestamp}.{body}"`` and a timestamp within :data:`TOLERANCE_S` of now.

- A valid request is answered 204 and recorded (arrival order, ``webhook-id``, the body's ``data``,
  ``signatureValid: true``); an invalid signature or stale timestamp is answered 401, a body without a
  ``data`` object 400, and both are recorded too (``answered`` says what the forwarder got).
- It can be told to fail (:class:`ConsumerFaults`, ``PATCH /_sandbox/consumer``): down (503) for N
  seconds from now, and/or answering ``failStatus`` at random with probability ``failRate`` (seeded).
  A request that is failed this way is recorded with its answer, so the caller can tell the delivery
  attempts from the accepted deliveries.
- Memory is bounded: at most :data:`MAX_RECORDS` requests are kept (later ones are only counted in
  ``overflow``), and a body over :data:`MAX_BODY` bytes is refused with 413 without being stored.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from app.feed import signing

TOLERANCE_S = 300  # Standard Webhooks' recommended window against replayed messages
MAX_RECORDS = 200_000
MAX_BODY = 256 * 1024

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class ConsumerFaults(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """How the consumer misbehaves; ``PATCH /_sandbox/consumer`` takes any subset of the keys."""

    fail_rate: Rate = 0.0
    """Probability that a (valid) request is answered ``failStatus`` instead of 204."""
    fail_status: Annotated[int, msgspec.Meta(ge=300, le=599)] = 500
    down_for_s: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 0.0
    """Answer 503 to everything for this many seconds from the moment it is set (0: up)."""


class Receipt(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One request as the consumer saw it (``seq``: arrival order, from 1)."""

    seq: int
    webhook_id: str | None
    webhook_timestamp: int | None
    signature_valid: bool
    answered: int
    data: dict[str, Any] | None


class ReceivedOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``GET /_sandbox/consumer/received``: every request kept, in arrival order, and the counts."""

    requests: int
    accepted: int
    invalid_signatures: int
    overflow: int
    faults: ConsumerFaults
    received: tuple[Receipt, ...]


class _Envelope(msgspec.Struct):
    data: dict[str, Any]


_decoder = msgspec.json.Decoder(_Envelope)


class Consumer:
    """The simulated endpoint's state: its key, its faults and what it received."""

    def __init__(
        self,
        key: bytes,
        rng: random.Random,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = key
        self._rng = rng
        self._wall, self._monotonic = wall, monotonic
        self.faults = ConsumerFaults()
        self._down_until = 0.0
        self._records: list[Receipt] = []
        self.requests = self.accepted = self.invalid_signatures = self.overflow = 0

    def update(self, patch: dict[str, object]) -> ConsumerFaults:
        """Apply a partial fault update (camelCase keys); ``msgspec.ValidationError`` if it is invalid.
        ``downForS`` counts from now."""
        merged = {**msgspec.to_builtins(self.faults), **patch}
        self.faults = msgspec.convert(merged, ConsumerFaults)
        if "downForS" in patch:
            self._down_until = self._monotonic() + self.faults.down_for_s
        return self.faults

    def is_down(self) -> bool:
        """Whether a ``downForS`` fault is in force now."""
        return self._monotonic() < self._down_until

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        """Check and record one request; return the status code to answer."""
        self.requests += 1
        if len(body) > MAX_BODY:
            return self._record(None, None, False, 413, None)
        msg_id = headers.get("webhook-id")
        stamp = _int(headers.get("webhook-timestamp"))
        valid = (
            msg_id is not None
            and stamp is not None
            and abs(self._wall() - stamp) <= TOLERANCE_S
            and signing.verify(self._key, msg_id, stamp, body, headers.get("webhook-signature", ""))
        )
        try:
            data: dict[str, Any] | None = _decoder.decode(body).data
        except msgspec.DecodeError:
            data = None
        if self.is_down():
            return self._record(msg_id, stamp, valid, 503, data)
        if not valid:
            self.invalid_signatures += 1
            return self._record(msg_id, stamp, False, 401, data)
        if data is None:
            return self._record(msg_id, stamp, True, 400, None)
        if self.faults.fail_rate > 0 and self._rng.random() < self.faults.fail_rate:
            return self._record(msg_id, stamp, True, self.faults.fail_status, data)
        self.accepted += 1
        return self._record(msg_id, stamp, True, 204, data)

    def _record(
        self, msg_id: str | None, stamp: int | None, valid: bool, answered: int, data: dict[str, Any] | None
    ) -> int:
        if len(self._records) >= MAX_RECORDS:
            self.overflow += 1
            return answered
        seq = len(self._records) + 1
        self._records.append(
            Receipt(
                seq=seq,
                webhook_id=msg_id[:200] if msg_id else msg_id,
                webhook_timestamp=stamp,
                signature_valid=valid,
                answered=answered,
                data=data,
            )
        )
        return answered

    def snapshot(self, *, accepted_only: bool = False) -> ReceivedOut:
        """What ``GET /_sandbox/consumer/received`` answers (``accepted_only``: the 2xx requests)."""
        records = [r for r in self._records if 200 <= r.answered < 300] if accepted_only else self._records
        return ReceivedOut(
            requests=self.requests,
            accepted=self.accepted,
            invalid_signatures=self.invalid_signatures,
            overflow=self.overflow,
            faults=self.faults,
            received=tuple(records),
        )

    def clear(self) -> None:
        """Forget what was received (the faults stay)."""
        self._records.clear()
        self.requests = self.accepted = self.invalid_signatures = self.overflow = 0


def _int(raw: str | None) -> int | None:
    if raw is None or not raw.strip().isdigit() or len(raw) > 20:
        return None
    return int(raw)
