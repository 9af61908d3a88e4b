"""What a drift check returns, and everything the backends share.

A backend only supplies the two statistical tests (two-sample KS for numeric columns, chi-square
homogeneity for categorical columns and the label). Everything else lives here, once, so that every
backend reaches the same verdict on the same data:

* input validation and column extraction,
* the checks a KS test misses: null-rate increase and non-finite values (``null_rate`` and
  ``non_finite``),
* category encoding on the union of reference and current categories,
* the too-few-samples skip,
* the multiple-testing correction (Bonferroni or Benjamini-Hochberg) across all KS and chi-square
  tests of one report, and the report itself,
* per column, what an operator compares (quantiles, null rates, ratio of medians, category shares) and the
  likely cause of a drift where the evidence is strong (``lifelong_cli.drift.causes``).

Only numpy is imported here. The default backend needs nothing more (it computes scipy's tests in numpy);
alibi-detect is imported by its backend when it runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from lifelong_cli.drift import causes as _causes
from lifelong_cli.errors import ConfigError, InvalidInputError

Kind = Literal["numeric", "categorical", "label"]
CORRECTIONS = ("bonferroni", "fdr")

# Share comparisons are done on floats (0.06 - 0.01 == 0.049999999999999996): an increase within this of
# the tolerance counts as reaching it.
_SHARE_EPS = 1e-9
_SKIPPED = "too few samples"


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FeatureDrift:
    """One test on one column.

    ``test`` is ``ks`` or ``chi2`` (``p_value`` set, ``threshold`` is the corrected per-test alpha,
    drifted when ``p_value < threshold``), or ``null_rate`` / ``non_finite`` (``p_value`` is None,
    ``statistic`` is the increase of the share from reference to current, ``threshold`` is the
    tolerance, drifted when the increase reaches it; ``non_finite`` is also drifted when current has
    ±Inf and reference had none). A skipped test has ``detail["skipped"]`` and is never drifted.
    """

    name: str
    kind: Kind
    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return "skipped" in self.detail

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "test": self.test,
            "statistic": _json_float(self.statistic),
            "p_value": None if self.p_value is None else _json_float(self.p_value),
            "threshold": _json_float(self.threshold),
            "drifted": bool(self.drifted),
            "detail": _jsonable(self.detail),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureDrift:
        return cls(
            name=d["name"], kind=d["kind"], test=d["test"], statistic=float(d["statistic"] or 0.0),
            p_value=None if d.get("p_value") is None else float(d["p_value"]),
            threshold=float(d["threshold"]), drifted=bool(d["drifted"]), detail=dict(d.get("detail") or {}),
        )

    def reason(self) -> str:
        """Why this result is drift, in a few words (for hints)."""
        if self.test == "ks":
            return f"KS p={self.p_value:.2g} < {self.threshold:.2g}"
        if self.test == "chi2":
            return f"chi2 p={self.p_value:.2g} < {self.threshold:.2g}"
        if self.test == "null_rate":
            return f"null rate {self.detail['ref_rate']:.1%} -> {self.detail['cur_rate']:.1%}"
        if self.test == "non_finite":
            return (f"±Inf {self.detail['ref_count']} -> {self.detail['cur_count']} rows "
                    f"({self.detail['ref_rate']:.1%} -> {self.detail['cur_rate']:.1%})")
        return self.test


@dataclass(frozen=True)
class DriftReport:
    """The result of comparing one current batch with the reference.

    ``features`` holds every test run, in column order (numeric, categorical, label); for each column its
    distribution test (``ks`` or ``chi2``) first, then ``null_rate``, then (numeric) ``non_finite``.

    ``columns`` maps each column to what it looks like on both sides (``causes.numeric_summary`` /
    ``causes.categorical_summary``) and its ``likely_cause`` (``{"cause", "evidence"}`` or None);
    ``likely_causes`` lists every cause found, ``{"feature", "cause", "evidence", "figures"}``, strongest
    first per column. Reports stored before these existed have them empty.
    """

    backend: str
    drifted: bool
    correction: str
    alpha: float
    n_reference: int
    n_current: int
    features: tuple[FeatureDrift, ...]
    columns: Mapping[str, Any] = field(default_factory=dict)
    likely_causes: tuple[Mapping[str, Any], ...] = ()

    def cause_for(self, name: str) -> Mapping[str, Any] | None:
        """The strongest likely cause named for a column, or None."""
        return next((c for c in self.likely_causes if c["feature"] == name), None)

    def drifted_features(self) -> list[str]:
        """Names of the columns with at least one drifted test, in report order, each once."""
        out: list[str] = []
        for f in self.features:
            if f.drifted and f.name not in out:
                out.append(f.name)
        return out

    def results_for(self, name: str) -> list[FeatureDrift]:
        return [f for f in self.features if f.name == name]

    def skipped_features(self) -> list[str]:
        out: list[str] = []
        for f in self.features:
            if f.skipped and f.name not in out:
                out.append(f.name)
        return out

    def hint(self, batch: int | str | None = None) -> str:
        """One line: what drifted and what to run next."""
        b = "<batch>" if batch is None else str(batch)
        names = self.drifted_features()
        if not names:
            columns = len({f.name for f in self.features})
            line = (f"no drift in {columns} column{'s' if columns != 1 else ''} "
                    f"({self.correction}, alpha={self.alpha:g})")
            skipped = self.skipped_features()
            if skipped:
                line += f"; not tested (too few samples): {', '.join(skipped)}"
            return line
        reasons = []
        for name in names[:5]:
            why = "; ".join(f.reason() for f in self.results_for(name) if f.drifted)
            cause = self.cause_for(name)
            if cause is not None:
                why += f"; likely {_CAUSE_WORDS.get(cause['cause'], cause['cause'])}"
                if cause["cause"] == "unit_change":
                    why += f" ×{_causes.fmt(cause['figures']['factor'])}"
                elif cause.get("with"):
                    why += f" with {cause['with']}"
            reasons.append(f"{name}: {why}")
        more = f"; +{len(names) - 5} more" if len(names) > 5 else ""
        noun = "feature" if len(names) == 1 else "features"
        return (f"{noun} {', '.join(names)} drifted ({'; '.join(reasons)}{more}); "
                f"inspect with `llctl drift --batch {b}`; "
                f"if the upstream is broken, `llctl purge-data --batch {b}`")

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "drifted": bool(self.drifted),
            "correction": self.correction,
            "alpha": float(self.alpha),
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
            "drifted_features": self.drifted_features(),
            "features": [f.to_dict() for f in self.features],
            "columns": _jsonable(self.columns),
            "likely_causes": _jsonable(list(self.likely_causes)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftReport:
        return cls(
            backend=d["backend"], drifted=bool(d["drifted"]), correction=d["correction"],
            alpha=float(d["alpha"]), n_reference=int(d["n_reference"]), n_current=int(d["n_current"]),
            features=tuple(FeatureDrift.from_dict(f) for f in d["features"]),
            columns=dict(d.get("columns") or {}), likely_causes=tuple(d.get("likely_causes") or ()),
        )


_CAUSE_WORDS = {"unit_change": "a unit change", "constant": "a stuck (constant) value",
                "swapped_columns": "swapped", "null_burst": "a null burst",
                "categories_remapped": "remapped categories"}


@runtime_checkable
class DriftDetector(Protocol):
    name: str

    def compare(
        self,
        reference: Mapping[str, np.ndarray],
        current: Mapping[str, np.ndarray],
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        label: str | None = None,
    ) -> DriftReport: ...


# --------------------------------------------------------------------------------------------- helpers


def _json_float(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _json_float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def validate_options(alpha: float, correction: str, null_rate_tolerance: float, min_samples: int) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"drift alpha must be in (0, 1), got {alpha!r}", hint="set drift.alpha, e.g. 0.05")
    if correction not in CORRECTIONS:
        raise ConfigError(f"unknown drift correction {correction!r}",
                          hint=f"set drift.correction to one of: {', '.join(CORRECTIONS)}")
    if not 0.0 <= null_rate_tolerance <= 1.0:
        raise ConfigError(f"drift null_rate_tolerance must be in [0, 1], got {null_rate_tolerance!r}",
                          hint="set drift.null_rate_tolerance, e.g. 0.05")
    if int(min_samples) != min_samples or min_samples < 1:
        raise ConfigError(f"drift min_samples must be a positive integer, got {min_samples!r}",
                          hint="set drift.min_samples, e.g. 30")


def correct(p_values: Sequence[float], alpha: float, correction: str) -> tuple[float, np.ndarray]:
    """Multiple-testing correction over one family of p-values.

    Returns ``(threshold, drifted)``: the per-test threshold and, for each p-value, ``p < threshold``.

    * ``bonferroni``: threshold ``alpha / m``.
    * ``fdr`` (Benjamini-Hochberg): with p sorted ascending, k the largest i with ``p_(i) < alpha*i/m``,
      threshold ``alpha*k/m`` (every p below it is a discovery, and no other); ``alpha/m`` when there is no
      such i. This is the step-up rule alibi-detect's ``fdr`` uses (strict ``<``).
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return float(alpha), np.zeros(0, dtype=bool)
    if correction == "bonferroni":
        threshold = alpha / m
    elif correction == "fdr":
        ranks = np.arange(1, m + 1)
        below = np.flatnonzero(np.sort(p) < alpha * ranks / m)
        threshold = alpha * (below[-1] + 1) / m if below.size else alpha / m
    else:  # pragma: no cover - validated at construction
        raise ConfigError(f"unknown drift correction {correction!r}")
    return float(threshold), p < threshold


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column split into what the KS test sees (finite values) and what it misses."""

    finite: np.ndarray
    n: int
    nulls: int  # NaN
    pos_inf: int
    neg_inf: int

    @property
    def inf(self) -> int:
        return self.pos_inf + self.neg_inf


def split_numeric(values: np.ndarray) -> NumericColumn:
    x = np.asarray(values, dtype=np.float64).ravel()
    n = x.size
    finite_mask = np.isfinite(x)
    n_finite = int(np.count_nonzero(finite_mask))
    if n_finite == n:
        return NumericColumn(finite=x, n=n, nulls=0, pos_inf=0, neg_inf=0)
    nulls = int(np.count_nonzero(np.isnan(x)))
    pos_inf = int(np.count_nonzero(x == np.inf))
    return NumericColumn(finite=x[finite_mask], n=n, nulls=nulls, pos_inf=pos_inf, neg_inf=n - n_finite - nulls - pos_inf)


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and v != v)


@dataclass(frozen=True)
class CategoricalPair:
    """Reference and current values of one categorical column, integer-encoded on the union of categories.

    ``codes_ref``/``codes_cur`` index ``categories``; nulls are dropped (and counted). Every category occurs
    in at least one side, so the 2 x k contingency table has no all-zero column."""

    categories: tuple[Any, ...]
    codes_ref: np.ndarray
    codes_cur: np.ndarray
    n_ref: int
    n_cur: int
    nulls_ref: int
    nulls_cur: int

    def table(self) -> np.ndarray:
        k = len(self.categories)
        return np.vstack([np.bincount(self.codes_ref, minlength=k), np.bincount(self.codes_cur, minlength=k)])


def _non_null(values: np.ndarray) -> tuple[np.ndarray, int]:
    x = np.asarray(values).ravel()
    if x.dtype.kind == "f":
        mask = np.isnan(x)
    elif x.dtype.kind == "O":
        # None, or a float NaN (the only value unequal to itself): elementwise in C, not a Python loop.
        mask = np.asarray(np.equal(x, None), dtype=bool) | np.asarray(np.not_equal(x, x), dtype=bool)
    else:
        return x, 0
    nulls = int(np.count_nonzero(mask))
    return (x[~mask] if nulls else x), nulls


def encode_categorical(reference: np.ndarray, current: np.ndarray) -> CategoricalPair:
    ref, nulls_ref = _non_null(reference)
    cur, nulls_cur = _non_null(current)
    both = np.concatenate([ref, cur]) if ref.dtype == cur.dtype else np.concatenate([ref.astype(object), cur.astype(object)])
    if both.dtype.kind == "O":
        distinct = set(both.tolist())
        if len(distinct) <= 64:  # the usual categorical column: one elementwise comparison per category
            try:
                ordered = sorted(distinct)
            except TypeError:  # mixed types cannot be sorted
                ordered = sorted(distinct, key=lambda v: (type(v).__name__, repr(v)))
            codes = np.empty(both.size, dtype=np.int64)
            for i, v in enumerate(ordered):
                codes[np.asarray(np.equal(both, v), dtype=bool)] = i
            categories = tuple(ordered)
        else:
            # Insertion-order codes: works for any hashable values.
            index: dict[Any, int] = {}
            codes = np.fromiter((index.setdefault(v, len(index)) for v in both), dtype=np.int64, count=both.size)
            categories = tuple(index)
    else:
        uniq, codes = np.unique(both, return_inverse=True)
        codes = codes.astype(np.int64).ravel()
        categories = tuple(uniq.tolist())
    return CategoricalPair(
        categories=categories, codes_ref=codes[: ref.size], codes_cur=codes[ref.size:],
        n_ref=int(np.asarray(reference).size), n_cur=int(np.asarray(current).size),
        nulls_ref=nulls_ref, nulls_cur=nulls_cur,
    )


def _rate(count: int, n: int) -> float:
    return count / n if n else 0.0


def share_check(
    name: str, kind: Kind, test: str, *, ref_count: int, n_ref: int, cur_count: int, n_cur: int,
    tolerance: float, min_samples: int, new_is_drift: bool = False, extra: Mapping[str, Any] | None = None,
) -> FeatureDrift:
    """Drift when a bad-value share (nulls, ±Inf) rises by ``tolerance`` or more from reference to current
    (and, with ``new_is_drift``, when current has any and reference had none)."""
    ref_rate, cur_rate = _rate(ref_count, n_ref), _rate(cur_count, n_cur)
    increase = cur_rate - ref_rate
    detail: dict[str, Any] = {"ref_count": ref_count, "cur_count": cur_count, "ref_rate": ref_rate,
                              "cur_rate": cur_rate, "n_ref": n_ref, "n_cur": n_cur, **(extra or {})}
    if min(n_ref, n_cur) < min_samples:
        detail["skipped"] = _SKIPPED
        return FeatureDrift(name, kind, test, 0.0, None, tolerance, False, detail)
    drifted = increase >= tolerance - _SHARE_EPS
    if new_is_drift and cur_count > 0 and ref_count == 0:
        drifted = True
        detail["new_in_current"] = True
    return FeatureDrift(name, kind, test, float(increase), None, float(tolerance), bool(drifted), detail)


def _column(data: Mapping[str, np.ndarray], name: str, side: str) -> np.ndarray:
    try:
        col = data[name]
    except KeyError:
        raise InvalidInputError(
            f"column {name!r} is missing from the {side} data",
            hint="check the feature lists in llctl.yaml against the batch schema (`llctl config show`)",
            column=name, side=side,
        ) from None
    arr = np.asarray(col)
    if arr.ndim != 1:
        raise InvalidInputError(f"column {name!r} in the {side} data is not 1-D (shape {arr.shape})",
                                column=name, side=side)
    return arr


def _rows(data: Mapping[str, np.ndarray], names: Sequence[str], side: str) -> int:
    lengths = {n: int(np.asarray(data[n]).shape[0]) for n in names}
    if len(set(lengths.values())) > 1:
        raise InvalidInputError(f"columns of the {side} data have different lengths: {lengths}", side=side)
    return next(iter(lengths.values()), 0)


# --------------------------------------------------------------------------------------------- template


@dataclass
class _Pending:
    """A distribution test waiting for its p-value (computed per backend, corrected over the family)."""

    name: str
    kind: Kind
    test: str
    detail: dict[str, Any]
    statistic: float = 0.0
    p_value: float | None = None


class BaseDriftDetector:
    """Runs one comparison; subclasses supply ``_ks_tests`` and ``_chi2_tests``."""

    name = "base"

    def __init__(
        self,
        alpha: float = 0.05,
        correction: str = "bonferroni",
        null_rate_tolerance: float = 0.05,
        min_samples: int = 30,
    ) -> None:
        validate_options(alpha, correction, null_rate_tolerance, min_samples)
        self.alpha = float(alpha)
        self.correction = correction
        self.null_rate_tolerance = float(null_rate_tolerance)
        self.min_samples = int(min_samples)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(alpha={self.alpha}, correction={self.correction!r}, "
                f"null_rate_tolerance={self.null_rate_tolerance}, min_samples={self.min_samples})")

    # Backend hooks: one (statistic, p_value) per pair, in order.
    def _ks_tests(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
        raise NotImplementedError

    def _chi2_tests(self, pairs: Sequence[CategoricalPair]) -> list[tuple[float, float]]:
        raise NotImplementedError

    def compare(
        self,
        reference: Mapping[str, np.ndarray],
        current: Mapping[str, np.ndarray],
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        label: str | None = None,
    ) -> DriftReport:
        numeric, categorical = list(numeric), list(categorical)
        columns = numeric + categorical + ([label] if label is not None else [])
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ConfigError(f"columns listed more than once (numeric/categorical/label): {', '.join(dupes)}",
                              hint="each column is numeric, categorical or the label, not several")
        ref_cols = {c: _column(reference, c, "reference") for c in columns}
        cur_cols = {c: _column(current, c, "current") for c in columns}
        n_reference, n_current = _rows(ref_cols, columns, "reference"), _rows(cur_cols, columns, "current")

        tol, min_n = self.null_rate_tolerance, self.min_samples
        per_column: list[tuple[_Pending, list[FeatureDrift]]] = []
        ks_pending: list[_Pending] = []
        ks_pairs: list[tuple[np.ndarray, np.ndarray]] = []
        chi_pending: list[_Pending] = []
        chi_pairs: list[CategoricalPair] = []
        columns: dict[str, dict[str, Any]] = {}
        numeric_values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        category_counts: dict[str, tuple[tuple[Any, ...], np.ndarray, np.ndarray]] = {}

        for c in numeric:
            r, k = split_numeric(ref_cols[c]), split_numeric(cur_cols[c])
            n_ref, n_cur = r.finite.size, k.finite.size
            r_sorted, k_sorted = np.sort(r.finite), np.sort(k.finite)
            columns[c] = _causes.numeric_summary(_causes.numeric_side(r_sorted, r.n, r.nulls, r.inf),
                                                 _causes.numeric_side(k_sorted, k.n, k.nulls, k.inf))
            pend = _Pending(c, "numeric", "ks", {"n_ref": n_ref, "n_cur": n_cur})
            if min(n_ref, n_cur) < min_n:
                pend.detail["skipped"] = _SKIPPED
            else:
                ks_pending.append(pend)
                ks_pairs.append((r.finite, k.finite))
                numeric_values[c] = (r_sorted, k_sorted)
            checks = [
                share_check(c, "numeric", "null_rate", ref_count=r.nulls, n_ref=r.n, cur_count=k.nulls, n_cur=k.n,
                            tolerance=tol, min_samples=min_n),
                share_check(c, "numeric", "non_finite", ref_count=r.inf, n_ref=r.n, cur_count=k.inf, n_cur=k.n,
                            tolerance=tol, min_samples=min_n, new_is_drift=True,
                            extra={"ref_pos_inf": r.pos_inf, "ref_neg_inf": r.neg_inf,
                                   "cur_pos_inf": k.pos_inf, "cur_neg_inf": k.neg_inf}),
            ]
            per_column.append((pend, checks))

        for c in categorical + ([label] if label is not None else []):
            kind: Kind = "label" if c == label else "categorical"
            pair = encode_categorical(ref_cols[c], cur_cols[c])
            n_ref, n_cur = pair.codes_ref.size, pair.codes_cur.size
            pend = _Pending(c, kind, "chi2", {"n_ref": n_ref, "n_cur": n_cur, "categories": len(pair.categories)})
            counts = pair.table()
            columns[c] = _causes.categorical_summary(kind, pair.categories, counts[0], counts[1], pair.n_ref,
                                                     pair.n_cur, pair.nulls_ref, pair.nulls_cur)
            if min(n_ref, n_cur) < min_n:
                pend.detail["skipped"] = _SKIPPED
            else:
                pend.detail.update(_category_shift(pair))
                chi_pending.append(pend)
                chi_pairs.append(pair)
                category_counts[c] = (pair.categories, counts[0], counts[1])
            checks = [share_check(c, kind, "null_rate", ref_count=pair.nulls_ref, n_ref=pair.n_ref,
                                  cur_count=pair.nulls_cur, n_cur=pair.n_cur, tolerance=tol, min_samples=min_n)]
            per_column.append((pend, checks))

        for pend, (stat, p) in zip(ks_pending, self._ks_tests(ks_pairs) if ks_pairs else [], strict=True):
            pend.statistic, pend.p_value = float(stat), float(p)
        for pend, (stat, p) in zip(chi_pending, self._chi2_tests(chi_pairs) if chi_pairs else [], strict=True):
            pend.statistic, pend.p_value = float(stat), float(p)

        tested = ks_pending + chi_pending
        threshold, flags = correct([t.p_value for t in tested], self.alpha, self.correction)
        verdict = {id(t): bool(f) for t, f in zip(tested, flags, strict=True)}

        features: list[FeatureDrift] = []
        for pend, checks in per_column:
            pend.detail["tests_in_family"] = len(tested)
            features.append(FeatureDrift(pend.name, pend.kind, pend.test, pend.statistic, pend.p_value,
                                         threshold, verdict.get(id(pend), False), pend.detail))
            features.extend(checks)
        drifted: dict[str, set[str]] = {}
        for f in features:
            if f.drifted:
                drifted.setdefault(f.name, set()).add(f.test)
        found = _jsonable(_causes.find_causes(columns, drifted, numeric_values, category_counts, min_n))
        for name, col in columns.items():
            first = next((c for c in found if c["feature"] == name), None)
            col["likely_cause"] = None if first is None else {"cause": first["cause"], "evidence": first["evidence"]}
        return DriftReport(
            backend=self.name, drifted=any(f.drifted for f in features), correction=self.correction,
            alpha=self.alpha, n_reference=n_reference, n_current=n_current, features=tuple(features),
            columns=_jsonable(columns), likely_causes=tuple(found),
        )


def _category_shift(pair: CategoricalPair, max_new: int = 10) -> dict[str, Any]:
    """The category whose share moved most, and categories seen only in current (for the operator)."""
    table = pair.table()
    ref_share = table[0] / max(int(table[0].sum()), 1)
    cur_share = table[1] / max(int(table[1].sum()), 1)
    i = int(np.argmax(np.abs(cur_share - ref_share)))
    new = [str(pair.categories[j]) for j in np.flatnonzero((table[0] == 0) & (table[1] > 0))[:max_new]]
    return {"largest_shift": {"category": str(pair.categories[i]), "ref_share": float(ref_share[i]),
                              "cur_share": float(cur_share[i])},
            "new_categories": new}
