"""Pure statistics and formatting helpers: medians over repetitions, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "percentile", "ratio_summary", "summarize"]


@dataclass(frozen=True)
class Summary:
    """Median, minimum and maximum of repeated measurements."""

    median: float
    low: float
    high: float
    count: int

    def format(self, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
        """Render as ``median (low-high)``; a single value renders without the range."""

        def one(value: float) -> str:
            return _number(value / scale, digits) + unit

        if self.count <= 1 or self.low == self.high:
            return one(self.median)
        return f"{one(self.median)} ({one(self.low)}-{one(self.high)})"


def summarize(values: Sequence[float]) -> Summary:
    """Summarise repeated measurements (NaN when there are none)."""
    if not values:
        nan = math.nan
        return Summary(nan, nan, nan, 0)
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return Summary(median, ordered[0], ordered[-1], len(ordered))


def ratio_summary(numerators: Sequence[float], denominators: Sequence[float]) -> Summary:
    """Summarise per-repetition ratios, pairing the i-th numerator with the i-th denominator."""
    return summarize([n / d for n, d in zip(numerators, denominators, strict=False) if d])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _number(value: float, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"
