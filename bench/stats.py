"""Ratios of alternating measurements, summarised by their median and spread."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Summary:
    """Median, quartiles and extremes of one series (ratios or plain values)."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("nothing to summarise")
        ordered = sorted(values)
        if len(ordered) >= 4:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1, q3 = ordered[0], ordered[-1]
        return cls(statistics.median(ordered), q1, q3, ordered[0], ordered[-1], len(ordered))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, digits: int = 2, unit: str = "") -> str:
        """``3.84x (IQR 3.80-3.90, 3.71-3.95, n=9)``."""
        f = f"{{:.{digits}f}}"
        return (
            f"{f.format(self.median)}{unit} (IQR {f.format(self.q1)}-{f.format(self.q3)}, "
            f"range {f.format(self.low)}-{f.format(self.high)}, n={self.count})"
        )


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round-by-round ratios of two series measured in alternation."""
    if len(numerators) != len(denominators):
        raise ValueError("the two series must come from the same rounds")
    return [a / b for a, b in zip(numerators, denominators, strict=True)]
