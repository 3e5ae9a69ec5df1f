"""Webhook delivery with Bunjang's documented retry policy, and the webhook fault knobs.

Policy (BUNJANG_API.md, "Retries"): POST with a 10 s timeout; any 2xx is success; 5xx, 429, network
errors and timeouts are retried; every other answer fails the delivery at once. Up to 3 retries after
the first attempt, at ~1 s, ~2 s, ~4 s with ±50 % jitter (:func:`retry_delays`), and no retry starts
after the whole delivery's deadline (~60 s). Every attempt is signed again with the current time by
:func:`app.webhook.signature.sign`, so a retry carries a later ``t`` than the first try.

Faults (:class:`~app.sandbox.faults.FaultSettings`) are decided once per event when it leaves the queue:
drop it, send a second copy (same ``eventId`` and body), delay it, or hold it back until the next event
has made its first attempt (reorder).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import structlog

from app.sandbox.counters import Counters
from app.sandbox.faults import Faults
from app.webhook.signature import HEADER, sign

log = structlog.get_logger(__name__)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REORDER_HOLD_S = 1.0  # how long a held-back event waits for a successor before going out anyway
MAX_PARALLEL_POSTS = 16
RECENT_OUTCOMES = 200


def retry_delays(
    rng: random.Random, *, base_s: float = 1.0, retries: int = 3, jitter: float = 0.5
) -> list[float]:
    """The waits before each retry: ``base * 2**i`` times a uniform factor in ``[1 - jitter, 1 + jitter]``."""
    return [base_s * 2**i * rng.uniform(1 - jitter, 1 + jitter) for i in range(retries)]


def is_retryable(status: int | None) -> bool:
    """True for a network error or timeout (``None``), 429 and 5xx; false for every other answer."""
    return status is None or status == 429 or status >= 500


def new_event_id(rng: random.Random, at: datetime) -> str:
    """A ULID-shaped id (26 Crockford base32 chars): 48 bits of ``at`` in ms, then 80 seeded random bits."""
    value = (int(at.timestamp() * 1000) & (2**48 - 1)) << 80 | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def report_crash(task: asyncio.Task[None]) -> None:
    """Done-callback of background tasks: a task that dies of a bug says so instead of vanishing."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("sandbox.task_crashed", task=task.get_name(), error=repr(exc), exc_info=exc)


@dataclass(slots=True)
class _Job:
    event_id: str
    order_id: int
    body: bytes
    copies: int = 1
    delay_s: float = 0.0
    first_attempt_done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one delivery ended, for ``GET /_sandbox/webhooks``."""

    event_id: str
    order_id: int
    attempts: int
    last_status: int | None
    delivered: bool


class Deliverer:
    """Queues webhook events and delivers them in the background; :attr:`pending` counts unsettled ones."""

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        faults: Faults,
        counters: Counters,
        rng: random.Random,
        timeout_s: float = 10.0,
        retry_base_s: float = 1.0,
        max_retries: int = 3,
        deadline_s: float = 60.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._faults = faults
        self._counters = counters
        self._rng = rng
        self._timeout_s = timeout_s
        self._retry_base_s = retry_base_s
        self._max_retries = max_retries
        self._deadline_s = deadline_s
        self._wall = wall
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._posts = asyncio.Semaphore(MAX_PARALLEL_POSTS)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._http: httpx.AsyncClient | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self.recent: deque[Outcome] = deque(maxlen=RECENT_OUTCOMES)

    @property
    def pending(self) -> int:
        """Deliveries queued, held, waiting or in flight."""
        return self._pending

    async def start(self) -> None:
        """Start the dispatcher (call once, on the running loop)."""
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout_s), follow_redirects=False)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="sandbox-webhook-dispatcher")
        self._dispatcher.add_done_callback(report_crash)

    async def stop(self) -> None:
        """Cancel everything still pending (the sandbox is going away) and close connections."""
        tasks = [*self._tasks, *([self._dispatcher] if self._dispatcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pending:
            log.info("sandbox.webhooks_abandoned", pending=self._pending)
        if self._http is not None:
            await self._http.aclose()

    def submit(self, event_id: str, order_id: int, body: bytes) -> None:
        """Queue one event for delivery."""
        self._add_pending(1)
        self._queue.put_nowait(_Job(event_id, order_id, body))

    async def wait_settled(self, timeout_s: float) -> bool:
        """Wait until nothing is pending; false if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _add_pending(self, n: int) -> None:
        self._pending += n
        if self._pending:
            self._idle.clear()
        else:
            self._idle.set()

    async def _dispatch(self) -> None:
        held: _Job | None = None
        while True:
            try:
                async with asyncio.timeout(REORDER_HOLD_S if held else None):
                    job = await self._queue.get()
            except TimeoutError:
                if held is not None:
                    self._launch(held, after=None)
                held = None
                continue
            plan = self._faults.webhook_plan()
            if plan.drop:
                self._counters.webhook("dropped")
                log.info("sandbox.webhook_dropped", event_id=job.event_id, order_id=job.order_id)
                self._add_pending(-1)
                continue
            if plan.copies > 1:
                self._counters.webhook("duplicated", plan.copies - 1)
                self._add_pending(plan.copies - 1)
            job.copies, job.delay_s = plan.copies, plan.delay_s
            if plan.delay_s > 0:
                self._counters.webhook("delayed")
            if plan.hold and held is None:
                self._counters.webhook("reordered")
                held = job
                continue
            self._launch(job, after=None)
            if held is not None:
                self._launch(held, after=job.first_attempt_done)
                held = None

    def _launch(self, job: _Job, after: asyncio.Event | None) -> None:
        for copy in range(job.copies):
            task = asyncio.create_task(
                self._deliver(job, after), name=f"sandbox-webhook-{job.event_id}-{copy}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job: _Job, after: asyncio.Event | None) -> None:
        try:
            if job.delay_s > 0:
                await asyncio.sleep(job.delay_s)
            if after is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REORDER_HOLD_S):
                        await after.wait()
            await self._attempts(job)
        finally:
            self._add_pending(-1)

    async def _attempts(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        delays = retry_delays(self._rng, base_s=self._retry_base_s, retries=self._max_retries)
        status: int | None = None
        attempts = 0
        for attempt in range(len(delays) + 1):
            if attempt:
                wait = delays[attempt - 1]
                if loop.time() - started + wait > self._deadline_s:
                    break
                await asyncio.sleep(wait)
                self._counters.webhook("retried")
            attempts += 1
            status = await self._post(job)
            job.first_attempt_done.set()
            if status is not None and 200 <= status < 300:
                self._counters.webhook("delivered")
                self.recent.append(Outcome(job.event_id, job.order_id, attempts, status, delivered=True))
                return
            if not is_retryable(status):
                break
        self._counters.webhook("failed")
        self.recent.append(Outcome(job.event_id, job.order_id, attempts, status, delivered=False))
        log.warning(
            "sandbox.webhook_failed",
            event_id=job.event_id,
            order_id=job.order_id,
            attempts=attempts,
            status=status,
        )

    async def _post(self, job: _Job) -> int | None:
        if self._http is None:
            raise RuntimeError("Deliverer.start() was not called")
        async with self._posts:
            # Signed at send time: each retry carries its own, later, t (as Bunjang's retries would).
            t = int(self._wall())
            headers = {"Content-Type": "application/json", HEADER: sign(self._secret, t, job.body)}
            self._counters.webhook("sent")
            try:
                response = await self._http.post(self._url, content=job.body, headers=headers)
            except httpx.HTTPError as exc:
                log.info("sandbox.webhook_attempt_error", event_id=job.event_id, error=type(exc).__name__)
                return None
            return response.status_code
