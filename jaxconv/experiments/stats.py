"""Means over seeds with 95 % Student-t confidence intervals (scipy), and the claims' verdicts.

With ``n`` seeds giving values ``x``, the interval is ``mean ± t_{0.975, n-1} · s / sqrt(n)``
with ``s`` the sample standard deviation (``ddof=1``): `scipy.stats.t.interval` with
``scale=scipy.stats.sem(x)``. One seed has no interval (NaN bounds), and a claim resting on
it is "inconclusive".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import scipy.stats

CONFIDENCE = 0.95
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


@dataclasses.dataclass(frozen=True)
class Summary:
    """A metric over seeds.

    Attributes:
      mean: the sample mean (NaN when there are no finite values).
      low: lower end of the 95 % t-interval (NaN with fewer than two values).
      high: upper end, likewise.
      n: number of finite values used.
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """``(high - low) / 2``: the ± of the report (NaN without an interval)."""
        return (self.high - self.low) / 2


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean and t-interval of `values` (NaN and None entries are left out).

    Args:
      values: one value per seed.
      confidence: the interval's coverage.

    Returns:
      A `Summary`; a constant sample has a zero-width interval.
    """
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, math.nan, math.nan, 1)
    sem = float(scipy.stats.sem(x))
    if sem == 0:
        return Summary(mean, mean, mean, n)
    low, high = scipy.stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return Summary(mean, float(low), float(high), n)


def verdict(better: Summary, worse: Summary, higher_is_better: bool = True) -> str:
    """The fixed rule of `jaxconv.experiments.Claim`: do the intervals separate, which way?

    Returns:
      `SUPPORTED` when the intervals do not overlap and `better` is on the claimed side,
      `CONTRADICTED` when they do not overlap the other way, else `INCONCLUSIVE` (also when
      either has no interval).
    """
    bounds = (better.low, better.high, worse.low, worse.high)
    if any(math.isnan(b) for b in bounds):
        return INCONCLUSIVE
    if not higher_is_better:
        better, worse = (Summary(-s.mean, -s.high, -s.low, s.n) for s in (better, worse))
    if better.low > worse.high:
        return SUPPORTED
    if better.high < worse.low:
        return CONTRADICTED
    return INCONCLUSIVE


def format_summary(s: Summary, scale: float = 100.0, digits: int = 1) -> str:
    """``"98.9 ± 0.3"`` (values times `scale`); ``"98.9"`` with one seed; ``"—"`` with none."""
    if s.n == 0:
        return "—"
    if s.n == 1:
        return f"{s.mean * scale:,.{digits}f}"
    return f"{s.mean * scale:,.{digits}f} ± {s.half_width * scale:,.{digits}f}"
