"""``SandboxConfig``: everything the sandbox needs, built once (CLI flags or a test) and never mutated.

The default credentials are public sandbox values, printed in ``docs/sandbox.md``, so an operator can
point bunsync at the sandbox without holding real Bunjang keys.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

from app.feed import signing
from app.sandbox.faults import FaultSettings

DEFAULT_ACCESS_KEY = "sandbox-access-key"
# base64 of the 32 ASCII bytes below: a public sandbox value (32 bytes = the HS256 recommended minimum).
DEFAULT_SECRET_KEY = base64.b64encode(b"bunsync-sandbox-secret-key-0001!").decode("ascii")
DEFAULT_WEBHOOK_SECRET = "sandbox-webhook-secret"  # noqa: S105 - a public sandbox value
DEFAULT_PORT = 8090
# The consumer's Standard Webhooks secret (/_sandbox/consumer): a public demo value, 32 key bytes.
DEFAULT_CONSUMER_SECRET = "whsec_" + base64.b64encode(b"bunsync-sandbox-consumer-key-01!").decode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """The sandbox's settings; every field has a CLI flag (see :mod:`app.sandbox.cli`)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    seed: int = 0
    """Seeds the world (orders, walks, event ids) and, separately, the fault decisions."""
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    """Base64, as Bunjang issues it; tokens must be HS256 with the decoded bytes."""
    token_validity_s: float = 5.0
    """A token is expired this many seconds after its ``iat`` (5 s: Bunjang's documented validity)."""
    webhook_url: str | None = None
    """Where webhooks are POSTed; ``None`` records changes without delivering them."""
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_timeout_s: float = 10.0
    webhook_retry_base_s: float = 1.0
    """First retry after ~this, then doubling (1, 2, 4 s by default), each ±50 % jitter."""
    webhook_max_retries: int = 3
    webhook_deadline_s: float = 60.0
    """No retry starts after this many seconds from the first attempt."""
    webhook_all_items: bool = False
    """List every item of the order in a webhook, not only the items that changed."""
    start_time: datetime | None = None
    """Simulated time at start (timezone-aware); ``None`` = now."""
    clock_speed: float = 1.0
    """Simulated seconds per real second (0 freezes time: only admin calls move it)."""
    initial_orders: int = 0
    create_every_s: float = 0.0
    """Simulated seconds between automatically created orders (0 = never)."""
    advance_every_s: float = 0.0
    """Simulated seconds between automatic random status steps (0 = never)."""
    max_orders: int = 0
    """Stop creating orders automatically once this many exist (0 = no limit)."""
    faults: FaultSettings = field(default_factory=FaultSettings)
    consumer_secret: str = DEFAULT_CONSUMER_SECRET
    """The ``whsec_`` secret ``/_sandbox/consumer`` verifies signatures with (bunsync's
    ``BUNSYNC_FORWARD_SECRET``)."""
    consumer_fail_rate: float = 0.0
    """Probability that the consumer answers 500 to a valid delivery (``PATCH /_sandbox/consumer``)."""
    access_log: bool = False

    def __post_init__(self) -> None:
        try:
            base64.b64decode(self.secret_key.strip(), validate=True)
        except ValueError as exc:  # binascii.Error is a ValueError
            raise ValueError("secret_key must be base64 (as Bunjang issues it)") from exc
        signing.parse_secret(self.consumer_secret)  # ValueError says what is wrong with it
        if not 0.0 <= self.consumer_fail_rate <= 1.0:
            raise ValueError("consumer_fail_rate must be between 0 and 1")
        if self.clock_speed < 0:
            raise ValueError("clock_speed must be >= 0")
        if self.start_time is not None and self.start_time.tzinfo is None:
            raise ValueError("start_time must be timezone-aware")
        if min(self.create_every_s, self.advance_every_s, self.initial_orders, self.max_orders) < 0:
            raise ValueError("order counts and intervals must be >= 0")
        if self.webhook_max_retries < 0 or self.webhook_timeout_s <= 0 or self.webhook_retry_base_s < 0:
            raise ValueError("webhook retry settings must be positive")
