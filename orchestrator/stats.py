"""Is a cell's difference to the baseline more than seed noise? Paired differences over seeds.

Every cell of a sweep trains the same seed list, so a cell and the baseline pair up seed by
seed; the per-seed differences remove what a seed does to both (its initialisation and data
order), and their mean gets a Student's t interval with n - 1 degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95  # the confidence of the interval


@dataclass(frozen=True)
class Paired:
    """The mean of ``cell - baseline`` over the ``n`` seeds both finished, with its interval."""

    n: int
    mean: float  # NaN below one shared seed
    low: float  # NaN below two shared seeds: no interval
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def paired(cell: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Per-seed values ``{seed: value}`` of a cell and of the baseline -> their paired difference."""
    seeds = sorted(s for s in set(cell) & set(baseline)
                   if _finite(cell[s]) and _finite(baseline[s]))
    diffs = [cell[s] - baseline[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan)
    mean = sum(diffs) / n
    if n == 1:
        return Paired(1, mean, math.nan, math.nan)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    return Paired(n, mean, mean - half, mean + half)


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)
