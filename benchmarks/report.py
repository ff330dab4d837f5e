"""The result table: rows of measurements, ratios and goals, rendered as Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Row", "goal_at_least", "goal_at_most", "render"]


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    section: str
    measurement: str
    value: str
    ratio: str = ""
    goal: str = ""
    verdict: str = ""


def goal_at_most(value: float, limit: float) -> str:
    """``met`` when ``value <= limit``, else ``MISSED``."""
    return _verdict(value, value <= limit)


def goal_at_least(value: float, limit: float) -> str:
    """``met`` when ``value >= limit``, else ``MISSED``."""
    return _verdict(value, value >= limit)


def _verdict(value: float, ok: bool) -> str:
    if math.isnan(value):
        return "n/a"
    return "met" if ok else "MISSED"


def render(rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows``; the section name is shown once per section."""
    header = ("section", "measurement", "median (min-max)", "ratio", "goal", "verdict")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    previous = None
    for row in rows:
        section = row.section if row.section != previous else ""
        previous = row.section
        cells = (section, row.measurement, row.value, row.ratio, row.goal, row.verdict)
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)
