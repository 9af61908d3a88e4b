"""The default drift backend: scipy's two-sample KS and chi-square tests.

KS is scipy's ``ks_2samp(..., method="asymp")`` computed in two steps so that a wide batch stays fast:
the statistic with one argsort per column (numpy), then all p-values in one vectorised call to
``scipy.stats.kstwo.sf`` with ``ks_2samp``'s own asymptotic formula. The result is bit-identical to
``ks_2samp(a, b, method="asymp")`` (tests/unit/test_drift.py checks it) at about half the cost.
``asymp`` rather than scipy's default ``auto`` (exact below 10,000 rows) because alibi-detect's KSDrift
uses ``asymp`` and both backends must agree.

Chi-square is ``scipy.stats.chi2_contingency`` on the 2 x k table of category counts (reference row,
current row) over the union of categories; scipy applies Yates' correction when k == 2, and returns p=1
when there is a single category.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lifelong_cli.drift.base import BaseDriftDetector, CategoricalPair


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided two-sample KS statistic sup|F_a - F_b| (exactly ``ks_2samp``'s ``statistic``)."""
    n1, n2 = a.size, b.size
    both = np.concatenate([a, b])
    order = np.argsort(both)
    values = both[order]
    count_a = np.cumsum(order < n1)  # how many of a among the first j+1 merged values
    # Evaluate the ECDFs only after the last of each run of equal values (ties across a and b included).
    last = np.empty(values.size, dtype=bool)
    last[-1] = True
    np.not_equal(values[1:], values[:-1], out=last[:-1])
    count_a = count_a[last]
    count_b = np.flatnonzero(last) + 1 - count_a
    return float(np.abs(count_a / n1 - count_b / n2).max())


def ks_pvalues(statistics: Sequence[float], sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """``ks_2samp``'s asymptotic two-sided p-values: ``kstwo.sf(D, round(n*m/(n+m)))``."""
    from scipy.stats import kstwo

    en = []
    for n1, n2 in sizes:
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en.append(m * n / (m + n))
    p = kstwo.sf(np.asarray(statistics, dtype=np.float64), np.round(np.asarray(en)))
    return np.clip(np.atleast_1d(p), 0.0, 1.0)


_PARALLEL_MIN_VALUES = 200_000


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ScipyDriftDetector(BaseDriftDetector):
    """``ScipyDriftDetector(alpha=0.05, correction="bonferroni"|"fdr", null_rate_tolerance=0.05, min_samples=30)``."""

    name = "scipy"

    def _ks_tests(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
        workers = min(len(pairs), _cpus())
        if workers > 1 and sum(a.size + b.size for a, b in pairs) >= _PARALLEL_MIN_VALUES:
            # numpy's argsort releases the GIL: columns in parallel halve a wide batch's time on 2 cores.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llctl-ks") as pool:
                stats = list(pool.map(lambda ab: ks_statistic(*ab), pairs))
        else:
            stats = [ks_statistic(a, b) for a, b in pairs]
        p = ks_pvalues(stats, [(a.size, b.size) for a, b in pairs])
        return [(d, float(pv)) for d, pv in zip(stats, p, strict=True)]

    def _chi2_tests(self, pairs: Sequence[CategoricalPair]) -> list[tuple[float, float]]:
        from scipy.stats import chi2_contingency

        out = []
        for pair in pairs:
            res = chi2_contingency(pair.table())
            out.append((float(res.statistic), float(res.pvalue)))
        return out
