"""Small SVG charts drawn on the server (no script, no third-party code): a stacked bar chart
and a line chart, styled by the stylesheet's classes (so both themes apply)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

W, H = 460, 150
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 40, 20, 8


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def _frame(top: float, times: list[datetime], label: str) -> list[str]:
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    plot_h = H - PAD_BOTTOM - PAD_TOP
    for fraction in (0.0, 0.5, 1.0):
        y = PAD_TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(top * fraction)}</text>"
        )
    if times:
        for index, anchor in ((0, "start"), (len(times) // 2, "middle"), (len(times) - 1, "end")):
            x = PAD_LEFT + (W - PAD_LEFT) * (index + 0.5) / len(times)
            x = {"start": PAD_LEFT, "middle": x, "end": W}[anchor]
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{H - 5}" text-anchor="{anchor}">'
                f"{times[index]:%H:%M}</text>"
            )
    return parts


def bars(times: list[datetime], stacks: list[tuple[str, list[float], str]], label: str) -> str:
    """Stacked bars, one per time; `stacks` are (name, values, css class) from the bottom."""
    totals = [sum(values[i] for _, values, _ in stacks) for i in range(len(times))]
    top = max([*totals, 1])
    top += top % 2 if float(top).is_integer() else 0  # an even top: a whole middle line
    parts = _frame(top, times, label)
    plot_h = H - PAD_BOTTOM - PAD_TOP
    width = (W - PAD_LEFT) / max(len(times), 1)
    for i, moment in enumerate(times):
        base = 0.0
        x = PAD_LEFT + i * width
        tip = f"{moment:%H:%M}: " + ", ".join(
            f"{_number(values[i])} {name}" for name, values, _ in stacks
        )
        parts.append(f"<g><title>{escape(tip)}</title>")
        parts.append(
            f'<rect class="hover" x="{x:.2f}" y="{PAD_TOP}" width="{width:.2f}" height="{plot_h}"/>'
        )
        for _, values, css in stacks:
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y = PAD_TOP + plot_h - base - h
            parts.append(
                f'<rect class="{css}" x="{x + 0.5:.2f}" y="{y:.2f}" '
                f'width="{max(width - 1, 0.5):.2f}" height="{h:.2f}"/>'
            )
            base += h
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def line(times: list[datetime], values: list[float | None], label: str, css: str) -> str:
    """A line over the times; a missing value breaks the line."""
    present = [v for v in values if v is not None]
    top = max([*present, 1e-9]) if present else 1
    if all(float(v).is_integer() for v in present):  # counts: whole numbers on the axis
        top = max(2, int(top) + int(top) % 2)
    parts = _frame(top, times, label)
    plot_h = H - PAD_BOTTOM - PAD_TOP
    width = (W - PAD_LEFT) / max(len(times), 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            runs.append([])
            continue
        x = PAD_LEFT + (i + 0.5) * width
        y = PAD_TOP + plot_h * (1 - value / top)
        runs[-1].append(f"{x:.1f},{y:.1f}")
    for run in runs:
        if len(run) == 1:
            cx, cy = run[0].split(",")
            parts.append(f'<circle class="{css}" cx="{cx}" cy="{cy}" r="2"/>')
        elif run:
            parts.append(f'<polyline class="{css}" points="{" ".join(run)}"/>')
    for i, (moment, value) in enumerate(zip(times, values, strict=True)):
        x = PAD_LEFT + i * width
        tip = f"{moment:%H:%M}: " + ("-" if value is None else _number(value))
        parts.append(
            f'<rect class="hover" x="{x:.2f}" y="{PAD_TOP}" width="{width:.2f}" '
            f'height="{plot_h}"><title>{escape(tip)}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)
