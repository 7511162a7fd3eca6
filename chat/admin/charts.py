"""Chart geometry for the usage dashboard, drawn as server-rendered SVG.

The admin runs under a CSP with no inline script and no inline style (``style-src 'self'``),
and Parley loads nothing from a CDN, so charts are plain SVG whose sizes and colours are
attributes (``x``, ``height``, ``fill``), computed here. Pure functions: no database, no Django.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
OTHER_COLOR = "#999999"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Row:
    """One labelled horizontal bar: the label sits left of the bar, the value right of it."""

    label: str
    value: str
    rect: Rect
    text_y: float
    value_x: float


@dataclass
class Chart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    rects: list[Rect] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (label, colour)

    @property
    def y_label_x(self) -> float:
        return self.plot_left - 6

    @property
    def x_label_y(self) -> float:
        return self.plot_bottom + 16

    @property
    def is_empty(self) -> bool:
        return not self.rects and not self.rows


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (>0)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * (1 - 1e-12):
            return float(candidate)
    return float(10 ** (exponent + 1))


def series_colors(names: Sequence[str], other_label: str | None = None) -> dict[str, str]:
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    if other_label is not None:
        colors[other_label] = OTHER_COLOR
    return colors


def stacked_columns(
    *,
    categories: Sequence,
    category_labels: Sequence[str],
    series: Sequence[str],
    values: Mapping[tuple, float | int | Decimal],
    colors: Mapping[str, str],
    fmt: Callable[[float | int | Decimal], str],
    label_every: int = 5,
    width: int = 900,
    height: int = 260,
) -> Chart:
    """One column per category (a day), stacked by series (a model), bottom to top.

    ``values`` maps ``(category, series)`` to a non-negative number; missing pairs are zero.
    """
    left, right, top, bottom = 64.0, width - 8.0, 10.0, height - 24.0
    chart = Chart(width, height, left, right, top, bottom, legend=[(s, colors[s]) for s in series])
    totals = [sum(float(values.get((c, s), 0) or 0) for s in series) for c in categories]
    peak = nice_ceiling(max(totals, default=0))
    plot_height = bottom - top
    slot = (right - left) / max(len(categories), 1)
    bar_width = max(slot * 0.72, 1.0)
    for i in range(5):
        fraction = i / 4
        chart.y_ticks.append(Tick(round(bottom - fraction * plot_height, 2), fmt(_clean(peak * fraction))))
    for index, (category, label) in enumerate(zip(categories, category_labels, strict=True)):
        x = left + index * slot + (slot - bar_width) / 2
        if index % label_every == 0 or index == len(categories) - 1:
            chart.x_ticks.append(Tick(round(x + bar_width / 2, 2), label))
        base = bottom
        for name in series:
            raw = values.get((category, name), 0) or 0
            amount = float(raw)
            if amount <= 0:
                continue
            h = amount / peak * plot_height
            base -= h
            if round(h, 2) <= 0:
                continue  # too small to see; the table below the charts has the number
            chart.rects.append(
                Rect(
                    round(x, 2),
                    round(base, 2),
                    round(bar_width, 2),
                    round(h, 2),
                    colors[name],
                    f"{label} · {name}: {fmt(raw)}",
                )
            )
    return chart


def horizontal_bars(
    *,
    rows: Sequence[tuple[str, float | int | Decimal]],
    fmt: Callable[[float | int | Decimal], str],
    fill: str = PALETTE[0],
    width: int = 900,
    row_height: int = 22,
    label_width: int = 160,
) -> Chart:
    """One bar per row (a member), longest first as given; labels are drawn by the template."""
    height = max(row_height * len(rows), row_height)
    left, right = float(label_width), width - 110.0
    chart = Chart(width, height, left, right, 0.0, float(height))
    peak = max((float(v) for _, v in rows), default=0) or 1.0
    for index, (label, value) in enumerate(rows):
        y = index * row_height + 3
        w = max(float(value) / peak * (right - left), 0.0)
        rect = Rect(left, float(y), round(w, 2), row_height - 6.0, fill, f"{label}: {fmt(value)}")
        chart.rows.append(Row(label, fmt(value), rect, float(y + row_height / 2 + 1), round(left + w + 6, 2)))
    return chart


def _clean(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
