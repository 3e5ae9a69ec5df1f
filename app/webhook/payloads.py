"""Bunjang webhook payloads: the wire types, and turning a verified delivery into a log event.

Decoding happens once, here, at the edge. A delivery is *recognised* when its ``eventType`` and
``payloadVersion`` are ones bunsync knows and the body decodes into their type; anything else that
was validly signed is kept verbatim as ``webhook.unrecognized`` (never projected as if known).
:func:`to_event` never raises, whatever the bytes: invalid UTF-8 anywhere, nesting deeper than the
decoder's limit, ids PostgreSQL could not store: all of it is a delivery to keep, not an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app import events
from app.store.event_log import NewEvent

# Ids must fit PostgreSQL's bigint, or a view casting them would fail for every reader.
Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# No NUL or other control characters: the id becomes the log's idempotency key (text, which refuses
# NUL). A delivery whose eventId breaks this is still kept, keyed by its body's hash.
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class ChangedItem(msgspec.Struct, frozen=True, rename="camel"):
    """One order item in an ``order.status.changed`` v1 event."""

    order_item_id: Id
    pid: Id
    order_status: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class StatusChangedData(msgspec.Struct, frozen=True, rename="camel"):
    """``data`` of ``order.status.changed`` v1."""

    order_id: Id
    order_items: list[ChangedItem]


class StatusChangedV1(msgspec.Struct, frozen=True, rename="camel"):
    """The ``order.status.changed`` v1 envelope."""

    event_id: EventId
    event_type: Literal["order.status.changed"]
    payload_version: Literal["v1"]
    data: StatusChangedData


class _Envelope(msgspec.Struct, frozen=True, rename="camel"):
    """Just enough of any envelope to branch on (and to find the idempotency key)."""

    event_id: EventId | None = None
    event_type: str | None = None
    payload_version: str | None = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_v1_decoder = msgspec.json.Decoder(StatusChangedV1)
_any_decoder = msgspec.json.Decoder()


# What decoding a hostile body can raise besides DecodeError: invalid UTF-8 inside strings msgspec skips
# (then ``bytes.decode``), nesting past the decoder's depth limit, and lone surrogates.
_UNDECODABLE = (msgspec.DecodeError, UnicodeError, RecursionError, ValueError)


def to_event(body: bytes, signed_at: datetime, received_at: datetime) -> NewEvent:
    """The log event for a verified delivery: recognised (with an order to fetch) or unrecognised."""
    try:
        envelope = _envelope_decoder.decode(body)
    except _UNDECODABLE:
        return _unrecognized(body, None, signed_at, received_at)
    if envelope.event_type == "order.status.changed" and envelope.payload_version == "v1":
        try:
            event = _v1_decoder.decode(body)
            payload_json = body.decode("utf-8")
        except _UNDECODABLE:
            return _unrecognized(body, envelope.event_id, signed_at, received_at)
        return NewEvent(
            stream=events.order_stream(event.data.order_id),
            type=events.WEBHOOK_STATUS_CHANGED,
            source=events.SOURCE_WEBHOOK,
            idempotency_key=events.webhook_key(event.event_id),
            payload_json=payload_json,
            raw=body,
            signed_at=signed_at,
            received_at=received_at,
            fetch_order_id=event.data.order_id,
        )
    return _unrecognized(body, envelope.event_id, signed_at, received_at)


def _storable(event_id: str) -> bool:
    try:
        event_id.encode("utf-8")  # a lone surrogate (from a "\ud800" escape) cannot be stored
    except UnicodeError:
        return False
    return True


def without_payload(event: NewEvent) -> NewEvent:
    """The same delivery kept as raw bytes only: for bodies PostgreSQL's jsonb refuses (e.g. ``\\u0000``)."""
    return msgspec.structs.replace(
        event, type=events.WEBHOOK_UNRECOGNIZED, payload_json=None, fetch_order_id=None
    )


def _unrecognized(body: bytes, event_id: str | None, signed_at: datetime, received_at: datetime) -> NewEvent:
    payload_json: str | None
    try:
        _any_decoder.decode(body)
        payload_json = body.decode("utf-8")
    except _UNDECODABLE:
        payload_json = None  # kept as raw bytes only
    key = events.webhook_key(event_id) if event_id and _storable(event_id) else events.webhook_body_key(body)
    return NewEvent(
        stream=events.UNRECOGNIZED_STREAM,
        type=events.WEBHOOK_UNRECOGNIZED,
        source=events.SOURCE_WEBHOOK,
        idempotency_key=key,
        payload_json=payload_json,
        raw=body,
        signed_at=signed_at,
        received_at=received_at,
    )
