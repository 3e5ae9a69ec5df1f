"""``Sandbox``: the running stand-in for Bunjang, tying the world, faults, counters and delivery together.

Every change the world makes goes through :meth:`Sandbox._emit`, which turns it into one webhook event.
Changes come from admin calls or, when enabled, from the automatic schedule in simulated time
(:meth:`Sandbox.tick`): a new order every ``create_every_s`` and a random step every
``advance_every_s`` simulated seconds. A jump of the clock moves the schedule with it, so jumping 40
days ahead does not set off 40 days of catch-up.

Separate seeded generators drive the world, the fault decisions, event ids and retry jitter, so each
stays reproducible whatever the others do.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from app.feed import signing
from app.sandbox.auth import Rejection, check_token
from app.sandbox.clock import SimClock
from app.sandbox.config import SandboxConfig
from app.sandbox.consumer import Consumer
from app.sandbox.counters import Counters, CountersOut
from app.sandbox.delivery import Deliverer, new_event_id, report_crash
from app.sandbox.faults import Faults
from app.sandbox.wire import envelope_body
from app.sandbox.world import Change, ItemChange, World

log = structlog.get_logger(__name__)

TICK_S = 0.05  # real seconds between schedule checks when automatic changes are on
MAX_AUTO_PER_TICK = 1000  # bounds the work of one tick after a long pause of the event loop


def _seeded(seed: int, purpose: str) -> random.Random:
    """A generator for one purpose, reproducible from the seed."""
    return random.Random(f"{purpose}:{seed}")  # noqa: S311 - a seedable simulation, not cryptography


class Sandbox:
    """One sandbox instance; :meth:`start` and :meth:`stop` run on the serving event loop."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._wall = wall
        seed = config.seed
        start = config.start_time or datetime.fromtimestamp(wall(), UTC)
        self.clock = SimClock(start, config.clock_speed, monotonic)
        self.world = World(_seeded(seed, "world"), self.clock)
        self.faults = Faults(config.faults, _seeded(seed, "faults"))
        self.counters = Counters()
        self._event_rng = _seeded(seed, "events")
        key = signing.parse_secret(config.consumer_secret)
        self.consumer = Consumer(key, _seeded(seed, "consumer"), wall=wall, monotonic=monotonic)
        if config.consumer_fail_rate:
            self.consumer.update({"failRate": config.consumer_fail_rate})
        self.deliverer: Deliverer | None = None
        if config.webhook_url:
            self.deliverer = Deliverer(
                url=config.webhook_url,
                secret=config.webhook_secret,
                faults=self.faults,
                counters=self.counters,
                rng=_seeded(seed, "delivery"),
                timeout_s=config.webhook_timeout_s,
                retry_base_s=config.webhook_retry_base_s,
                max_retries=config.webhook_max_retries,
                deadline_s=config.webhook_deadline_s,
                wall=wall,
            )
        self._next_create: datetime | None = None
        self._next_advance: datetime | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Webhook deliveries not yet settled."""
        return self.deliverer.pending if self.deliverer else 0

    async def start(self) -> None:
        """Start delivery, create the initial orders and, if configured, the automatic schedule."""
        if self.deliverer is not None:
            await self.deliverer.start()
        self.create_orders(self.config.initial_orders)
        now = self.clock.now()
        if self.config.create_every_s > 0:
            self._next_create = now + timedelta(seconds=self.config.create_every_s)
        if self.config.advance_every_s > 0:
            self._next_advance = now + timedelta(seconds=self.config.advance_every_s)
        if self._next_create or self._next_advance:
            self._ticker = asyncio.create_task(self._tick_loop(), name="sandbox-ticker")
            self._ticker.add_done_callback(report_crash)
        log.info(
            "sandbox.started",
            orders=self.world.order_count,
            webhook_url=self.config.webhook_url,
            clock_speed=self.config.clock_speed,
            seed=self.config.seed,
        )

    async def stop(self) -> None:
        """Stop the schedule and delivery."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self.deliverer is not None:
            await self.deliverer.stop()

    def check_auth(self, authorization: str | None) -> Rejection | None:
        """The 401 rejection for this ``Authorization`` header, or ``None`` if the token is valid now."""
        return check_token(
            authorization,
            self.config.access_key,
            self.config.secret_key,
            now=self._wall(),
            validity_s=self.config.token_validity_s,
        )

    def create_orders(self, count: int, items: int | None = None) -> list[Change]:
        """Create ``count`` orders (``items`` each, default random 1-3); one webhook per order."""
        return [self._emit(self.world.create_order(items)) for _ in range(count)]

    def advance_item(self, order_id: int, item_id: int, to: str | None = None, force: bool = False) -> Change:
        """One step of one item (see :meth:`World.advance_item`)."""
        return self._emit(self.world.advance_item(order_id, item_id, to, force))

    def advance_order(self, order_id: int) -> list[Change]:
        """One step of every non-final item of an order, as one webhook."""
        change = self.world.advance_order(order_id)
        return [self._emit(change)] if change else []

    def random_steps(self, steps: int) -> list[Change]:
        """``steps`` seeded random item steps, one webhook each."""
        return [self._emit(c) for c in self.world.random_steps(steps)]

    def advance_clock(self, seconds: float) -> datetime:
        """Jump simulated time forward; the automatic schedule moves with it."""
        delta = timedelta(seconds=seconds)
        if self._next_create is not None:
            self._next_create += delta
        if self._next_advance is not None:
            self._next_advance += delta
        return self.clock.advance(seconds)

    def counters_snapshot(self) -> CountersOut:
        """The counters, with the current pending count."""
        return self.counters.snapshot(self.pending)

    def tick(self) -> int:
        """Make the automatic changes due by simulated now; return how many were made."""
        now = self.clock.now()
        made = 0
        limit = self.config.max_orders
        for _ in range(MAX_AUTO_PER_TICK):
            if self._next_create is None or self._next_create > now:
                break
            self._next_create += timedelta(seconds=self.config.create_every_s)
            if not limit or self.world.order_count < limit:
                self.create_orders(1)
                made += 1
        for _ in range(MAX_AUTO_PER_TICK):
            if self._next_advance is None or self._next_advance > now:
                break
            self._next_advance += timedelta(seconds=self.config.advance_every_s)
            made += len(self.random_steps(1))
        return made

    async def _tick_loop(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(TICK_S)

    def _emit(self, change: Change) -> Change:
        """Send the webhook for one change (if a target is configured); return the change."""
        self.counters.webhook("emitted")
        if self.deliverer is not None:
            body_change = change
            if self.config.webhook_all_items:
                order = self.world.get(change.order_id)
                if order is not None:
                    body_change = Change(
                        change.order_id,
                        tuple(ItemChange(i.id, i.pid, i.status, i.status_updated_at) for i in order.items),
                    )
            stamp = max(i.status_updated_at for i in change.items)
            event_id = new_event_id(self._event_rng, stamp)
            self.deliverer.submit(event_id, change.order_id, envelope_body(event_id, body_change))
        return change
