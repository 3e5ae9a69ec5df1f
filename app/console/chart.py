"""The overview's webhook-rate chart, drawn on the server as inline SVG (no script, no library).

:func:`minute_series` lays per-minute counts onto the last 60 minutes (missing minutes are 0);
:func:`rate_chart` draws one polyline per series with an axis, a legend and a ``<title>`` per point
so hovering shows the exact count. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

MINUTES = 60
_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 180, 36, 22, 10


@dataclass(frozen=True, slots=True)
class Series:
    """One line of the chart: its name, CSS class (the colour) and 60 per-minute values, oldest first."""

    name: str
    css: str
    values: list[int]


def minute_series(counts: dict[datetime, int], end: datetime) -> list[int]:
    """The counts of the 60 minutes ending with the minute of ``end`` (oldest first)."""
    last = end.replace(second=0, microsecond=0)
    return [counts.get(last - timedelta(minutes=MINUTES - 1 - i), 0) for i in range(MINUTES)]


def _nice_max(value: int) -> int:
    for step in (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 50_000, 100_000):
        if value <= step:
            return step
    return value


def rate_chart(series: list[Series], end: datetime) -> str:
    """The SVG markup (safe to embed: every text is escaped)."""
    top = _nice_max(max((max(s.values, default=0) for s in series), default=0))
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T

    def x_of(i: int) -> float:
        return _PAD_L + plot_w * i / (MINUTES - 1)

    def y_of(v: float) -> float:
        return _PAD_T + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="webhooks per minute over the last hour">'
    ]
    for frac in (0, 0.5, 1):
        y = y_of(top * frac)
        parts.append(f'<line class="grid" x1="{_PAD_L}" x2="{_W - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{int(top * frac)}</text>'
        )
    last = end.replace(second=0, microsecond=0)
    for i, label in ((0, -59), (30, -29), (59, 0)):
        minute = last + timedelta(minutes=label)
        anchor = "start" if i == 0 else "end" if i == 59 else "middle"
        parts.append(
            f'<text class="axis" x="{x_of(i):.1f}" y="{_H - 6}" text-anchor="{anchor}">{minute:%H:%M}Z</text>'
        )
    for s in series:
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(s.values))
        parts.append(
            f'<polyline class="line {escape(s.css)}" points="{points}">'
            f"<title>{escape(s.name)}</title></polyline>"
        )
        for i, v in enumerate(s.values):
            if v:
                minute = last - timedelta(minutes=MINUTES - 1 - i)
                parts.append(
                    f'<circle class="dot {escape(s.css)}" cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="2.5">'
                    f"<title>{minute:%H:%M}Z · {v} {escape(s.name)}</title></circle>"
                )
    parts.append("</svg>")
    return "".join(parts)
