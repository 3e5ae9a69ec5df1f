"""The projector engine and the projections that turn the event log into what readers query.

:data:`REGISTRY` lists every projection; the engine (:mod:`projections.engine`) runs them and
:mod:`projections.rebuild` rebuilds them from the log without taking their views away.
"""

from __future__ import annotations

from typing import Any

from projections.base import Projection
from projections.item_changes import ItemChanges
from projections.order_item_history import OrderItemHistory
from projections.order_item_status import OrderItemStatus
from projections.orders import Orders

#: Every projection, in the order they are run and rebuilt.
REGISTRY: tuple[Projection[Any], ...] = (OrderItemStatus(), OrderItemHistory(), Orders(), ItemChanges())
