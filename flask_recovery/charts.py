"""Server-rendered SVG charts for the KPI journal: no JavaScript, no CDN, no build step.

Every chart is an ``<svg role="img">`` named by its ``<title>`` (``aria-labelledby``) and
described by its ``<desc>`` (``aria-describedby``), so a screen reader announces one sentence instead of
a heap of rectangles; the page shows every chart's numbers in a table beside it. Bars
run horizontally with their labels above or beside them, so a 390 px phone shows them at
a readable size; the ``viewBox`` scales the drawing to its box. Colours come from a
colour-blind-safe palette (Okabe-Ito and Paul Tol) and have at least 3:1 contrast on
white; segments are separated by a white line, and each bar carries its own ``<title>``
and ``data-value``. All text is escaped; all words are translated by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

#: Width of every chart's drawing (user units); height follows the number of rows.
WIDTH = 400
FONT = 14
TEXT = "#1f2328"
MUTED = "#57606a"
GRID = "#d0d7de"

#: Colour-blind-safe colours, each at least 3:1 against white (WCAG 1.4.11).
PALETTE = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#332288",  # indigo
    "#999933",  # olive
    "#882255",  # wine
    "#6E7781",  # grey
    "#8C6D00",  # ochre
    "#117733",  # dark green
)
CONDUCT_COLOUR = "#000000"


def category_colours(categories: Sequence[str], catalogue: Sequence[str]) -> dict[str, str]:
    """A stable colour per category: by its place in the catalogue (conduct is black)."""
    colours = {}
    for category in categories:
        if category == "client_conduct":
            colours[category] = CONDUCT_COLOUR
            continue
        index = catalogue.index(category) if category in catalogue else len(catalogue) + len(colours)
        colours[category] = PALETTE[index % len(PALETTE)]
    return colours


@dataclass
class Series:
    """One kind of bar: its key (``data-series``), translated name and colour."""

    key: str
    name: str
    colour: str


@dataclass
class Bar:
    """One bar (or segment): value, the text written beside it, and a tooltip title."""

    series: Series
    value: float
    text: str
    title: str
    extra: dict[str, str] = field(default_factory=dict)


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round gridline values from 0 to at least ``maximum`` (steps of 1, 2 or 5 x 10^k)."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if step < 1 and maximum >= 1:
        step = 1
    top = math.ceil(maximum / step) * step
    return [round(i * step, 6) for i in range(int(round(top / step)) + 1)]


#: Gridline steps for durations, in minutes: 5 min up to 4 weeks.
DURATION_STEPS = (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 7 * 1440, 14 * 1440, 28 * 1440)


def duration_ticks(maximum_minutes: float, count: int = 4) -> list[float]:
    """Gridlines for minutes at steps a person reads (30 min, 1 h, 6 h, 1 d, ...)."""
    if maximum_minutes <= 0:
        return [0, 60]
    step = next((s for s in DURATION_STEPS if s * count >= maximum_minutes), None)
    if step is None:
        return nice_ticks(maximum_minutes, count)
    top = math.ceil(maximum_minutes / step) * step
    return [i * step for i in range(int(top // step) + 1)]


def _attrs(values: dict[str, object]) -> str:
    return "".join(f' {name}="{escape(str(value))}"' for name, value in values.items())


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    colour: str = TEXT,
    weight: str | None = None,
    halo: bool = False,
) -> str:
    extra = f' font-weight="{weight}"' if weight else ""
    if halo:  # a white outline keeps the text readable over gridlines and the budget line
        extra += ' stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"'
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{FONT}" fill="{colour}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _svg(chart_id: str, title: str, desc: str, height: float, body: list[str], kind: str) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="recovery-chart-svg" data-chart="{escape(kind)}"'
        f' viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}"'
        f' role="img" aria-labelledby="{chart_id}-title" aria-describedby="{chart_id}-desc"'
        f" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\">"
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _grid(ticks: list[float], x0: float, width: float, top: float, bottom: float, fmt) -> list[str]:
    scale = width / ticks[-1]
    parts = []
    for tick in ticks:
        x = x0 + tick * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{GRID}" stroke-width="1"/>'
        )
        anchor = "start" if x - x0 < 12 and x0 < 20 else "end" if x > WIDTH - 20 else "middle"
        parts.append(_text(x, bottom + FONT + 2, fmt(tick), anchor=anchor, colour=MUTED))
    return parts


def stacked_bars(
    chart_id: str,
    *,
    title: str,
    desc: str,
    rows: Sequence[tuple[str, Sequence[Bar], str]],
    tick_format,
    kind: str = "stacked",
    label_width: float = 72,
) -> Markup:
    """One horizontal stacked bar per row: ``(row label, segments, total text)``."""
    row_h, bar_h, top = 24, 16, 6
    x0, right = label_width, 44
    width = WIDTH - x0 - right
    maximum = max((sum(b.value for b in bars) for _l, bars, _t in rows), default=0)
    ticks = nice_ticks(maximum)
    scale = width / ticks[-1]
    bottom = top + row_h * len(rows)
    body = _grid(ticks, x0, width, top, bottom, tick_format)
    for index, (label, bars, total) in enumerate(rows):
        y = top + index * row_h + (row_h - bar_h) / 2
        body.append(f'<g class="recovery-chart-row"{_attrs({"data-row": label})}>')
        body.append(_text(x0 - 6, y + bar_h - 3, label, anchor="end"))
        x = x0
        for bar in bars:
            if bar.value <= 0:
                continue
            w = bar.value * scale
            attrs = {"data-series": bar.series.key, "data-value": _plain(bar.value), **bar.extra}
            body.append(
                f'<rect class="recovery-bar" x="{x:.2f}" y="{y:.1f}" width="{w:.2f}" height="{bar_h}"'
                f' fill="{bar.series.colour}" stroke="#ffffff" stroke-width="1"{_attrs(attrs)}>'
                f"<title>{escape(bar.title)}</title></rect>"
            )
            x += w
        body.append(_text(x + 4, y + bar_h - 3, total, colour=MUTED, halo=True))
        body.append("</g>")
    return _svg(chart_id, title, desc, bottom + FONT + 8, body, kind)


def grouped_bars(
    chart_id: str,
    *,
    title: str,
    desc: str,
    groups: Sequence[tuple[str, Sequence[Bar]]],
    tick_format,
    maximum: float | None = None,
    marker: tuple[float, str] | None = None,
    ticks: list[float] | None = None,
    kind: str = "grouped",
) -> Markup:
    """Groups of horizontal bars, each group under its own label (long labels fit a phone).

    ``maximum`` fixes the scale (e.g. 1 for shares); ``marker`` draws a dashed line at a
    value with a label (e.g. the monthly budget).
    """
    label_h, bar_h, gap, top = FONT + 6, 16, 4, 6
    x0, right = 4, 84
    width = WIDTH - x0 - right
    values = [b.value for _l, bars in groups for b in bars]
    if marker is not None:
        values.append(marker[0])
    top_value = maximum if maximum is not None else max(values, default=0)
    ticks = ticks or nice_ticks(top_value)
    scale = width / ticks[-1]
    body: list[str] = []
    y = top
    rows: list[str] = []
    for label, bars in groups:
        rows.append(f'<g class="recovery-chart-group"{_attrs({"data-group": label})}>')
        rows.append(_text(x0, y + FONT, label, weight="600"))
        y += label_h
        for bar in bars:
            w = max(bar.value, 0) * scale
            attrs = {"data-series": bar.series.key, "data-value": _plain(bar.value), **bar.extra}
            rows.append(
                f'<rect class="recovery-bar" x="{x0:.1f}" y="{y:.1f}" width="{w:.2f}" height="{bar_h}"'
                f' fill="{bar.series.colour}"{_attrs(attrs)}><title>{escape(bar.title)}</title></rect>'
            )
            rows.append(_text(x0 + w + 4, y + bar_h - 3, bar.text, colour=TEXT, halo=True))
            y += bar_h + gap
        y += gap * 2
        rows.append("</g>")
    bottom = y
    body += _grid(ticks, x0, width, top, bottom, tick_format)
    body += rows
    if marker is not None:
        mx = x0 + marker[0] * scale
        body.append(
            f'<line class="recovery-marker" x1="{mx:.1f}" y1="{top:.1f}" x2="{mx:.1f}" y2="{bottom:.1f}"'
            f' stroke="{TEXT}" stroke-width="2" stroke-dasharray="6 3"/>'
        )
        body.append(
            _text(min(mx, WIDTH - 2), bottom + 2 * FONT + 6, marker[1], anchor="end" if mx > WIDTH / 2 else "start")
        )
        bottom += FONT + 6
    return _svg(chart_id, title, desc, bottom + FONT + 8, body, kind)


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
