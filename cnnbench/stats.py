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


def _welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """mean(a) - mean(b), its standard error and Welch-Satterthwaite degrees of freedom (df NaN where the
    standard error is 0)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, 0.0, math.nan
    return diff, se, (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its ``level`` confidence interval by Welch's t (unequal variances);
    NaNs when either sample has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan, math.nan
    diff, se, df = _welch(a, b)
    if se == 0:
        return diff, diff, diff
    from scipy import stats  # here, not above: scipy.stats takes a second to import, one seed needs none

    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return diff, diff - half, diff + half


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """The two-sided p-value of Welch's t-test of mean(a) = mean(b), from the same standard error and
    degrees of freedom as :func:`welch_interval`; NaN with fewer than two values or no spread at all.
    (scipy's ttest_ind gives the same value, and warns of "catastrophic cancellation" whenever one
    sample has no spread, as every seed of a model stuck at chance has.)"""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    diff, se, df = _welch(a, b)
    if se == 0:
        return math.nan
    from scipy import stats

    return float(2 * stats.t.sf(abs(diff) / se, df))
