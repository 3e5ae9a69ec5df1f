"""The text form of ``bunsync explain``: a readable timeline (rich), then each item's status and why."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from app import events
from app.ops.explain import Explanation
from app.ops.reasons import source_name, when

_STATUS_STYLE = {"dead": "bold red", "pending": "yellow", "leased": "cyan", "none": "green"}


def render(explanation: Explanation, console: Console) -> None:
    """Print the explanation: the fetch job, the timeline, the reconcile passes, the items."""
    e = explanation
    console.print(Text(f"Order {e.order_id}", style="bold"), f"· {e.events_total} event(s) in the log")
    fetch = e.fetch
    line = Text("Fetch job: ")
    line.append(fetch.state, style=_STATUS_STYLE.get(fetch.state, ""))
    if fetch.state != "none":
        line.append(f" · {fetch.attempts} attempt(s)")
    if fetch.next_attempt_at is not None:
        line.append(f" · next attempt {when(fetch.next_attempt_at)}")
    if fetch.dead_reason or fetch.last_error:
        line.append(f" · {fetch.dead_reason or fetch.last_error}", style="red")
    console.print(line)
    if e.events_omitted:
        console.print(f"(the oldest {e.events_omitted} event(s) are not shown)", style="dim")
    console.print(_timeline(e))
    for p in e.reconcile_passes:
        outcome = "ok" if p.ok else "running" if p.ok is None else f"failed: {p.error}"
        console.print(
            f"Reconcile pass {p.id} listed it: range {when(p.range_start)} .. {when(p.range_end)}, "
            f"{p.pages} pages, {p.orders_seen} orders, {p.differences} differences, {outcome}"
        )
    console.print(Text("Items", style="bold"))
    for item in e.items:
        console.print(
            Group(
                Text.assemble(
                    (f"  {item.order_item_id}  ", "bold"),
                    (item.status, "bold green" if item.source != events.SOURCE_WEBHOOK else "bold yellow"),
                    f"  ({source_name(item.source)}, statusUpdatedAt {when(item.status_updated_at)})",
                ),
                Text(f"    {item.reason}", style="dim"),
            )
        )


def _timeline(e: Explanation) -> Table:
    table = Table(show_lines=False, pad_edge=False, expand=False)
    for header in ("pos", "recorded (UTC)", "event", "time it carries", "items: status → outcome"):
        table.add_column(header, overflow="fold")
    for event in e.events:
        carried = (
            f"signed {when(event.signed_at)}"
            if event.signed_at is not None
            else ", ".join(f"{when(i.status_updated_at)}" for i in event.items[:1])
        )
        label = f"{event.type}\n{source_name(event.source)}"
        if event.event_id:
            label += f"\neventId {event.event_id}"
        if event.conflicts:
            label += f"\n{event.conflicts} conflicting redelivery(ies)"
        lines = [
            f"{i.order_item_id} {i.status}{' (current)' if i.became_current else ''}: {i.outcome}"
            for i in event.items
        ]
        if event.error:
            lines.append(event.error)
        table.add_row(str(event.position), when(event.recorded_at), label, carried, "\n".join(lines) or "—")
    return table
