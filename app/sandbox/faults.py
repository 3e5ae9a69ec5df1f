"""Fault knobs of the sandbox: what to break, how often, and the seeded decisions that apply them.

:class:`FaultSettings` is both the configuration (CLI flags) and the JSON of ``/_sandbox/faults``
(camelCase). Rates are probabilities in ``[0, 1]`` drawn from a dedicated seeded generator, so faults do
not disturb the world's own randomness and a seed reproduces a run.

``apiScript`` makes faults exact instead of random: each REST call (Get Order or List Orders) consumes the
first step of the script. Steps: ``ok``; a 5xx code such as ``500`` or ``503``; ``429`` or ``429:<s>``
(with ``Retry-After: <s>``); ``expired`` (401 ``EXPIRED_AUTH_TOKEN`` whatever the token); ``slow:<s>``
(answer normally after ``<s>`` seconds, to provoke client timeouts).

Hostile answers (``nulOrders`` … ``dateOffsetS``) are described in :mod:`app.sandbox.hostile`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)]
Endpoint = Literal["get_order", "list_orders"]


class ApiFault(msgspec.Struct, frozen=True):
    """A fault to apply to one REST call: ``kind`` is ``error``, ``throttle``, ``expired`` or ``slow``."""

    kind: Literal["error", "throttle", "expired", "slow"]
    status: int = 0
    seconds: float = 0.0


def parse_step(step: str) -> ApiFault | None:
    """One ``apiScript`` step as a fault (``None`` for ``ok``); ``ValueError`` if it is not a valid step."""
    name, _, arg = step.strip().partition(":")
    try:
        if name == "ok" and not arg:
            return None
        if name == "expired" and not arg:
            return ApiFault("expired", status=401)
        if name == "slow" and arg and 0 <= float(arg) <= 3600:
            return ApiFault("slow", seconds=float(arg))
        if name == "429" and (not arg or 0 <= int(arg) <= 3600):
            return ApiFault("throttle", status=429, seconds=float(arg or -1))
        if name.isdigit() and 500 <= int(name) <= 599 and not arg:
            return ApiFault("error", status=int(name))
    except ValueError:
        pass
    raise ValueError(f"invalid apiScript step {step!r} (ok, 5xx, 429[:s], expired, slow:s)")


class FaultSettings(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Every fault knob; all off by default."""

    webhook_drop_rate: Rate = 0.0
    """Probability that a webhook event is never sent."""
    webhook_duplicate_rate: Rate = 0.0
    """Probability that a webhook event is sent twice (same ``eventId`` and body, signed separately)."""
    webhook_delay_s: Seconds = 0.0
    """Each event waits a random ``[0, webhookDelayS]`` seconds before its first attempt."""
    webhook_reorder_rate: Rate = 0.0
    """Probability that an event is held back and sent after the next one."""
    get_order_error_rate: Rate = 0.0
    """Probability that Get Order answers 500 ``INTERNAL_ERROR``."""
    get_order_throttle_rate: Rate = 0.0
    """Probability that Get Order answers 429 with ``Retry-After``."""
    list_orders_error_rate: Rate = 0.0
    """Probability that List Orders answers 500 ``INTERNAL_ERROR``."""
    retry_after_s: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 1
    """``Retry-After`` seconds sent with a random 429."""
    api_latency_s: Seconds = 0.0
    """Delay before every REST answer."""
    not_found_orders: tuple[int, ...] = ()
    """Orders for which Get Order always answers 404 ``RESOURCE_NOT_FOUND``."""
    api_script: tuple[str, ...] = ()
    """Exact faults for the next REST calls, one step per call (see the module docstring)."""
    nul_orders: tuple[int, ...] = ()
    """Orders whose answers carry a ``\\u0000`` in text fields (see :mod:`app.sandbox.hostile`)."""
    far_future_orders: tuple[int, ...] = ()
    """Orders whose items' ``statusUpdatedAt`` is ``9999-12-31T23:59:59Z``."""
    out_of_range_orders: tuple[int, ...] = ()
    """Orders whose items' ``statusUpdatedAt`` is ``9999-12-31T23:30:00-01:00`` (year 10000 in UTC)."""
    bad_field_orders: tuple[int, ...] = ()
    """Orders whose items have a price of 2**70 and a non-integer ``returnRequestId``."""
    wrong_id_orders: tuple[int, ...] = ()
    """Orders for which Get Order answers with another order's id."""
    oversize_orders: tuple[int, ...] = ()
    """Orders for which Get Order answers ``oversizeBytes`` bytes (streamed)."""
    oversize_bytes: Annotated[int, msgspec.Meta(ge=0, le=1 << 30)] = 8 * 1024 * 1024
    drip_orders: tuple[int, ...] = ()
    """Orders for which Get Order drips its body one byte every ``dripIntervalS``."""
    drip_list: bool = False
    """List Orders pages drip like ``dripOrders``."""
    drip_interval_s: Seconds = 1.0
    endless_pages: bool = False
    """Every List Orders page announces one more page."""
    date_offset_s: Annotated[float, msgspec.Meta(ge=-86400.0, le=86400.0)] = 0.0
    """Added to the ``Date`` header of every REST answer."""

    def __post_init__(self) -> None:
        for step in self.api_script:
            parse_step(step)


class WebhookPlan(msgspec.Struct, frozen=True):
    """How one webhook event is delivered: dropped, how many copies, delay, held back for reordering."""

    drop: bool
    copies: int
    delay_s: float
    hold: bool


class Faults:
    """The current fault settings and the seeded decisions made from them."""

    def __init__(self, settings: FaultSettings, rng: random.Random) -> None:
        self.settings = settings
        self._rng = rng

    def update(self, patch: Mapping[str, object]) -> FaultSettings:
        """Apply a partial update (camelCase keys); ``msgspec.ValidationError`` if it is invalid."""
        merged = {**msgspec.to_builtins(self.settings), **patch}
        self.settings = msgspec.convert(merged, FaultSettings)
        return self.settings

    def api_fault(self, endpoint: Endpoint) -> ApiFault | None:
        """The fault for the REST call being answered now (consumes one script step if any)."""
        s = self.settings
        if s.api_script:
            step, rest = s.api_script[0], s.api_script[1:]
            self.settings = msgspec.structs.replace(s, api_script=rest)
            fault = parse_step(step)
            if fault is not None and fault.kind == "throttle" and fault.seconds < 0:
                fault = msgspec.structs.replace(fault, seconds=float(s.retry_after_s))
            return fault
        if endpoint == "list_orders":
            return ApiFault("error", status=500) if self._hit(s.list_orders_error_rate) else None
        if self._hit(s.get_order_throttle_rate):
            return ApiFault("throttle", status=429, seconds=float(s.retry_after_s))
        if self._hit(s.get_order_error_rate):
            return ApiFault("error", status=500)
        return None

    def is_missing(self, order_id: int) -> bool:
        """True when Get Order of ``order_id`` must answer 404 (per-order permanent fault)."""
        return order_id in self.settings.not_found_orders

    def webhook_plan(self) -> WebhookPlan:
        """Seeded decisions for one webhook event."""
        s = self.settings
        drop = self._hit(s.webhook_drop_rate)
        copies = 2 if not drop and self._hit(s.webhook_duplicate_rate) else 1
        delay = self._rng.uniform(0.0, s.webhook_delay_s) if s.webhook_delay_s > 0 else 0.0
        hold = not drop and self._hit(s.webhook_reorder_rate)
        return WebhookPlan(drop=drop, copies=copies, delay_s=delay, hold=hold)

    def _hit(self, rate: float) -> bool:
        # No draw for a zero rate: switching one knob on must not shift every other seeded decision.
        return rate > 0 and self._rng.random() < rate
