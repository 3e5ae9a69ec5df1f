"""Pure rules: how one status observation changes an item's current status and its history.

The spec's rule, made precise (no I/O here; the projections fold batches of events through these):

- API observations (Get Order, List Orders) are the authority and are ordered only among themselves,
  by ``(statusUpdatedAt, log position)``; an observation without ``statusUpdatedAt`` sorts before any
  that has one. The newest one is the item's *API state*. An older one changes nothing current.
- A webhook carries only its signature time ``t``. It is shown, provisionally, when it came after the
  API state in the log and ``t`` is later than the API state's ``statusUpdatedAt``; among such
  webhooks the latest ``(t, position)`` wins. Any newer API observation replaces it.
- ``status_updated_at`` is the API's time of the current status: ``None`` while the status is
  provisional or the API never said. Statuses are opaque strings, kept verbatim.

Defined this way the current status is a function of the *set* of observations, not of the order the
projector happened to read them in (up to one provisional webhook, which any fetch replaces).

Plausibility: an API ``statusUpdatedAt`` is the authority only when it is plausible, judged against
the event's own ``recorded_at`` in the log (never the wall clock, so ``bunsync rebuild`` reproduces
the same views): from :data:`EARLIEST_TIME` to ``recorded_at + FUTURE_TOLERANCE``
(:func:`plausible_time`). An implausible one is read as absent (the status still counts, ordered as
an observation without a time) and recorded as an anomaly by the decoder (``projections/events.py``).
The bulk SQL (``order_item_status.sql``) applies the same bounds.

History: one row per change. An API row is a distinct ``(status, statusUpdatedAt)``; a webhook adds a
row only while no API row of the same status at or before its ``t`` exists (that API row *is* the
change the webhook reported, since a webhook is signed after the change), and such an API row, when
it arrives, replaces it. So each change appears once, whichever of webhook and fetch came first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec

from app.events import SOURCE_WEBHOOK

T = TypeVar("T")

_NEVER = datetime.min.replace(tzinfo=UTC)
#: No status of a Bunjang order changed before this.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
#: How far after its own recording an API time may lie (clock skew between Bunjang and this host's
#: database; tokens live 5 s, so real skews are seconds). A constant, not a setting: changing it would
#: change what a rebuild produces from the same log. Restated in order_item_status.sql (bunsync_observations).
FUTURE_TOLERANCE = timedelta(minutes=15)


def plausible_time(value: datetime, recorded_at: datetime) -> bool:
    """Whether an API time (timezone-aware) is plausible for an event recorded at ``recorded_at``.

    Never raises: a time whose UTC value falls outside Python's years (``9999-12-31T23:30:00-01:00``)
    is refused before any conversion.
    """
    if value.tzinfo is None or not EARLIEST_TIME.year - 1 <= value.year <= 9998:
        return False
    return EARLIEST_TIME <= value <= recorded_at + FUTURE_TOLERANCE


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One item's status as one log event reports it."""

    order_item_id: int
    order_id: int
    status: str
    source: str  # webhook | get_order | list_orders
    position: int
    recorded_at: datetime
    status_updated_at: datetime | None = None  # API observations
    signed_at: datetime | None = None  # webhooks: the signature time t
    pid: int | None = None
    product_name: str | None = None
    price: int | None = None
    #: Fields of this item the decoder judged implausible or unreadable, as (field, problem): they
    #: were read as absent; the status still counts.
    anomalies: tuple[tuple[str, str], ...] = ()

    @property
    def is_api(self) -> bool:
        """Whether the observation comes from the REST API (the authority)."""
        return self.source != SOURCE_WEBHOOK


class ItemState(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``order_item_status``: what readers see, plus the rule's state."""

    order_item_id: int
    order_id: int
    pid: int | None
    product_name: str | None
    price: int | None
    status: str
    status_updated_at: datetime | None
    source: str
    last_position: int
    synced_at: datetime
    api_status: str | None = None
    api_source: str | None = None
    api_updated_at: datetime | None = None
    api_position: int | None = None
    webhook_status: str | None = None
    webhook_signed_at: datetime | None = None
    webhook_position: int | None = None


def _api_key(updated_at: datetime | None, position: int) -> tuple[bool, datetime, int]:
    return (updated_at is not None, updated_at or _NEVER, position)


def _webhook_shown(
    signed_at: datetime, position: int, api_updated_at: datetime | None, api_position: int | None
) -> bool:
    """Whether a webhook may be shown over the API state ``(api_updated_at, api_position)``."""
    if api_position is None:
        return True
    return position > api_position and (api_updated_at is None or signed_at > api_updated_at)


def changes_current(state: ItemState | None, obs: Observation) -> bool:
    """Whether ``obs`` changes which observation is the item's current status."""
    if state is None:
        return obs.is_api or obs.signed_at is not None
    if obs.is_api:
        return state.api_position is None or _api_key(obs.status_updated_at, obs.position) > _api_key(
            state.api_updated_at, state.api_position
        )
    if obs.signed_at is None or not _webhook_shown(
        obs.signed_at, obs.position, state.api_updated_at, state.api_position
    ):
        return False
    if state.webhook_signed_at is None or state.webhook_position is None:
        return True
    return (obs.signed_at, obs.position) > (state.webhook_signed_at, state.webhook_position)


def apply_status(state: ItemState | None, obs: Observation) -> ItemState | None:
    """The item's row after ``obs`` (``None``: still nothing to show, e.g. an unsigned webhook)."""
    if state is None and not changes_current(None, obs):
        return None
    api = (
        (state.api_status, state.api_source, state.api_updated_at, state.api_position)
        if state
        else (None, None, None, None)
    )
    hook = (
        (state.webhook_status, state.webhook_signed_at, state.webhook_position)
        if state
        else (None, None, None)
    )
    if changes_current(state, obs):
        if obs.is_api:
            api = (obs.status, obs.source, obs.status_updated_at, obs.position)
            # A newer API state hides a provisional webhook unless that one is still later.
            if hook[1] is None or hook[2] is None or not _webhook_shown(hook[1], hook[2], api[2], api[3]):
                hook = (None, None, None)
        else:
            hook = (obs.status, obs.signed_at, obs.position)
    newest = state is None or obs.position >= state.last_position
    shown_webhook = hook[0] is not None
    return ItemState(
        order_item_id=obs.order_item_id,
        order_id=obs.order_id if newest or state is None else state.order_id,
        pid=_pick(obs.pid, state.pid if state else None, newest),
        product_name=_pick(obs.product_name, state.product_name if state else None, newest),
        price=_pick(obs.price, state.price if state else None, newest),
        status=str(hook[0] if shown_webhook else api[0]),
        status_updated_at=None if shown_webhook else api[2],
        source=SOURCE_WEBHOOK if shown_webhook else str(api[1]),
        last_position=obs.position if newest or state is None else state.last_position,
        synced_at=obs.recorded_at if newest or state is None else state.synced_at,
        api_status=api[0],
        api_source=api[1],
        api_updated_at=api[2],
        api_position=api[3],
        webhook_status=hook[0],
        webhook_signed_at=hook[1],
        webhook_position=hook[2],
    )


def _pick(new: T | None, old: T | None, new_is_newer: bool) -> T | None:
    """Product facts: the newer observation's value when it has one, else the other's."""
    if new_is_newer:
        return new if new is not None else old
    return old if old is not None else new


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``order_item_history``: a change, keyed by ``(status, status_updated_at)``."""

    order_item_id: int
    order_id: int
    status: str
    status_updated_at: datetime | None
    source: str
    signed_at: datetime | None
    position: int
    recorded_at: datetime

    @property
    def key(self) -> tuple[str, datetime | None]:
        """The change this row stands for."""
        return (self.status, self.status_updated_at)


def apply_history(rows: list[HistoryRow], obs: Observation) -> list[HistoryRow]:
    """The item's history rows after ``obs`` (a new list; ``rows`` is not changed)."""
    row = HistoryRow(
        order_item_id=obs.order_item_id,
        order_id=obs.order_id,
        status=obs.status,
        status_updated_at=obs.status_updated_at if obs.is_api else None,
        source=obs.source,
        signed_at=None if obs.is_api else obs.signed_at,
        position=obs.position,
        recorded_at=obs.recorded_at,
    )
    if obs.is_api:
        ts = obs.status_updated_at
        # Webhook rows this API row accounts for: same status, signed at or after the change.
        kept = [
            r
            for r in rows
            if not (
                r.source == SOURCE_WEBHOOK
                and r.status == obs.status
                and (ts is None or (r.signed_at is not None and r.signed_at >= ts))
            )
        ]
    else:
        if obs.signed_at is None or any(
            r.source != SOURCE_WEBHOOK
            and r.status == obs.status
            and (r.status_updated_at is None or r.status_updated_at <= obs.signed_at)
            for r in rows
        ):
            return list(rows)
        kept = list(rows)
    same = [r for r in kept if r.key == row.key]
    if same:
        # The same change seen again: keep the first sighting (lowest position) for a stable result.
        if same[0].position <= row.position:
            return kept
        kept = [r for r in kept if r.key != row.key]
    return [*kept, row]
