"""The reason, in words, why an item shows what it shows: pure text over the projector's own rule.

Nothing here decides anything. :func:`verdict` describes what ONE observation did to an item, by
asking :func:`projections.rules.changes_current` (the very function the projector runs) and comparing
the :class:`~projections.rules.ItemState` before and after :func:`projections.rules.apply_status`;
:func:`reason` summarises an item's whole story from those verdicts. So the words can never disagree
with the view: they are read off the same state the view is made of.

Times are written in UTC (``2026-01-01 10:02:11Z``, with milliseconds only when they matter).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from app import events
from projections.rules import ItemState, Observation, changes_current

#: Bunjang's documented statuses (BUNJANG_API.md). Others are kept verbatim and said to be unknown.
KNOWN_STATUSES = frozenset(
    {
        "PAYMENT_RECEIVED",
        "SHIP_READY",
        "CANCEL_REQUESTED_BEFORE_SHIPPING",
        "IN_TRANSIT",
        "DELIVERY_COMPLETED",
        "PURCHASE_CONFIRM",
        "RETURN_REQUESTED",
        "RETURN_BEFORE_SHIPPING",
        "RETURNING",
        "RETURNED",
        "REFUNDING",
        "REFUNDED",
    }
)
_SOURCES = {
    events.SOURCE_GET_ORDER: "Get Order",
    events.SOURCE_LIST_ORDERS: "List Orders",
    events.SOURCE_WEBHOOK: "webhook",
}
#: How many ignored observations a reason names before it says "and N more".
NAMED_AT_MOST = 3


def when(value: datetime | None) -> str:
    """A time in UTC for a sentence; milliseconds only when the time has a fraction."""
    if value is None:
        return "no time"
    value = value.astimezone(UTC)
    text = f"{value:%Y-%m-%d %H:%M:%S}"
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


def source_name(source: str) -> str:
    """``get_order`` → ``Get Order``; unknown sources verbatim."""
    return _SOURCES.get(source, source)


def _api_time(value: datetime | None) -> str:
    return f"statusUpdatedAt {when(value)}" if value is not None else "no statusUpdatedAt"


def _api_state(state: ItemState) -> str:
    return f"the API state {state.api_status} ({_api_time(state.api_updated_at)})"


@dataclass(frozen=True, slots=True)
class Step:
    """One observation of an item and what it did: ``changed`` says whether it became current."""

    observation: Observation
    changed: bool
    duplicate: bool
    text: str


def verdict(before: ItemState | None, obs: Observation, after: ItemState | None) -> Step:
    """What ``obs`` did to the item whose state was ``before`` (``after`` = apply_status's result)."""
    changed = changes_current(before, obs)
    if obs.is_api:
        text, duplicate = _api_verdict(before, obs, after, changed)
    else:
        text, duplicate = _webhook_verdict(before, obs, changed)
    if obs.status not in KNOWN_STATUSES:
        text += f"; {obs.status} is not a status bunsync knows, so it is kept verbatim"
    return Step(observation=obs, changed=changed and not duplicate, duplicate=duplicate, text=text)


def _api_verdict(
    before: ItemState | None, obs: Observation, after: ItemState | None, changed: bool
) -> tuple[str, bool]:
    desc = f"{obs.status} from {source_name(obs.source)} ({_api_time(obs.status_updated_at)})"
    if before is None or before.api_position is None:
        text = f"{desc} is the first API state of the item"
    elif not changed:
        return f"{desc} is older than {_api_state(before)}, so it is history only", False
    elif obs.status == before.api_status and obs.status_updated_at == before.api_updated_at:
        return f"{desc} repeats the API state (a duplicate observation): nothing changes", True
    elif obs.status_updated_at == before.api_updated_at:
        text = (
            f"{desc} has the same statusUpdatedAt as {_api_state(before)}: a tie breaks by log "
            "position, so this later one replaces it"
        )
    else:
        text = f"{desc} is newer than {_api_state(before)}, so it replaces it"
    if (
        before is not None
        and before.source == events.SOURCE_WEBHOOK
        and after is not None
        and after.source != events.SOURCE_WEBHOOK
    ):
        text += f"; it also replaces the provisional webhook {before.status}"
    if after is not None and after.source == events.SOURCE_WEBHOOK:
        text += (
            f"; the webhook {after.status} signed {when(after.webhook_signed_at)} is later still, "
            "so that stays shown provisionally"
        )
    return text, False


def _webhook_verdict(before: ItemState | None, obs: Observation, changed: bool) -> tuple[str, bool]:
    if obs.signed_at is None:
        return f"webhook {obs.status} has no signature time, so it is history only", False
    desc = f"webhook {obs.status} signed {when(obs.signed_at)}"
    if changed:
        if before is not None and before.source == events.SOURCE_WEBHOOK and before.status == obs.status:
            return f"{desc} repeats the status already shown (a duplicate delivery): nothing changes", True
        if before is None or before.api_position is None:
            return f"{desc}: no API state yet, so it is shown provisionally until Get Order answers", False
        return (
            f"{desc} is later than {_api_state(before)}, so it is shown provisionally until the next "
            "API observation",
            False,
        )
    if before is None:  # changes_current is True for any signed webhook on a new item
        return f"{desc} is history only", False
    api_at = before.api_updated_at
    if before.api_position is not None and obs.position < before.api_position:
        return f"{desc} came before {_api_state(before)} in the log, so it is history only", False
    if before.api_position is not None and api_at is not None and obs.signed_at == api_at:
        return (
            f"{desc} is signed at the same time as {_api_state(before)}: the API wins a tie, so it is "
            "history only",
            False,
        )
    if before.api_position is not None and api_at is not None and obs.signed_at < api_at:
        return f"{desc} is older than {_api_state(before)}, so it is history only", False
    return (
        f"{desc} is older than the webhook {before.webhook_status} signed "
        f"{when(before.webhook_signed_at)} already shown, so it is history only",
        False,
    )


def reason(state: ItemState, steps: list[Step]) -> str:
    """Why the item shows ``state``: the observation shown, then what was overruled and by which rule."""
    if state.source == events.SOURCE_WEBHOOK:
        head = f"{state.status} from a webhook signed {when(state.webhook_signed_at)}, provisionally: "
        head += (
            f"it is later than {_api_state(state)}; the next fetch replaces it"
            if state.api_position is not None
            else "no API state yet; the fetch it triggered replaces it"
        )
    else:
        head = f"{state.status} from {source_name(state.source)} ({_api_time(state.status_updated_at)})"
    ignored = [s for s in steps if not s.changed and not s.duplicate and s.observation.status != state.status]
    parts = [head, *(s.text for s in ignored[:NAMED_AT_MOST])]
    if len(ignored) > NAMED_AT_MOST:
        parts.append(f"and {len(ignored) - NAMED_AT_MOST} more observation(s) are history only")
    replaced = sum(1 for s in steps if s.changed) - 1
    if replaced > 0:
        parts.append(f"{replaced} earlier status(es) were replaced as newer observations arrived")
    if state.status not in KNOWN_STATUSES:
        parts.append(f"{state.status} is not a status bunsync knows (kept verbatim)")
    return "; ".join(parts)
