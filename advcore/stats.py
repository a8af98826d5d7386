"""Summary statistics over seeds, one definition for the whole code base: the mean, and the
sample standard deviation (n - 1), which is undefined (None) for fewer than two values."""

from __future__ import annotations

import math
from typing import Iterable


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def sample_std(values: Iterable[float]) -> float | None:
    """Sample standard deviation (Bessel's n - 1); None for n < 2, where it is undefined."""
    values = list(values)
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
