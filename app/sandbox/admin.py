"""Admin endpoints under ``/_sandbox/``: drive the world, set faults, read counters and the truth.

No authentication (the sandbox listens on localhost). JSON keys are camelCase like Bunjang's. A request
the world cannot honour answers ``{"errorCode", "reason"}``: 404 for an unknown order or item, 409 for a
final item or an undocumented edge.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Response, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter

from app.sandbox.counters import CountersOut
from app.sandbox.faults import FaultSettings
from app.sandbox.service import Sandbox
from app.sandbox.wire import error_body, format_time
from app.sandbox.world import Change, WorldError


class _Camel(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Base of admin bodies."""


class CreateOrdersIn(_Camel, frozen=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    items: Annotated[int, msgspec.Meta(ge=1, le=3)] | None = None


class AdvanceOrderIn(_Camel, frozen=True):
    item_id: int | None = None
    to: str | None = None
    force: bool = False


class RandomStepsIn(_Camel, frozen=True):
    steps: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1


class ClockIn(_Camel, frozen=True):
    advance_seconds: Annotated[float, msgspec.Meta(ge=0)]


class ItemOut(_Camel, frozen=True):
    order_item_id: int
    pid: int
    status: str
    status_updated_at: str


class ChangeOut(_Camel, frozen=True):
    order_id: int
    order_items: tuple[ItemOut, ...]


class ChangesOut(_Camel, frozen=True):
    changes: tuple[ChangeOut, ...]


class TruthItemOut(_Camel, frozen=True):
    order_id: int
    order_item_id: int
    pid: int
    status: str
    status_updated_at: str


class TruthOut(_Camel, frozen=True):
    now: str
    items: tuple[TruthItemOut, ...]


class ClockOut(_Camel, frozen=True):
    now: str
    speed: float


class OutcomeOut(_Camel, frozen=True):
    event_id: str
    order_id: int
    attempts: int
    last_status: int | None
    delivered: bool


class WebhooksOut(_Camel, frozen=True):
    pending: int
    recent: tuple[OutcomeOut, ...]


class SettleOut(_Camel, frozen=True):
    settled: bool
    pending: int


def _changes(changes: list[Change]) -> ChangesOut:
    return ChangesOut(
        changes=tuple(
            ChangeOut(
                order_id=c.order_id,
                order_items=tuple(
                    ItemOut(
                        order_item_id=i.order_item_id,
                        pid=i.pid,
                        status=i.status,
                        status_updated_at=format_time(i.status_updated_at),
                    )
                    for i in c.items
                ),
            )
            for c in changes
        )
    )


def _world_error(exc: WorldError) -> Response[bytes]:
    status = 404 if exc.kind == "not_found" else 409
    code = "RESOURCE_NOT_FOUND" if status == 404 else "CONFLICT"
    return Response(content=error_body(code, str(exc)), status_code=status, media_type="application/json")


@post("/_sandbox/orders", status_code=201)
async def create_orders(
    sandbox: NamedDependency[Sandbox], data: JSONBody[CreateOrdersIn | None] = None
) -> ChangesOut:
    """Create orders: ``{"count": 1, "items": null}`` (``items`` 1-3, default random)."""
    body = data or CreateOrdersIn()
    return _changes(sandbox.create_orders(body.count, body.items))


@post("/_sandbox/orders/{order_id:int}/advance", status_code=200)
async def advance_order(
    sandbox: NamedDependency[Sandbox], order_id: FromPath[int], data: JSONBody[AdvanceOrderIn | None] = None
) -> ChangesOut | Response[bytes]:
    """Advance one item (``itemId``, optionally ``to`` a status, ``force`` off-graph) or the whole order."""
    body = data or AdvanceOrderIn()
    try:
        if body.item_id is None:
            if body.to is not None:
                raise ValidationException("'to' needs an 'itemId'")
            return _changes(sandbox.advance_order(order_id))
        return _changes([sandbox.advance_item(order_id, body.item_id, body.to, body.force)])
    except WorldError as exc:
        return _world_error(exc)


@post("/_sandbox/advance", status_code=200)
async def random_steps(
    sandbox: NamedDependency[Sandbox], data: JSONBody[RandomStepsIn | None] = None
) -> ChangesOut:
    """``{"steps": N}`` seeded random item steps (fewer if every item is final)."""
    return _changes(sandbox.random_steps((data or RandomStepsIn()).steps))


@get("/_sandbox/clock")
async def read_clock(sandbox: NamedDependency[Sandbox]) -> ClockOut:
    """The simulated time and speed."""
    return ClockOut(now=format_time(sandbox.clock.now()), speed=sandbox.clock.speed)


@post("/_sandbox/clock", status_code=200)
async def jump_clock(sandbox: NamedDependency[Sandbox], data: JSONBody[ClockIn]) -> ClockOut:
    """``{"advanceSeconds": S}``: jump simulated time forward."""
    sandbox.advance_clock(data.advance_seconds)
    return ClockOut(now=format_time(sandbox.clock.now()), speed=sandbox.clock.speed)


@get("/_sandbox/faults")
async def read_faults(sandbox: NamedDependency[Sandbox]) -> FaultSettings:
    """The current fault settings."""
    return sandbox.faults.settings


@patch("/_sandbox/faults")
async def update_faults(sandbox: NamedDependency[Sandbox], data: JSONBody[dict[str, Any]]) -> FaultSettings:
    """Partial update of the fault settings (any subset of the keys of ``GET``)."""
    try:
        return sandbox.faults.update(data)
    except msgspec.ValidationError as exc:
        raise ValidationException(str(exc)) from exc


@get("/_sandbox/counters")
async def read_counters(sandbox: NamedDependency[Sandbox]) -> CountersOut:
    """Webhook and REST counters."""
    return sandbox.counters_snapshot()


@get("/_sandbox/truth")
async def read_truth(sandbox: NamedDependency[Sandbox]) -> TruthOut:
    """Every item's current status and ``statusUpdatedAt``, by order id then item id."""
    items = tuple(
        TruthItemOut(
            order_id=o.id,
            order_item_id=i.id,
            pid=i.pid,
            status=i.status,
            status_updated_at=format_time(i.status_updated_at),
        )
        for o in sandbox.world.orders()
        for i in o.items
    )
    return TruthOut(now=format_time(sandbox.clock.now()), items=items)


@get("/_sandbox/webhooks")
async def read_webhooks(sandbox: NamedDependency[Sandbox]) -> WebhooksOut:
    """Pending deliveries and the outcomes of the latest ones."""
    recent = sandbox.deliverer.recent if sandbox.deliverer else ()
    return WebhooksOut(
        pending=sandbox.pending,
        recent=tuple(
            OutcomeOut(
                event_id=r.event_id,
                order_id=r.order_id,
                attempts=r.attempts,
                last_status=r.last_status,
                delivered=r.delivered,
            )
            for r in recent
        ),
    )


@post("/_sandbox/webhooks/settle")
async def settle_webhooks(
    sandbox: NamedDependency[Sandbox],
    timeout_s: Annotated[float, QueryParameter(name="timeout", ge=0, le=600)] = 30.0,
) -> Response[SettleOut]:
    """Wait (``?timeout=`` seconds, default 30) until no delivery is pending: 200, or 504 if time ran out."""
    settled = await sandbox.deliverer.wait_settled(timeout_s) if sandbox.deliverer else True
    return Response(SettleOut(settled=settled, pending=sandbox.pending), status_code=200 if settled else 504)


ROUTES = [
    create_orders,
    advance_order,
    random_steps,
    read_clock,
    jump_clock,
    read_faults,
    update_faults,
    read_counters,
    read_truth,
    read_webhooks,
    settle_webhooks,
]
