"""The default drift backend: two-sample KS and chi-square tests in numpy alone.

It reproduces scipy's ``ks_2samp(a, b, method="asymp")`` and ``chi2_contingency(table)`` without
importing ``scipy.stats`` (0.5-1 s of a fresh interpreter's start on a small machine; even
``scipy.special`` costs ~0.3 s), so a drift check in a new process stays well under half a second.
The module name and the backend name ``scipy`` are kept: these are scipy's tests, to scipy's numbers.

KS: the statistic is computed with two sorts and one merge per column and is bit-identical to
``ks_2samp``'s. The p-value is ``ks_2samp``'s asymptotic one, the survival function of the two-sided
one-sample Kolmogorov statistic ``D_n`` at ``n = round(n1*n2/(n1+n2))`` (``scipy.stats.kstwo.sf``),
computed here with the regime choice Simard & L'Ecuyer (2011) recommend, as scipy does:

* closed forms where they exist (``n*d <= 1``: Ruben-Gambino; ``n*d >= n-1`` and ``d >= 1/2``: twice
  the one-sided Smirnov probability, which is then exact);
* the upper tail (``n*d^2 > 4`` for n <= 140, ``>= 2.2`` above): twice the exact one-sided Smirnov
  probability ``P(D_n^+ >= d)`` (Birnbaum-Tingey's finite sum, evaluated term by term in logs with
  Stirling's series, so that tiny p-values keep their relative precision);
* the body for n <= 140, and for n <= 100,000 while ``n*d^1.5 <= 1.4``: the exact CDF by Durbin's
  matrix method (Marsaglia, Tsang and Wang 2003), with rescaled repeated squaring;
* elsewhere: the Pelz-Good asymptotic series (four terms, up to ``n^-3/2``).

Agreement with ``scipy.stats.kstwo.sf(d, n)`` (scipy 1.17): both compute the same quantities, so they
differ by rounding only. Measured over ~49,000 points (n from 1 to 10^6, d over [0, 1], both sides of
every switch between methods): max absolute error 1.2e-13, max relative error 1.1e-10 where p > 1e-300
(beyond that both are 0 or denormal). tests/unit/test_drift.py asserts 1e-9 absolute and 1e-8 relative on
a smaller sweep. One deliberate difference: n = 0 (samples of 1 and 1) gives p = 1 where scipy gives NaN.
``asymp`` rather than scipy's default ``auto`` (exact below 10,000 rows) because alibi-detect's KSDrift
uses ``asymp`` and both backends must agree.

Chi-square: the homogeneity test of the 2 x k table of category counts (reference row, current row) over
the union of categories, as ``chi2_contingency`` computes it: expected counts from the margins, Yates'
continuity correction when there is one degree of freedom (k == 2: each ``|observed - expected|`` moves
``min(0.5, |observed - expected|)`` toward zero), statistic ``sum((o - e)^2 / e)``, p-value the
chi-square survival function (a regularized upper incomplete gamma: series or continued fraction); p=1
(statistic 0) with a single category. Agreement with scipy, measured: statistic to 1e-15 relative,
p-value to 2e-10 relative (dof up to 10^5; 1e-13 below dof 100).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lifelong_cli.drift.base import BaseDriftDetector, CategoricalPair


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided two-sample KS statistic sup|F_a - F_b| (exactly ``ks_2samp``'s ``statistic``)."""
    n1, n2 = a.size, b.size
    # Sort each sample (numpy's SIMD sort), then merge the two sorted runs: a stable argsort of their
    # concatenation is one linear merge (timsort), ~25% faster than an argsort of the unsorted values.
    both = np.concatenate([np.sort(a), np.sort(b)])
    order = np.argsort(both, kind="stable")
    values = both[order]
    count_a = np.cumsum(order < n1)  # how many of a among the first j+1 merged values
    # Evaluate the ECDFs only after the last of each run of equal values (ties across a and b included).
    last = np.empty(values.size, dtype=bool)
    last[-1] = True
    np.not_equal(values[1:], values[:-1], out=last[:-1])
    count_a = count_a[last]
    count_b = np.flatnonzero(last) + 1 - count_a
    return float(np.abs(count_a / n1 - count_b / n2).max())


# ------------------------------------------------------------------------------------ Kolmogorov D_n

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_STIRLING_TABLE_SIZE = 16
# s(k) = log(k!) - ((k + 1/2) log k - k + log(2 pi)/2), exactly from lgamma where the series is too short.
_STIRLING_TABLE = np.array(
    [0.0] + [math.lgamma(k + 1.0) - ((k + 0.5) * math.log(k) - k + _HALF_LOG_2PI) for k in range(1, _STIRLING_TABLE_SIZE)]
)


def _stirling_error(k: np.ndarray) -> np.ndarray:
    """``s(k) = log(k!) - (k + 1/2) log k + k - log(2 pi)/2`` for integers k >= 1 (array in, array out)."""
    k = np.asarray(k, dtype=np.float64)
    r = 1.0 / k
    r2 = r * r
    if k.min() >= 1000.0:  # 1/12k - 1/360k^3; the next term is below 1e-18
        return r * (1 / 12 - r2 / 360)
    # 1/12k - 1/360k^3 + 1/1260k^5 - 1/1680k^7 + 1/1188k^9; the next term is below 1e-16 relative at k=16.
    out = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 / 1188))))
    small = k < _STIRLING_TABLE_SIZE
    if small.any():
        out[small] = _STIRLING_TABLE[k[small].astype(np.int64)]
    return out


def _log_factorial(n: int) -> float:
    return math.lgamma(n + 1.0)


_SMIRNOV_CHUNK = 1 << 16


def smirnov_sf(n: int, d: float) -> float:
    """``P(D_n^+ >= d)``: the exact one-sided one-sample Kolmogorov-Smirnov survival function.

    Birnbaum-Tingey: ``d * sum_{j=0}^{floor(n(1-d))} C(n,j) (1-d-j/n)^(n-j) (d+j/n)^(j-1)``. Every term is
    positive; each is evaluated in logs as ``(d/p) * C(n,j) p^j (1-p)^(n-j)`` with ``p = d + j/n`` and the
    binomial coefficient written with Stirling's series, so that nothing of size ``n log n`` cancels
    (relative error ~1e-10 at n = 10^6). O(n) work, in chunks, summed as ``exp(top) * sum(exp(log - top))``."""
    if not d > 0.0:
        return 1.0
    if d >= 1.0 or 2.0 * n * d * d > 745.2:  # below exp(-2nd^2) (Dvoretzky-Kiefer-Wolfowitz): 0 in doubles
        return 0.0
    nd = n * d
    top = n * math.log1p(-d)  # j = 0: (1-d)^n
    total = 1.0
    log_d = math.log(d)
    s_n = float(_stirling_error(np.array([n]))[0])
    last = int(math.floor(n - nd))
    for start in range(1, last + 1, _SMIRNOV_CHUNK):
        j = np.arange(start, min(start + _SMIRNOV_CHUNK, last + 1), dtype=np.float64)
        nj = n - j
        j = j[nj > nd]  # the term at j = n(1-d) exactly is 0
        if not j.size:
            continue
        nj = n - j
        # j log(1 + nd/j) + (n-j) log(1 - nd/(n-j)): log of the ratio (numpy's log1p is ~4x slower), an
        # absolute error of ~n * 1e-16 in the exponent.
        logs = (j * np.log((j + nd) / j) + nj * np.log((nj - nd) / nj) + np.log(np.sqrt(n / (j * nj)) / (d + j / n))
                + (log_d - _HALF_LOG_2PI + s_n) - _stirling_error(j) - _stirling_error(nj))
        chunk_top = float(logs.max())
        if chunk_top > top:
            total *= math.exp(top - chunk_top)
            top = chunk_top
        total += float(np.exp(logs - top).sum())
    return min(1.0, math.exp(top) * total)


def _scaled(m: np.ndarray) -> tuple[np.ndarray, float]:
    s = float(np.abs(m).max())
    return (m / s, math.log(s)) if s > 0.0 else (m, 0.0)


def _kolmogorov_cdf_durbin(n: int, d: float) -> float:
    """``P(D_n < d)`` exactly, by Durbin's matrix: ``n!/n^n`` times the central element of ``H^n``."""
    k = int(n * d) + 1
    m = 2 * k - 1
    h = k - n * d
    g = np.arange(m + 1, dtype=np.float64)
    inv_fact = np.concatenate([[1.0], np.cumprod(1.0 / g[1:])])  # 1/g!, g = 0..m
    i = np.arange(m)
    lag = i[:, None] - i[None, :] + 1  # H[i, j] = 1/(i-j+1)! on and below the superdiagonal
    H = np.where(lag >= 0, inv_fact[np.clip(lag, 0, m)], 0.0)
    h_pow = h ** g[1:]  # h^1 .. h^m
    H[:, 0] -= h_pow * inv_fact[1:]
    H[m - 1, :] -= h_pow[::-1] * inv_fact[m:0:-1]
    if 2.0 * h - 1.0 > 0.0:
        H[m - 1, 0] += (2.0 * h - 1.0) ** m * inv_fact[m]
    # H^n by repeated squaring, each factor rescaled to max |entry| = 1 (H^n itself overflows).
    result, result_log = None, 0.0
    base, base_log = _scaled(H)
    e = n
    while True:
        if e & 1:
            if result is None:
                result, result_log = base, base_log
            else:
                result, s = _scaled(result @ base)
                result_log += base_log + s
        e >>= 1
        if not e:
            break
        base, s = _scaled(base @ base)
        base_log = 2.0 * base_log + s
    centre = float(result[k - 1, k - 1])
    if centre <= 0.0:
        return 0.0
    return math.exp(_log_factorial(n) - n * math.log(n) + result_log + math.log(centre))


_PI2 = math.pi**2
_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)


def _kolmogorov_cdf_pelz_good(n: int, d: float) -> float:
    """``P(D_n <= d)`` by the Pelz-Good (1976) expansion ``K0 + K1/sqrt(n) + K2/n + K3/n^1.5`` at
    ``z = d sqrt(n)``, each ``K`` a theta-type series in ``exp(-pi^2 (k+1/2)^2 / 2z^2)`` (and, for K2 and
    K3, ``exp(-pi^2 k^2 / 2z^2)``)."""
    z2 = n * d * d
    z = math.sqrt(z2)
    w = _PI2 / (2.0 * z2)
    if w * 0.25 > 740.0:  # even the first term underflows: the CDF is 0 to double precision
        return 0.0
    terms = int(math.ceil(math.sqrt(0.25 + 40.0 / w))) + 2
    kh2 = _PI2 * (np.arange(terms) + 0.5) ** 2  # pi^2 (k+1/2)^2, k = 0, 1, ...
    ki2 = _PI2 * np.arange(1, terms + 1, dtype=np.float64) ** 2  # pi^2 k^2, k = 1, 2, ...
    eh = np.exp(-kh2 / (2.0 * z2))
    ei = np.exp(-ki2 / (2.0 * z2))
    z4, z6 = z2 * z2, z2 * z2 * z2
    z8 = z4 * z4
    # K1..K3 sum over all integers k: twice the sums over k >= 0 (k >= 1 for the integer terms).
    k0 = math.sqrt(2.0 * math.pi) / z * float(eh.sum())
    k1 = _SQRT_HALF_PI / (3.0 * z4) * float(((kh2 - z2) * eh).sum())
    poly2 = (6 * z6 + 2 * z4) + (2 * z4 - 5 * z2) * kh2 + (1 - 2 * z2) * kh2 * kh2
    k2 = (_SQRT_HALF_PI / (36.0 * z6 * z) * float((poly2 * eh).sum())
          - _SQRT_HALF_PI / (18.0 * z2 * z) * float((ki2 * ei).sum()))
    poly3 = (((5 - 30 * z2) * kh2 + (212 * z4 - 60 * z2)) * kh2 + (135 * z4 - 96 * z6)) * kh2 - (30 * z6 + 90 * z8)
    k3 = (_SQRT_HALF_PI / (3240.0 * z8 * z2) * float((poly3 * eh).sum())
          + _SQRT_HALF_PI / (108.0 * z6) * float(((3 * z2 - ki2) * ki2 * ei).sum()))
    rn = math.sqrt(n)
    cdf = k0 + k1 / rn + k2 / n + k3 / (n * rn)
    return min(1.0, max(0.0, cdf))


def kolmogorov_sf(d: float, n: int) -> float:
    """``P(D_n >= d)`` for the two-sided one-sample KS statistic of n observations (``kstwo.sf(d, n)``)."""
    n = int(n)
    if n < 1 or not d > 0.0:  # n = 0 (sizes 1 and 1 round to it): no evidence either way
        return 1.0
    if d >= 1.0:
        return 0.0
    t = n * d
    if t <= 1.0:  # Ruben-Gambino: P(D_n < d) = n!/n^n (2nd - 1)^n for 1/2n <= d <= 1/n
        if t <= 0.5:
            return 1.0
        return 1.0 - math.exp(_log_factorial(n) - n * math.log(n) + n * math.log(2.0 * t - 1.0))
    if t >= n - 1:  # Ruben-Gambino, upper end
        return min(1.0, 2.0 * (1.0 - d) ** n)
    if d >= 0.5:  # D_n^+ >= d and D_n^- >= d exclude each other: exact
        return min(1.0, 2.0 * smirnov_sf(n, d))
    nd2 = t * d
    if n <= 140:
        if nd2 <= 4.0:
            return min(1.0, max(0.0, 1.0 - _kolmogorov_cdf_durbin(n, d)))
        return min(1.0, 2.0 * smirnov_sf(n, d))
    if nd2 >= 370.0:  # below exp(-740): 0 in double precision
        return 0.0
    if nd2 >= 2.2:  # p <~ 0.025: P(D_n^+ >= d and D_n^- >= d) is below ~1e-7
        return min(1.0, 2.0 * smirnov_sf(n, d))
    if n <= 100_000 and n * d**1.5 <= 1.4:
        return min(1.0, max(0.0, 1.0 - _kolmogorov_cdf_durbin(n, d)))
    return 1.0 - _kolmogorov_cdf_pelz_good(n, d)


def ks_pvalues(statistics: Sequence[float], sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """``ks_2samp``'s asymptotic two-sided p-values: ``kstwo.sf(D, round(n*m/(n+m)))``."""
    p = []
    for d, (n1, n2) in zip(statistics, sizes, strict=True):
        m, n = sorted([float(n1), float(n2)], reverse=True)
        p.append(kolmogorov_sf(float(d), int(np.round(m * n / (m + n)))))
    return np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)


# ------------------------------------------------------------------------------------- chi-square


def _upper_gamma_regularized(a: float, x: float) -> float:
    """``Q(a, x) = Gamma(a, x) / Gamma(a)``: a power series for ``1 - Q`` below ``x = a + 1``, a continued
    fraction (modified Lentz) for ``Q`` above, both scaled by ``x^a e^-x / Gamma(a)``."""
    if not x > 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_scale = a * math.log(x) - x - math.lgamma(a)
    eps, tiny, max_iter = 1e-16, 1e-300, 100_000
    if x < a + 1.0:
        term = total = 1.0 / a
        denom = a
        for _ in range(max_iter):
            denom += 1.0
            term *= x / denom
            total += term
            if term < total * eps:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_scale)))
    b = x + 1.0 - a
    c = 1.0 / tiny
    dd = 1.0 / b
    frac = dd
    for i in range(1, max_iter):
        an = -i * (i - a)
        b += 2.0
        dd = an * dd + b
        if abs(dd) < tiny:
            dd = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        dd = 1.0 / dd
        delta = dd * c
        frac *= delta
        if abs(delta - 1.0) < eps:
            break
    return min(1.0, max(0.0, math.exp(log_scale) * frac))


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution with ``dof`` degrees of freedom."""
    return _upper_gamma_regularized(dof / 2.0, x / 2.0)


def chi2_homogeneity(table: np.ndarray) -> tuple[float, float]:
    """``(statistic, p_value)`` of the chi-square test of a contingency table, as
    ``scipy.stats.chi2_contingency(table)`` (Yates' correction with one degree of freedom)."""
    observed = np.asarray(table, dtype=np.float64)
    dof = observed.size - sum(observed.shape) + observed.ndim - 1
    if dof == 0:
        return 0.0, 1.0
    total = observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    if (expected == 0).any():
        raise ValueError("the contingency table has a zero margin (an empty row or column)")
    diff = observed - expected
    if dof == 1:  # Yates: each |o - e| moves toward 0 by 0.5, or to 0 if it was smaller
        diff = np.sign(diff) * np.maximum(np.abs(diff) - 0.5, 0.0)
    statistic = float((diff * diff / expected).sum())
    return statistic, chi2_sf(statistic, dof)


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
            # numpy's sorts release the GIL: columns in parallel halve a wide batch's time on 2 cores.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llctl-ks") as pool:
                stats = list(pool.map(lambda ab: ks_statistic(*ab), pairs))
        else:
            stats = [ks_statistic(a, b) for a, b in pairs]
        p = ks_pvalues(stats, [(a.size, b.size) for a, b in pairs])
        return [(d, float(pv)) for d, pv in zip(stats, p, strict=True)]

    def _chi2_tests(self, pairs: Sequence[CategoricalPair]) -> list[tuple[float, float]]:
        return [chi2_homogeneity(pair.table()) for pair in pairs]
