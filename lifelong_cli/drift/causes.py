"""What a drifted column looks like, and its likely cause when the evidence is strong.

Shared by every backend (called from ``BaseDriftDetector.compare``): per column, reference and batch
quantiles (p1/p25/p50/p75/p99), null rates and the ratios of medians, IQRs and p1-p99 spreads (numeric), or
the top categories' shares and the share of unseen categories (categorical). Then, for the columns that
drifted, a cause is named only when a pattern fits closely:

* ``unit_change``: the median, the IQR and the p1-p99 spread all moved by the same factor, within ±10 % of
  a power of ten (|n| >= 1) or a time factor (60, 3600, 86400, 24), or within ±3 % of a common
  imperial/metric factor (2.54, 0.3048, 0.4536, 1.609). The IQR and the spread do not move under a shift of
  location, so a seasonal shift is not named; a median near zero (|median| < 0.1 IQR) says nothing about
  scale and is left out of the evidence.
* ``constant``: the batch holds one value (or its p1-p99 spread is under 1/1000 of the reference's) where
  the reference varied, and chance cannot explain it (the reference share of that value, raised to the batch
  size, is below 1e-6).
* ``swapped_columns``: two drifted columns of one kind each match the *other's* reference (KS statistic for
  numeric columns, total variation distance for categorical ones) at most half as far as their own, and
  either a third as far or within the KS critical value at 1 % (the batch is then indistinguishable from
  the other column's reference).
* ``null_burst``: the null-rate test flagged the column and the batch's null rate is at least twice the
  reference's.
* ``categories_remapped``: half or more of the batch's rows have categories the reference never had, or the
  shares are the reference's shares on other categories (sorted shares within a quarter of the actual
  change, which is at least 0.1, the batch's counts fit the reference shares moved by rank at 1 %, and
  the batch has 200 rows or more).

Only numpy is imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

QUANTILES = (1, 25, 50, 75, 99)
UNIT_TOLERANCE = 0.10
IMPERIAL_TOLERANCE = 0.03
# Causes in the order they win when several fit one column (its ``likely_cause``).
CAUSES = ("swapped_columns", "unit_change", "constant", "categories_remapped", "null_burst")
_CHANCE = math.log(1e-6)
_CANDIDATE = math.log(1.3)  # a ratio within ×/÷1.3 of a factor makes it a candidate, the KS check decides
_TOP = 5
# Below this many batch rows, sampling noise alone makes shares look permuted too often.
_PERMUTED_MIN_ROWS = 200


def _factors() -> list[tuple[float, float, str]]:
    """(factor, tolerance, kind) of the unit changes we name."""
    out: list[tuple[float, float, str]] = []
    for n in range(1, 13):
        out += [(10.0**n, UNIT_TOLERANCE, "decimal"), (10.0**-n, UNIT_TOLERANCE, "decimal")]
    for f in (60.0, 3600.0, 86400.0, 24.0):
        out += [(f, UNIT_TOLERANCE, "time"), (1.0 / f, UNIT_TOLERANCE, "time")]
    for f in (2.54, 0.3048, 0.45359237, 1.609344):
        out += [(f, IMPERIAL_TOLERANCE, "imperial"), (1.0 / f, IMPERIAL_TOLERANCE, "imperial")]
    return out


FACTORS = _factors()

# Unit suffixes of column names, in a base unit per family: a column named latency_ms whose values
# shrink 1000-fold now likely carries seconds.
_UNITS: dict[str, dict[str, tuple[float, str]]] = {
    "time": {"ns": (1e-9, "nanoseconds"), "us": (1e-6, "microseconds"), "ms": (1e-3, "milliseconds"),
             "s": (1.0, "seconds"), "sec": (1.0, "seconds"), "secs": (1.0, "seconds"),
             "seconds": (1.0, "seconds"), "min": (60.0, "minutes"), "mins": (60.0, "minutes"),
             "minutes": (60.0, "minutes"), "h": (3600.0, "hours"), "hr": (3600.0, "hours"),
             "hrs": (3600.0, "hours"), "hours": (3600.0, "hours"), "d": (86400.0, "days"),
             "days": (86400.0, "days")},
    "length": {"mm": (1e-3, "millimetres"), "cm": (1e-2, "centimetres"), "m": (1.0, "metres"),
               "km": (1e3, "kilometres"), "in": (0.0254, "inches"), "inches": (0.0254, "inches"),
               "ft": (0.3048, "feet"), "feet": (0.3048, "feet"), "mi": (1609.344, "miles"),
               "miles": (1609.344, "miles")},
    "mass": {"mg": (1e-6, "milligrams"), "g": (1e-3, "grams"), "kg": (1.0, "kilograms"),
             "lb": (0.45359237, "pounds"), "lbs": (0.45359237, "pounds"), "t": (1e3, "tonnes")},
    "bytes": {"b": (1.0, "bytes"), "bytes": (1.0, "bytes"), "kb": (1e3, "kilobytes"), "mb": (1e6, "megabytes"),
              "gb": (1e9, "gigabytes"), "tb": (1e12, "terabytes")},
    "money": {"cents": (0.01, "cents"), "cent": (0.01, "cents"), "usd": (1.0, "dollars"),
              "eur": (1.0, "euros"), "dollars": (1.0, "dollars")},
}


# --------------------------------------------------------------------------------------------- formatting


def fmt(x: float | None) -> str:
    """A figure for a sentence: 4 significant digits, no float noise (0.12, 120, 1.2e+06)."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.4g}"


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(ref: float | None, cur: float | None) -> float | None:
    """``cur / ref``, or None when the reference figure is 0 or missing (no ratio to speak of)."""
    if ref is None or cur is None or ref == 0:
        return None
    return _f(cur / ref)


# --------------------------------------------------------------------------------------------- summaries


def quantile(ordered: np.ndarray, q: float) -> float:
    """``np.percentile(x, q)`` (linear interpolation) of an already sorted array: one index, no partition."""
    pos = q / 100.0 * (ordered.size - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, ordered.size - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def numeric_side(ordered: np.ndarray, n: int, nulls: int, non_finite: int) -> dict[str, Any]:
    """Rows, nulls, ±Inf and quantiles of one side of a numeric column (``ordered``: its finite values, sorted)."""
    side: dict[str, Any] = {"n": int(n), "nulls": int(nulls), "null_rate": nulls / n if n else 0.0,
                            "non_finite": int(non_finite)}
    if ordered.size:
        side.update({f"p{p}": _f(quantile(ordered, p)) for p in QUANTILES})
        side["min"], side["max"] = _f(ordered[0]), _f(ordered[-1])
    else:
        side.update({f"p{p}": None for p in QUANTILES})
        side["min"] = side["max"] = None
    return side


def numeric_summary(ref: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    def spread(s: dict[str, Any], lo: str, hi: str) -> float | None:
        return None if s[lo] is None or s[hi] is None else _f(s[hi] - s[lo])

    iqr = spread(ref, "p25", "p75")
    return {
        "kind": "numeric", "reference": ref, "batch": cur,
        "median_ratio": _ratio(ref["p50"], cur["p50"]),
        # |median| under a tenth of the IQR: the ratio of medians is noise, not a change of scale
        "median_near_zero": bool(iqr is not None and iqr > 0 and abs(ref["p50"]) < 0.1 * iqr),
        "iqr_ratio": _ratio(spread(ref, "p25", "p75"), spread(cur, "p25", "p75")),
        "spread_ratio": _ratio(spread(ref, "p1", "p99"), spread(cur, "p1", "p99")),
        "p99_ratio": _ratio(ref["p99"], cur["p99"]),
    }


def categorical_summary(kind: str, categories: Sequence[Any], counts_ref: np.ndarray, counts_cur: np.ndarray,
                        n_ref: int, n_cur: int, nulls_ref: int, nulls_cur: int) -> dict[str, Any]:
    """Null rates, the top categories (by their larger share on either side) and the unseen share."""
    tot_ref, tot_cur = int(counts_ref.sum()), int(counts_cur.sum())
    share_ref = counts_ref / tot_ref if tot_ref else np.zeros(len(categories))
    share_cur = counts_cur / tot_cur if tot_cur else np.zeros(len(categories))
    order = np.argsort(-np.maximum(share_ref, share_cur), kind="stable")[:_TOP]
    unseen = (counts_ref == 0) & (counts_cur > 0)
    return {
        "kind": kind,
        "reference": {"n": int(n_ref), "nulls": int(nulls_ref), "null_rate": nulls_ref / n_ref if n_ref else 0.0,
                      "categories": int(np.count_nonzero(counts_ref))},
        "batch": {"n": int(n_cur), "nulls": int(nulls_cur), "null_rate": nulls_cur / n_cur if n_cur else 0.0,
                  "categories": int(np.count_nonzero(counts_cur))},
        "top": [{"category": str(categories[i]), "reference": float(share_ref[i]), "batch": float(share_cur[i])}
                for i in order],
        "unseen_share": float(counts_cur[unseen].sum() / tot_cur) if tot_cur else 0.0,
        "unseen": [str(categories[i]) for i in np.flatnonzero(unseen)[:10]],
    }


# --------------------------------------------------------------------------------------------- causes


def _cause(feature: str, cause: str, evidence: str, **figures: Any) -> dict[str, Any]:
    return {"feature": feature, "cause": cause, "evidence": evidence,
            "figures": {k: (_f(v) if isinstance(v, (float, np.floating)) else v) for k, v in figures.items()}}


def _nearest_factor(r: float) -> tuple[float, float, str] | None:
    if not r > 0:
        return None
    best = min(FACTORS, key=lambda f: abs(math.log(r / f[0])))
    return best if abs(r / best[0] - 1.0) <= best[1] else None


def _unit_guess(name: str, factor: float, kind: str) -> str:
    tokens = [t for t in name.lower().replace("-", "_").split("_") if t]
    if len(tokens) >= 2:  # "latency_ms": a unit suffix; "ms" alone is a name, not a unit
        for units in _UNITS.values():
            if tokens[-1] in units:
                base, named = units[tokens[-1]]
                now = base / factor
                for value, label in units.values():
                    if label != named and abs(now / value - 1.0) <= UNIT_TOLERANCE:
                        return f" ({label} instead of {named}?)"
                break
    if kind == "time":
        return " (another time unit?)"
    if abs(factor / 100 - 1) < 0.1:
        return " (percent instead of a fraction, or cents?)"
    if abs(factor * 100 - 1) < 0.1:
        return " (a fraction instead of percent?)"
    return ""


def unit_change(name: str, col: Mapping[str, Any], ref_sorted: np.ndarray, cur_sorted: np.ndarray
                ) -> dict[str, Any] | None:
    """A factor f near the ratios of medians / IQRs / spreads such that the batch divided by f is distributed
    like the reference (see the module docstring)."""
    ref, cur = col["reference"], col["batch"]
    if ref["p50"] is None or cur["p50"] is None or not ref_sorted.size or not cur_sorted.size:
        return None
    ratios: dict[str, float] = {}
    if col["median_ratio"] is not None and not col["median_near_zero"]:
        ratios["median"] = col["median_ratio"]
    if col["iqr_ratio"] is not None:
        ratios["iqr"] = col["iqr_ratio"]
    if col["spread_ratio"] is not None:
        ratios["spread"] = col["spread_ratio"]
    if not ratios or min(ratios.values()) <= 0:
        return None
    candidates = set()
    for f, tol, kind in FACTORS:
        near = [abs(r / f - 1.0) <= tol for r in ratios.values()]
        if (kind == "imperial" and all(near) and len(near) >= 2) or (kind != "imperial" and any(
                abs(math.log(r / f)) <= _CANDIDATE for r in ratios.values())):
            candidates.add((f, kind))
    if not candidates:
        return None
    # float32: 0.3 / 0.1 is 2.9999999999999996, and a tie missed by one ulp would count as a KS step.
    ref_s, cur_s = sketch(ref_sorted), sketch(cur_sorted)
    ref32 = ref_s.astype(np.float32)
    before = _ks(ref32, cur_s.astype(np.float32))
    after, factor, kind = min((_ks(ref32, np.sort(cur_s / f).astype(np.float32)), f, k) for f, k in candidates)
    if after > before / 3 or after > max(_ks_critical(ref_sorted.size, cur_sorted.size), 0.1):
        return None
    words = {"median": "median", "iqr": "IQR", "spread": "p1–p99 spread"}
    moved = ", ".join(f"{words[k]} ×{r:.3g}" for k, r in ratios.items())
    evidence = (f"{name}: median {fmt(cur['p50'])} vs {fmt(ref['p50'])} in the reference (×{fmt(factor)}: {moved}; "
                f"divided by {fmt(factor)} the batch matches the reference, KS {before:.2f} → {after:.2f}): "
                f"likely a unit change{_unit_guess(name, factor, kind)}")
    return _cause(name, "unit_change", evidence, factor=factor, ratios=ratios, ref_p50=ref["p50"],
                  batch_p50=cur["p50"], ks=before, ks_rescaled=after)


def constant_numeric(name: str, col: Mapping[str, Any], ref_values: np.ndarray, cur_values: np.ndarray,
                     min_samples: int) -> dict[str, Any] | None:
    """``ref_values`` sorted."""
    ref, cur = col["reference"], col["batch"]
    if cur_values.size < min_samples or ref["min"] is None or ref["max"] == ref["min"]:
        return None
    ref_spread = ref["p99"] - ref["p1"]
    varied = f"the reference varied: p1–p99 {fmt(ref['p1'])} … {fmt(ref['p99'])}"
    if cur["min"] == cur["max"]:
        value = cur["min"]
        same = np.searchsorted(ref_values, value, "right") - np.searchsorted(ref_values, value, "left")
        share = float(same / ref_values.size) if ref_values.size else 0.0
        if share > 0 and cur_values.size * math.log(share) >= _CHANCE:
            return None
        return _cause(name, "constant", f"{name}: all {cur_values.size} batch values are {fmt(value)} ({varied}, "
                                        f"{share:.1%} of its values were {fmt(value)}): likely a stuck feature",
                      value=value, ref_share_of_value=share, n=int(cur_values.size))
    cur_spread = cur["p99"] - cur["p1"]
    if ref_spread > 0 and cur_spread <= 1e-3 * ref_spread:
        return _cause(name, "constant", f"{name}: batch p1–p99 {fmt(cur['p1'])} … {fmt(cur['p99'])}, spread "
                                        f"{fmt(cur_spread)} ({varied}, spread {fmt(ref_spread)}): likely a stuck feature",
                      batch_spread=cur_spread, ref_spread=ref_spread)
    return None


def constant_categorical(name: str, col: Mapping[str, Any], min_samples: int) -> dict[str, Any] | None:
    ref, cur = col["reference"], col["batch"]
    n_cur = cur["n"] - cur["nulls"]
    if cur["categories"] != 1 or ref["categories"] < 2 or n_cur < min_samples:
        return None
    (top,) = [t for t in col["top"] if t["batch"] > 0][:1] or [None]
    if top is None:
        return None
    share = top["reference"]
    if share > 0 and n_cur * math.log(share) >= _CHANCE:
        return None
    return _cause(name, "constant", f"{name}: every batch row is {top['category']!r} ({share:.1%} of the "
                                    f"reference, which had {ref['categories']} categories): likely a stuck feature",
                  value=top["category"], ref_share_of_value=share, n=int(n_cur))


def null_burst(name: str, col: Mapping[str, Any]) -> dict[str, Any] | None:
    r, c = col["reference"]["null_rate"], col["batch"]["null_rate"]
    if c < 2 * r or c <= 0:
        return None
    return _cause(name, "null_burst", f"{name}: null rate {c:.1%} in the batch vs {r:.1%} in the reference: "
                                      "likely a null burst (a field no longer filled upstream?)",
                  ref_null_rate=r, batch_null_rate=c)


def categories_remapped(name: str, col: Mapping[str, Any], counts_ref: np.ndarray, counts_cur: np.ndarray,
                        categories: Sequence[Any]) -> dict[str, Any] | None:
    unseen = col["unseen_share"]
    if unseen >= 0.5:
        ref_top = ", ".join(repr(t["category"]) for t in col["top"] if t["reference"] > 0)
        return _cause(name, "categories_remapped",
                      f"{name}: {unseen:.0%} of batch rows have categories the reference never had "
                      f"({', '.join(repr(u) for u in col['unseen'][:5])}; reference: {ref_top}): "
                      "likely remapped categories (renamed or re-encoded upstream?)",
                      unseen_share=unseen, unseen=col["unseen"])
    tot_ref, tot_cur = counts_ref.sum(), counts_cur.sum()
    if not tot_ref or not tot_cur or np.count_nonzero(counts_ref) < 2:
        return None
    s_ref, s_cur = counts_ref / tot_ref, counts_cur / tot_cur
    moved = 0.5 * float(np.abs(s_ref - s_cur).sum())
    as_sorted = 0.5 * float(np.abs(np.sort(s_ref) - np.sort(s_cur)).sum())
    if (tot_cur < _PERMUTED_MIN_ROWS or moved < 0.1 or as_sorted > moved / 4
            or _permuted_fit(s_ref, counts_cur) < 0.01):
        return None
    changed = np.argsort(-np.abs(s_ref - s_cur), kind="stable")[:4]
    shares = ", ".join(f"{categories[i]!s} {s_ref[i]:.0%}→{s_cur[i]:.0%}" for i in changed if s_ref[i] != s_cur[i])
    return _cause(name, "categories_remapped",
                  f"{name}: the reference's shares on other categories ({shares}; total variation {moved:.2f}, "
                  f"{as_sorted:.2f} as sorted shares): likely remapped categories (codes permuted upstream?)",
                  total_variation=moved, sorted_total_variation=as_sorted)


_SKETCH = 2001


def sketch(ordered: np.ndarray) -> np.ndarray:
    """At most ``_SKETCH`` evenly spaced order statistics of a sorted array: the KS statistic between two
    sketches is within ~1/2000 of the exact one, at a fixed cost per pair of columns."""
    if ordered.size <= _SKETCH:
        return ordered
    return ordered[np.linspace(0, ordered.size - 1, _SKETCH).round().astype(np.int64)]


def _permuted_fit(s_ref: np.ndarray, counts_cur: np.ndarray) -> float:
    """p-value of the batch's counts against the reference's shares moved onto the batch's categories by rank
    (the largest share onto the batch's most frequent category, and so on): Pearson's goodness of fit."""
    from lifelong_cli.drift.scipy_backend import chi2_sf  # numpy only, like this module

    expected = np.zeros(counts_cur.size)
    expected[np.argsort(-counts_cur, kind="stable")] = np.sort(s_ref)[::-1] * counts_cur.sum()
    used = expected > 0
    if (counts_cur[~used] > 0).any():
        return 0.0
    stat = float((((counts_cur[used] - expected[used]) ** 2) / expected[used]).sum())
    return chi2_sf(stat, int(used.sum()) - 1) if used.sum() > 1 else 1.0


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic of two sorted arrays."""
    both = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, both, side="right") / a.size
                               - np.searchsorted(b, both, side="right") / b.size)))


def _ks_critical(n: int, m: int) -> float:
    """The two-sample KS statistic's critical value at 1 % (asymptotic)."""
    return 1.628 * math.sqrt((n + m) / (n * m))


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


def swapped_pairs(names: Sequence[str], distance, limit: int = 20, close: Mapping[str, float] | None = None
                  ) -> list[tuple[str, str, dict[str, float]]]:
    """Pairs (a, b) whose batches each sit much closer to the other's reference than to their own (see the
    module docstring); ``distance(x, y)`` is the distance of batch x from reference y, ``close[x]`` a
    distance of batch x from a reference that counts as no difference. Each column is in one pair at most,
    the closest fits first."""
    names = list(names)[:limit]
    own = {n: distance(n, n) for n in names}
    found: list[tuple[float, str, str, dict[str, float]]] = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            own_min = min(own[a], own[b])
            if own_min <= 0:
                continue
            ab, ba = distance(a, b), distance(b, a)
            indistinguishable = close is not None and ab <= close[a] and ba <= close[b]
            if max(ab, ba) <= own_min / 2 and (max(ab, ba) <= own_min / 3 or indistinguishable):
                found.append((max(ab, ba) / own_min, a, b, {"own_a": own[a], "own_b": own[b],
                                                            "batch_a_vs_ref_b": ab, "batch_b_vs_ref_a": ba}))
    out: list[tuple[str, str, dict[str, float]]] = []
    used: set[str] = set()
    for _, a, b, figs in sorted(found):
        if a not in used and b not in used:
            used |= {a, b}
            out.append((a, b, figs))
    return out


def swapped_causes(pairs: list[tuple[str, str, dict[str, float]]], what: str) -> list[dict[str, Any]]:
    out = []
    for a, b, f in pairs:
        evidence = (f"{a} and {b}: each batch matches the other's reference ({what} {fmt(f['batch_a_vs_ref_b'])} "
                    f"and {fmt(f['batch_b_vs_ref_a'])}) far better than its own ({fmt(f['own_a'])} and "
                    f"{fmt(f['own_b'])}): likely swapped columns")
        out.append({**_cause(a, "swapped_columns", evidence, **f), "with": b})
        out.append({**_cause(b, "swapped_columns", evidence, **f), "with": a})
    return out


def find_causes(
    columns: Mapping[str, dict[str, Any]],
    drifted: Mapping[str, set[str]],
    numeric_values: Mapping[str, tuple[np.ndarray, np.ndarray]],  # sorted
    category_counts: Mapping[str, tuple[Sequence[Any], np.ndarray, np.ndarray]],
    min_samples: int,
) -> list[dict[str, Any]]:
    """The likely causes of the drifted columns, strongest first per column (see the module docstring).

    ``drifted`` maps a drifted column to its drifted tests; ``numeric_values`` holds the (reference, batch)
    finite values, sorted, of the tested numeric columns, ``category_counts`` (categories, reference counts, batch
    counts) of the tested categorical ones."""
    found: dict[str, list[dict[str, Any]]] = {n: [] for n in columns if n in drifted}
    num = [n for n in found if n in numeric_values and "ks" in drifted[n]]
    if len(num) >= 2:
        ordered = {n: (sketch(numeric_values[n][0]), sketch(numeric_values[n][1])) for n in num}
        critical = {n: _ks_critical(numeric_values[n][0].size, numeric_values[n][1].size) for n in num}
        pairs = swapped_pairs(num, lambda x, y: _ks(ordered[x][1], ordered[y][0]), close=critical)
        for c in swapped_causes(pairs, "KS"):
            found[c["feature"]].append(c)
    cat = [n for n in found if n in category_counts and "chi2" in drifted[n]]
    if len(cat) >= 2:
        shares = {}
        for n in cat:
            cats, r, c = category_counts[n]
            shares[n] = ({k: v / max(r.sum(), 1) for k, v in zip(cats, r, strict=True)},
                         {k: v / max(c.sum(), 1) for k, v in zip(cats, c, strict=True)})

        def tv(x: str, y: str) -> float:
            keys = sorted(set(shares[x][1]) | set(shares[y][0]), key=str)
            return _tv(np.array([shares[x][1].get(k, 0.0) for k in keys]),
                       np.array([shares[y][0].get(k, 0.0) for k in keys]))

        for c in swapped_causes(swapped_pairs(cat, tv), "total variation"):
            found[c["feature"]].append(c)

    for name, tests in drifted.items():
        col = columns.get(name)
        if col is None:
            continue
        if col["kind"] == "numeric" and "ks" in tests and name in numeric_values:
            for c in (unit_change(name, col, *numeric_values[name]), constant_numeric(name, col, *numeric_values[name], min_samples)):
                if c is not None:
                    found[name].append(c)
        elif col["kind"] != "numeric" and "chi2" in tests and name in category_counts:
            cats, r, k = category_counts[name]
            for c in (constant_categorical(name, col, min_samples), categories_remapped(name, col, r, k, cats)):
                if c is not None:
                    found[name].append(c)
        if "null_rate" in tests:
            c = null_burst(name, col)
            if c is not None:
                found[name].append(c)

    out: list[dict[str, Any]] = []
    for causes in found.values():
        out.extend(sorted(causes, key=lambda c: CAUSES.index(c["cause"])))
    return out
