"""The sandbox's world: orders of 1-3 items whose statuses move along :mod:`app.sandbox.lifecycle`.

In-memory and synchronous: every mutation happens on the event loop between two awaits, so there is
nothing to lock. Deterministic: the same seed and the same calls give the same orders and walks.

Every status change is stamped by :meth:`World.stamp`: the simulated time, at millisecond precision,
strictly later than every stamp before it, across the whole world. So ``statusUpdatedAt`` strictly
increases per item and globally, and "which change is newer" always has one answer (the truth).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from app.sandbox import lifecycle
from app.sandbox.buyers import buyer_fields
from app.sandbox.clock import SimClock

_MS = timedelta(milliseconds=1)
_PRODUCTS = (
    ("Nintendo Switch OLED", 280_000),
    ("Galaxy Buds2 Pro", 95_000),
    ("Leica M6 film camera", 3_900_000),
    ("Stüssy 8 ball hoodie", 120_000),
    ("LEGO 10497 Galaxy Explorer", 85_000),
    ("iPad mini 6 64GB", 420_000),
    ("Arc'teryx Beta LT jacket", 380_000),
    ("Hanmi dongle pack", 12_000),
)
_CARRIERS = (("CJGLS", "CJ대한통운"), ("HANJIN", "한진택배"), ("EPOST", "우체국택배"))


@dataclass(slots=True)
class Item:
    """One order item and the facts Get Order shows about it."""

    id: int
    pid: int
    name: str
    price: int
    status: str
    status_updated_at: datetime
    shipping_fee_included: bool
    previous: str | None = None
    purchase_confirmed_at: datetime | None = None
    refunded_at: datetime | None = None
    return_request_id: int | None = None


@dataclass(slots=True)
class Parcel:
    """A tracked parcel: the outbound delivery or a return."""

    invoice_no: str
    company_code: str
    company_name: str
    ship_done_at: datetime | None = None
    id: int | None = None


@dataclass(slots=True)
class Buyer:
    """The buyer's (fake) personal data, shown only by Get Order."""

    name: str
    phone: str
    address1: str
    address2: str
    zip_code: str


@dataclass(slots=True)
class Order:
    """One order."""

    id: int
    seller_id: int
    shop_name: str
    buyer: Buyer
    delivery_price: int
    order_done_at: datetime
    items: list[Item]
    approved_at: datetime | None = None
    delivery: Parcel | None = None
    returns: list[Parcel] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ItemChange:
    """An item as a webhook names it: id, product id and the status it now has."""

    order_item_id: int
    pid: int
    status: str
    status_updated_at: datetime


@dataclass(frozen=True, slots=True)
class Change:
    """One change event of one order (one webhook): the items that changed, in stamp order."""

    order_id: int
    items: tuple[ItemChange, ...]


class WorldError(Exception):
    """An admin request the world cannot honour; ``kind`` maps to an HTTP status."""

    def __init__(self, kind: Literal["not_found", "final", "not_allowed"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


class World:
    """All orders, their items, and the operations that move them."""

    def __init__(
        self,
        rng: random.Random,
        clock: SimClock,
        *,
        first_order_id: int = 100_001,
        first_item_id: int = 5_000_001,
    ) -> None:
        self._rng = rng
        self.clock = clock
        self._orders: dict[int, Order] = {}
        self._active: dict[tuple[int, int], None] = {}  # non-final items, in creation order
        self._next_order_id = first_order_id
        self._next_item_id = first_item_id
        self._next_return_id = 700_001
        self._last_stamp: datetime | None = None

    @property
    def order_count(self) -> int:
        """How many orders exist."""
        return len(self._orders)

    def stamp(self) -> datetime:
        """A new change time: simulated now at ms precision, strictly after every earlier stamp."""
        now = self.clock.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + _MS
        self._last_stamp = now
        return now

    def get(self, order_id: int) -> Order | None:
        """The order with this id, if any."""
        return self._orders.get(order_id)

    def orders(self) -> list[Order]:
        """Every order, by id."""
        return [self._orders[k] for k in sorted(self._orders)]

    def updated_between(self, start: datetime, end: datetime) -> list[Order]:
        """Orders with an item whose current ``statusUpdatedAt`` is in ``[start, end]`` (both inclusive)."""
        return [o for o in self.orders() if any(start <= i.status_updated_at <= end for i in o.items)]

    def create_order(self, item_count: int | None = None) -> Change:
        """A new paid order of ``item_count`` (default: random 1-3) items, all ``PAYMENT_RECEIVED``."""
        rng = self._rng
        count = item_count if item_count is not None else rng.randint(1, 3)
        if not 1 <= count <= 3:
            raise WorldError("not_allowed", "an order has 1 to 3 items")
        order_id = self._next_order_id
        self._next_order_id += 1
        seller = rng.randint(10_000, 99_999)
        name, phone, address1, address2, zip_code = buyer_fields(rng)
        buyer = Buyer(name=name, phone=phone, address1=address1, address2=address2, zip_code=zip_code)
        at = self.stamp()
        items: list[Item] = []
        for _ in range(count):
            name, price = rng.choice(_PRODUCTS)
            item = Item(
                id=self._next_item_id,
                pid=rng.randint(100_000, 999_999),
                name=name,
                price=price,
                status=lifecycle.INITIAL,
                status_updated_at=at if not items else self.stamp(),
                shipping_fee_included=rng.random() < 0.5,
            )
            self._next_item_id += 1
            items.append(item)
            self._active[(order_id, item.id)] = None
        order = Order(
            id=order_id,
            seller_id=seller,
            shop_name=f"shop{seller}",
            buyer=buyer,
            delivery_price=rng.choice((0, 3000, 3500, 4000)),
            order_done_at=at,
            items=items,
        )
        self._orders[order_id] = order
        return Change(order_id, tuple(_item_change(i) for i in items))

    def advance_item(self, order_id: int, item_id: int, to: str | None = None, force: bool = False) -> Change:
        """Move one item one step: along a seeded edge, or to ``to`` (a documented edge unless ``force``)."""
        order = self._orders.get(order_id)
        item = next((i for i in order.items if i.id == item_id), None) if order else None
        if order is None or item is None:
            raise WorldError("not_found", f"no item {item_id} in order {order_id}")
        if to is None:
            to = lifecycle.choose_next(item.status, self._rng, item.previous)
            if to is None:
                raise WorldError("final", f"item {item_id} is {item.status}: no further status")
        elif not force and not lifecycle.is_allowed(item.status, to):
            raise WorldError("not_allowed", f"{item.status} -> {to} is not a documented edge")
        self._move(order, item, to)
        return Change(order_id, (_item_change(item),))

    def advance_order(self, order_id: int) -> Change | None:
        """Move every non-final item of the order one seeded step; ``None`` if all are final."""
        order = self._orders.get(order_id)
        if order is None:
            raise WorldError("not_found", f"no order {order_id}")
        changed: list[ItemChange] = []
        for item in order.items:
            to = lifecycle.choose_next(item.status, self._rng, item.previous)
            if to is not None:
                self._move(order, item, to)
                changed.append(_item_change(item))
        return Change(order_id, tuple(changed)) if changed else None

    def random_steps(self, steps: int) -> list[Change]:
        """Up to ``steps`` seeded steps of randomly chosen non-final items (fewer if all are final)."""
        changes: list[Change] = []
        for _ in range(steps):
            if not self._active:
                break
            order_id, item_id = self._rng.choice(list(self._active))
            changes.append(self.advance_item(order_id, item_id))
        return changes

    def _move(self, order: Order, item: Item, to: str) -> None:
        at = self.stamp()
        item.previous, item.status, item.status_updated_at = item.status, to, at
        if lifecycle.is_final(to):
            self._active.pop((order.id, item.id), None)
        else:
            self._active[(order.id, item.id)] = None
        self._side_effects(order, item, to, at)

    def _side_effects(self, order: Order, item: Item, to: str, at: datetime) -> None:
        """The other Get Order fields a status change fills in."""
        if to == lifecycle.SHIP_READY and order.approved_at is None:
            order.approved_at = at
        elif to == lifecycle.IN_TRANSIT and order.delivery is None:
            order.delivery = self._parcel(at)
        elif to == lifecycle.PURCHASE_CONFIRM:
            item.purchase_confirmed_at = at
        elif to == lifecycle.RETURN_REQUESTED:
            item.return_request_id = self._next_return_id
            self._next_return_id += 1
        elif to == lifecycle.RETURNING:
            parcel = self._parcel(at)
            parcel.id = item.return_request_id
            order.returns.append(parcel)
        elif to == lifecycle.REFUNDED:
            item.refunded_at = at

    def _parcel(self, at: datetime) -> Parcel:
        code, name = self._rng.choice(_CARRIERS)
        return Parcel(f"{self._rng.randint(10**11, 10**12 - 1)}", code, name, ship_done_at=at)


def _item_change(item: Item) -> ItemChange:
    return ItemChange(item.id, item.pid, item.status, item.status_updated_at)
