"""Spread of repeated measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def iqr(values: Sequence[float]) -> float:
    """Interquartile range (Q3 - Q1, exclusive method); 0 for one value, NaN for none."""
    if not values:
        return math.nan
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]
