"""The event catalogue: every log event type, source, stream name and idempotency key, defined once.

Writers (:mod:`app.webhook.payloads`, :mod:`app.fetcher`, :mod:`app.reconciler`,
:mod:`app.privacy.erasure`, :mod:`app.privacy.redaction`) build events with these names and readers
(:mod:`projections.events`, :mod:`projections.rules`, :mod:`app.ops.status`) match on them. The SQL
that reads the log (``sql/queries``, ``sql/views``) repeats them as literals, as SQL must;
``tests/unit/test_event_catalogue.py`` checks that every literal there is one of these.

An event type names a fact and its payload's shape; a new payload shape is a new type (``….v2``), never a
change to an old one: the log keeps every event for good and a rebuild reads them all again. This module
imports nothing of bunsync.
"""

from __future__ import annotations

import hashlib
import uuid

# ------------------------------------------------------------------------------------------- types

#: A verified ``order.status.changed`` v1 webhook, its body as Bunjang sent it.
WEBHOOK_STATUS_CHANGED = "webhook.order_status_changed.v1"
#: A validly signed webhook bunsync does not understand, stored verbatim; never projected.
WEBHOOK_UNRECOGNIZED = "webhook.unrecognized"
#: A Get Order answer (its order facts; the buyer's personal data is kept apart).
ORDER_OBSERVED = "order.observed"
#: One order as List Orders showed it during a reconcile pass.
ORDER_LISTED = "order.listed"
#: The order's buyer personal data was destroyed (:mod:`app.privacy.erasure`).
PERSONAL_DATA_ERASED = "order.personal_data_erased"

# ----------------------------------------------------------------------------------------- sources

#: Webhooks: provisional (they carry no ``statusUpdatedAt``).
SOURCE_WEBHOOK = "webhook"
#: The REST API's Get Order and List Orders: the authority.
SOURCE_GET_ORDER = "get_order"
SOURCE_LIST_ORDERS = "list_orders"
#: bunsync itself (erasures).
SOURCE_BUNSYNC = "bunsync"

# ------------------------------------------------------------------------------------------ streams

#: Where unrecognised webhooks go (they may name no order).
UNRECOGNIZED_STREAM = "webhooks-unrecognized"


def order_stream(order_id: int) -> str:
    """The stream of every event about order ``order_id``."""
    return f"order-{order_id}"


def order_of_stream(stream: str) -> int | None:
    """The order id of an order's stream (:func:`order_stream`), or None for any other stream."""
    rest = stream.removeprefix("order-")
    if rest == stream or not rest.lstrip("-").isdigit() or len(rest) > 20:
        return None
    return int(rest)


# ------------------------------------------------------------------------------- idempotency keys


def webhook_key(event_id: str) -> str:
    """A webhook's key: its ``eventId`` (a redelivery is the same event)."""
    return f"{SOURCE_WEBHOOK}:{event_id}"


def webhook_body_key(body: bytes) -> str:
    """The key of a delivery without a usable ``eventId``: its body's SHA-256."""
    return f"webhook-body:{hashlib.sha256(body).hexdigest()}"


def observed_key(order_id: int) -> str:
    """A Get Order answer's key: unique, as every fetch is an observation of its own."""
    return f"{SOURCE_GET_ORDER}:{order_id}:{uuid.uuid4()}"


def listed_key(order_id: int, payload: bytes) -> str:
    """A List Orders observation's key: the same observation (same payload) twice is one event."""
    return f"{SOURCE_LIST_ORDERS}:{order_id}:{hashlib.sha256(payload).hexdigest()}"


def erased_key(order_id: int) -> str:
    """An erasure's key: an order is erased once."""
    return f"erasure:{order_id}"
