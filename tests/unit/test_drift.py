"""Drift detection, default (scipy) backend, plus the shared code every backend uses."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lifelong_cli.drift import BACKENDS, DriftDetector, DriftReport, get_detector
from lifelong_cli.drift.base import correct, encode_categorical
from lifelong_cli.drift.scipy_backend import (
    ScipyDriftDetector,
    chi2_homogeneity,
    chi2_sf,
    kolmogorov_sf,
    ks_pvalues,
    ks_statistic,
    smirnov_sf,
)
from lifelong_cli.errors import ConfigError, InvalidInputError, UnavailableError

NUMERIC = ["x1", "x2", "x3"]
CATEGORICAL = ["color"]
LABEL = "y"
COLORS = np.array(["red", "green", "blue"], dtype=object)


def sample(seed: int, n: int = 2000, *, color_p=(0.5, 0.3, 0.2), label_p=(0.6, 0.3, 0.1)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x1": rng.normal(0.0, 1.0, n),
        "x2": rng.lognormal(0.0, 0.5, n),
        "x3": rng.uniform(-1.0, 1.0, n),
        "color": rng.choice(COLORS, size=n, p=list(color_p)),
        "y": rng.choice(np.array([0, 1, 2]), size=n, p=list(label_p)),
    }


def compare(ref, cur, **opts) -> DriftReport:
    return get_detector("scipy", **opts).compare(ref, cur, numeric=NUMERIC, categorical=CATEGORICAL, label=LABEL)


def result(report: DriftReport, name: str, test: str):
    (r,) = [f for f in report.features if f.name == name and f.test == test]
    return r


# ------------------------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_same_distribution_is_not_drift(seed, correction):
    report = compare(sample(100 + seed), sample(200 + seed), correction=correction)
    assert not report.drifted, report.hint()
    assert report.drifted_features() == []
    assert report.hint().startswith("no drift in 5 columns")
    assert {(f.name, f.test) for f in report.features} == {
        *((c, t) for c in NUMERIC for t in ("ks", "null_rate", "non_finite")),
        ("color", "chi2"), ("color", "null_rate"), ("y", "chi2"), ("y", "null_rate"),
    }


def test_mean_shift():
    ref, cur = sample(1), sample(2)
    cur["x1"] = cur["x1"] + 0.5
    report = compare(ref, cur)
    assert report.drifted and report.drifted_features() == ["x1"]
    ks = result(report, "x1", "ks")
    assert ks.drifted and ks.p_value < ks.threshold == pytest.approx(0.05 / 5)
    assert ks.kind == "numeric" and ks.statistic > 0.15


def test_scale_change_x100():
    ref, cur = sample(1), sample(2)
    cur["x3"] = cur["x3"] * 100  # same mean (0), same sign pattern: a mean check would miss it
    report = compare(ref, cur)
    assert report.drifted_features() == ["x3"]
    assert result(report, "x3", "ks").drifted


def test_five_percent_nan_burst_is_flagged():
    ref, cur = sample(1), sample(2)
    burst = np.random.default_rng(7).choice(cur["x2"].size, size=cur["x2"].size // 20, replace=False)
    cur["x2"][burst] = np.nan  # exactly 5% missing at random: the KS test on the rest sees nothing
    report = compare(ref, cur)
    assert report.drifted_features() == ["x2"]
    assert not result(report, "x2", "ks").drifted
    nulls = result(report, "x2", "null_rate")
    assert nulls.drifted and nulls.p_value is None and nulls.threshold == 0.05
    assert nulls.detail["cur_rate"] == pytest.approx(0.05) and nulls.detail["ref_rate"] == 0.0
    assert nulls.detail["cur_count"] == 100 and nulls.detail["n_cur"] == 2000
    assert "null rate 0.0% -> 5.0%" in report.hint()


def test_null_rate_rise_below_tolerance_is_not_drift():
    ref, cur = sample(1), sample(2)
    ref["x2"][:20] = np.nan  # 1%
    cur["x2"][:60] = np.nan  # 3%: +2 points < 5
    report = compare(ref, cur)
    assert not report.drifted


def test_null_rate_rise_measured_against_reference_rate():
    ref, cur = sample(1), sample(2)
    ref["x2"][:20] = np.nan  # 1%
    cur["x2"][:120] = np.nan  # 6%: +5 points (0.06 - 0.01 is 0.04999... in floating point)
    assert result(compare(ref, cur), "x2", "null_rate").drifted


def test_all_null_column_is_flagged_though_ks_cannot_run():
    ref, cur = sample(1), sample(2)
    cur["x1"][:] = np.nan
    report = compare(ref, cur)
    assert report.drifted_features() == ["x1"]
    ks = result(report, "x1", "ks")
    assert not ks.drifted and ks.detail["skipped"] == "too few samples" and ks.p_value is None
    assert result(report, "x1", "null_rate").drifted


def test_inf_burst_is_flagged():
    ref, cur = sample(1), sample(2)
    cur["x1"][:5] = np.inf  # 0.25%: far below the tolerance, but reference had none
    cur["x1"][5:7] = -np.inf
    report = compare(ref, cur)
    assert report.drifted_features() == ["x1"]
    inf = result(report, "x1", "non_finite")
    assert inf.drifted and inf.detail["new_in_current"]
    assert (inf.detail["cur_pos_inf"], inf.detail["cur_neg_inf"], inf.detail["ref_count"]) == (5, 2, 0)
    assert not result(report, "x1", "ks").drifted  # KS runs on the finite values
    assert not result(report, "x1", "null_rate").drifted  # ±Inf is not null


def test_inf_share_rising_by_tolerance_is_flagged_and_steady_share_is_not():
    ref, cur = sample(1), sample(2)
    ref["x1"][:20] = np.inf  # 1%
    cur["x1"][:20] = np.inf  # 1%: steady
    assert not compare(ref, cur).drifted
    cur["x1"][:140] = np.inf  # 7%
    assert compare(ref, cur).drifted_features() == ["x1"]
    assert result(compare(ref, cur), "x1", "non_finite").detail.get("new_in_current") is None


def test_category_share_change():
    report = compare(sample(1), sample(2, color_p=(0.4, 0.3, 0.3)))
    assert report.drifted_features() == ["color"]
    chi = result(report, "color", "chi2")
    assert chi.kind == "categorical" and chi.drifted
    assert chi.detail["largest_shift"]["category"] in {"red", "blue"}


def test_category_only_in_current_counts():
    ref, cur = sample(1), sample(2)
    cur["color"][:100] = "purple"  # 5% of a new category
    report = compare(ref, cur)
    chi = result(report, "color", "chi2")
    assert chi.drifted and chi.detail["new_categories"] == ["purple"] and chi.detail["categories"] == 4


def test_category_absent_from_current_is_fine():
    ref, cur = sample(1), sample(2)
    ref["color"][:3] = "purple"  # rare category in reference only: still a valid (non-degenerate) table
    assert not compare(ref, cur).drifted


def test_categorical_nulls_count_as_null_rate_not_as_a_category():
    ref, cur = sample(1), sample(2)
    cur["color"][:200] = None  # 10%
    report = compare(ref, cur)
    assert report.drifted_features() == ["color"]
    assert result(report, "color", "null_rate").drifted
    chi = result(report, "color", "chi2")
    assert not chi.drifted and chi.detail["n_cur"] == 1800 and chi.detail["categories"] == 3


def test_label_flip_of_one_class():
    ref, cur = sample(1), sample(2)
    cur["y"] = np.where(cur["y"] == 2, 1, cur["y"])  # class 2 relabelled as 1
    report = compare(ref, cur)
    assert report.drifted_features() == ["y"]
    chi = result(report, "y", "chi2")
    assert chi.kind == "label" and chi.drifted
    assert chi.detail["largest_shift"]["category"] in {"1", "2"}
    assert "`llctl drift --batch 9`" in report.hint(9)


def test_several_features_and_hint():
    ref, cur = sample(1), sample(2)
    cur["x1"] = cur["x1"] + 1
    cur["x3"][:300] = np.nan
    report = compare(ref, cur)
    assert report.drifted_features() == ["x1", "x3"]
    hint = report.hint(42)
    assert hint.startswith("features x1, x3 drifted (x1: KS p=")
    assert "x3: null rate 0.0% -> 15.0%" in hint
    assert hint.endswith("inspect with `llctl drift --batch 42`; if the upstream is broken, "
                         "`llctl purge-data --batch 42`")
    assert "\n" not in hint
    assert "<batch>" in report.hint()


# ------------------------------------------------------------------------------------------- correction


def test_correct_bonferroni_and_fdr_by_hand():
    p = [0.001, 0.008, 0.012, 0.04, 0.5]
    thr, flags = correct(p, 0.05, "bonferroni")
    assert thr == pytest.approx(0.01) and flags.tolist() == [True, True, False, False, False]
    thr, flags = correct(p, 0.05, "fdr")  # 0.001<.01, 0.008<.02, 0.012<.03, 0.04 not < .04
    assert thr == pytest.approx(0.03) and flags.tolist() == [True, True, True, False, False]
    thr, flags = correct([0.2, 0.9], 0.05, "fdr")
    assert thr == pytest.approx(0.025) and not flags.any()
    assert correct([], 0.05, "fdr")[0] == 0.05


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-9, max_value=1.0), min_size=1, max_size=30),
       st.sampled_from([0.01, 0.05, 0.1]))
def test_fdr_matches_scipy_benjamini_hochberg(p, alpha):
    p_sorted = np.sort(p)
    bounds = alpha * np.arange(1, len(p) + 1) / len(p)
    assume(np.min(np.abs(p_sorted[:, None] - bounds[None, :])) > 1e-12)  # no p on a step boundary
    _, flags = correct(p, alpha, "fdr")
    assert flags.tolist() == (scipy.stats.false_discovery_control(p, method="bh") <= alpha).tolist()
    _, bonf = correct(p, alpha, "bonferroni")
    assert not (bonf & ~flags).any()  # BH rejects everything Bonferroni does


def _moderate_shift_data():
    rng = np.random.default_rng(11)
    names = [f"f{i}" for i in range(10)]
    ref = {n: rng.normal(size=3000) for n in names}
    cur = {n: rng.normal(loc=0.1 if i < 5 else 0.0, size=3000) for i, n in enumerate(names)}
    return names, ref, cur


def test_fdr_flags_more_than_bonferroni_on_many_moderate_shifts():
    names, ref, cur = _moderate_shift_data()
    bonf = get_detector("scipy", correction="bonferroni").compare(ref, cur, numeric=names, categorical=[])
    fdr = get_detector("scipy", correction="fdr").compare(ref, cur, numeric=names, categorical=[])
    assert bonf.correction == "bonferroni" and fdr.correction == "fdr"
    assert set(bonf.drifted_features()) < set(fdr.drifted_features())
    assert set(fdr.drifted_features()) <= {f"f{i}" for i in range(5)}
    ks_b = [f for f in bonf.features if f.test == "ks"]
    ks_f = [f for f in fdr.features if f.test == "ks"]
    assert all(f.threshold == pytest.approx(0.05 / 10) for f in ks_b)
    assert ks_f[0].threshold > ks_b[0].threshold
    assert [f.p_value for f in ks_b] == [f.p_value for f in ks_f]


def test_family_is_all_ks_and_chi2_tests_that_ran():
    ref, cur = sample(1), sample(2)
    cur["x1"][:] = np.nan  # its KS is skipped: 4 tests remain
    report = compare(ref, cur)
    assert result(report, "x2", "ks").threshold == pytest.approx(0.05 / 4)
    assert result(report, "color", "chi2").detail["tests_in_family"] == 4


# ------------------------------------------------------------------------------------------- small samples


def test_too_few_samples_is_skipped_not_drift():
    ref, cur = sample(1, n=500), sample(2, n=20)
    cur["x1"] = cur["x1"] + 10
    cur["x2"][:10] = np.nan
    report = compare(ref, cur)
    assert not report.drifted
    assert all(f.detail.get("skipped") == "too few samples" and not f.drifted for f in report.features)
    assert report.n_reference == 500 and report.n_current == 20
    assert "not tested (too few samples): x1, x2, x3, color, y" in report.hint()


def test_min_samples_is_configurable():
    ref, cur = sample(1, n=500), sample(2, n=20)
    cur["x1"] = cur["x1"] + 10
    report = compare(ref, cur, min_samples=10)
    assert report.drifted_features() == ["x1"]


# ------------------------------------------------------------------------------------------- the KS/chi2 numbers


# The backend computes these numbers without scipy; scipy.stats is the reference here. Both compute the same
# quantities (no approximation on one side only), so the agreement is to rounding: p-values within 1e-9
# absolute everywhere (the target is 1e-6 below p = 0.2 and 1e-3 above) and 1e-8 relative above 1e-300.
P_ABS, P_REL = 1e-9, 1e-8


def assert_p_close(mine: float, ref: float, what) -> None:
    assert abs(mine - ref) <= P_ABS, (what, mine, ref)
    if ref > 1e-300:
        assert abs(mine - ref) <= P_REL * ref, (what, mine, ref)
    else:
        assert mine <= 1e-290, (what, mine, ref)


@pytest.mark.parametrize("n1,n2,decimals", [
    (2000, 2000, None), (150, 4000, None), (3000, 700, 1), (40, 60, 0), (30, 30, None), (30, 31, 1),
    (5, 7, None), (1, 40, None), (2, 2, None), (100_000, 100_000, 2), (250_000, 7, None),
])
def test_ks_matches_scipy_ks_2samp_asymp(n1, n2, decimals):
    rng = np.random.default_rng(n1 + n2)
    for shift in (0.0, 0.05, 0.3, 1.0, 5.0):
        a, b = rng.normal(size=n1), rng.normal(loc=shift, size=n2)
        if decimals is not None:  # heavy ties, also across the two samples
            a, b = np.round(a, decimals), np.round(b, decimals)
        ref = scipy.stats.ks_2samp(a, b, method="asymp")
        d = ks_statistic(a, b)
        assert d == ref.statistic
        assert_p_close(ks_pvalues([d], [(n1, n2)])[0], ref.pvalue, (n1, n2, shift))


def test_ks_identical_and_disjoint_samples():
    a = np.arange(50.0)
    d = ks_statistic(a, a.copy())
    assert d == 0.0 and ks_pvalues([d], [(50, 50)])[0] == 1.0 == scipy.stats.ks_2samp(a, a, method="asymp").pvalue
    d = ks_statistic(a, a + 100)
    ref = scipy.stats.ks_2samp(a, a + 100, method="asymp")
    assert d == 1.0 == ref.statistic and ks_pvalues([d], [(50, 50)])[0] == ref.pvalue == 0.0
    assert ks_pvalues([0.5], [(1, 1)])[0] == 1.0  # round(1*1/2) == 0 observations: no evidence (scipy: nan)


def _sweep_points(n: int) -> np.ndarray:
    """d across the whole range for D_n, denser where the method changes (and on both sides of each switch)."""
    z = np.concatenate([np.linspace(0.02, 3.0, 45), np.linspace(3.2, 27.0, 8)])
    grid = np.concatenate([z / np.sqrt(n), np.linspace(0.0, 1.0, 21), (np.arange(0, 11) * max(1, n // 10) + 0.5) / n])
    switches = np.array([0.5 / n, 1.0 / n, 1.0 - 1.0 / n, 0.5, (1.4 / n) ** (2 / 3), np.sqrt(2.2 / n), np.sqrt(4.0 / n)])
    switches = switches[(switches > 0) & (switches < 1)]
    grid = np.concatenate([grid, switches, switches * (1 - 1e-9), switches * (1 + 1e-9), [0.0, 1.0]])
    return np.unique(np.clip(grid, 0.0, 1.0))


KS_SWEEP_N = [1, 2, 3, 5, 10, 29, 30, 31, 64, 100, 139, 140, 141, 200, 1000, 5000, 31_623, 100_000, 100_001,
              1_000_000]


@pytest.mark.parametrize("n", KS_SWEEP_N)
def test_kolmogorov_sf_matches_scipy_kstwo_sf(n):
    worst = 0.0
    for d in _sweep_points(n):
        # scipy's exact Smirnov sum (the upper tail) is O(n), seconds a point at 10^6: a few points there
        heavy = d * d * n >= (2.2 if n <= 100_001 else 2.1)
        if n >= 20_000 and heavy and not np.isclose(d, [3.2 / np.sqrt(n), 0.5, 0.75, 1 - 1 / n]).any():
            continue
        ref = float(scipy.stats.kstwo.sf(d, n))
        mine = kolmogorov_sf(float(d), n)
        assert_p_close(mine, ref, (n, d))
        worst = max(worst, abs(mine - ref))
    assert worst <= P_ABS


def test_smirnov_sf_is_the_exact_one_sided_probability():
    for n in (1, 2, 7, 30, 140, 1000, 20_000):
        for z in (0.1, 0.5, 1.0, 1.5, 3.0, 8.0):
            d = min(z / np.sqrt(n), 0.999)
            assert_p_close(smirnov_sf(n, float(d)), float(scipy.special.smirnov(n, d)), (n, d))
    assert smirnov_sf(10, 0.0) == 1.0 and smirnov_sf(10, 1.0) == 0.0


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 10, 29, 100, 1001, 20_000])
def test_chi2_sf_matches_scipy(dof):
    for x in np.concatenate([[0.0, 1e-12, 1e-3], np.linspace(0.1, 3 * dof + 60, 120),
                             dof + np.sqrt(2 * dof) * np.linspace(-4, 30, 60)]):
        if x >= 0:
            assert_p_close(chi2_sf(float(x), dof), float(scipy.stats.chi2.sf(x, dof)), (dof, x))
    assert chi2_sf(np.inf, 3) == 0.0


def test_chi2_homogeneity_matches_chi2_contingency_sweep():
    rng = np.random.default_rng(5)
    tables = [
        [[10, 0], [0, 10]], [[1, 1], [1, 1]], [[3, 4], [4, 3]],  # k == 2 (Yates), incl. |o - e| < 0.5
        [[30, 31], [31, 30]], [[5, 0], [0, 1]], [[1000, 1], [1, 1000]], [[50_000, 1], [49_999, 2]],
        [[7], [9]], [[100_000], [3]],  # one category: dof 0
        [[1, 2, 3], [3, 2, 1]], [[0, 5, 5], [5, 0, 5]],
    ]
    for i in range(300):
        k = 2 if i % 4 == 0 else int(rng.integers(2, 40))
        n = int(10 ** rng.uniform(1, 6))
        p_ref = rng.dirichlet(np.ones(k))
        p_cur = p_ref if i % 2 else rng.dirichlet(np.ones(k))
        t = np.vstack([rng.multinomial(n, p_ref), rng.multinomial(int(n * rng.uniform(0.1, 3)) + 1, p_cur)])
        tables.append(t[:, t.sum(axis=0) > 0].tolist())
    for t in tables:
        stat, p = chi2_homogeneity(np.array(t))
        ref = scipy.stats.chi2_contingency(t)
        assert stat == pytest.approx(ref.statistic, rel=1e-12, abs=1e-12), t
        assert_p_close(p, float(ref.pvalue), t)
    assert chi2_homogeneity(np.array([[7], [9]])) == (0.0, 1.0)


def test_chi2_matches_chi2_contingency():
    ref, cur = sample(1), sample(2, color_p=(0.45, 0.3, 0.25))
    report = compare(ref, cur)
    table = [[np.sum(ref["color"] == c) for c in COLORS], [np.sum(cur["color"] == c) for c in COLORS]]
    expected = scipy.stats.chi2_contingency(table)
    chi = result(report, "color", "chi2")
    assert chi.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert_p_close(chi.p_value, expected.pvalue, table)


def test_chi2_two_categories_uses_yates_like_scipy():
    ref = {"plan": np.array(["free"] * 160 + ["pro"] * 40, dtype=object)}
    cur = {"plan": np.array(["free"] * 140 + ["pro"] * 60, dtype=object)}
    chi = result(get_detector("scipy").compare(ref, cur, numeric=[], categorical=["plan"]), "plan", "chi2")
    expected = scipy.stats.chi2_contingency([[160, 40], [140, 60]])  # correction=True: Yates
    assert chi.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert chi.statistic < scipy.stats.chi2_contingency([[160, 40], [140, 60]], correction=False).statistic
    assert_p_close(chi.p_value, expected.pvalue, "plan")


def test_single_category_is_not_drift():
    ref = {"c": np.array(["a"] * 100, dtype=object)}
    cur = {"c": np.array(["a"] * 80, dtype=object)}
    report = get_detector("scipy").compare(ref, cur, numeric=[], categorical=["c"])
    assert not report.drifted and result(report, "c", "chi2").p_value == 1.0


def test_encode_categorical_union_and_nulls():
    pair = encode_categorical(np.array(["a", "b", None, "a"], dtype=object),
                              np.array(["c", float("nan"), "a"], dtype=object))
    assert pair.categories == ("a", "b", "c")
    assert (pair.nulls_ref, pair.nulls_cur, pair.n_ref, pair.n_cur) == (1, 1, 4, 3)
    assert pair.table().tolist() == [[2, 1, 0], [1, 0, 1]]
    mixed = encode_categorical(np.array([1, "1", 2], dtype=object), np.array([2, 2], dtype=np.int64))
    by_category = dict(zip(mixed.categories, mixed.table().T.tolist(), strict=True))
    assert by_category == {1: [1, 0], "1": [1, 0], 2: [1, 2]}  # 1 and "1" stay distinct categories


# ------------------------------------------------------------------------------------------- API


def test_get_detector_unknown_backend_is_config_error():
    with pytest.raises(ConfigError) as e:
        get_detector("nope")
    assert "scipy, alibi" in e.value.hint and e.value.exit_code == 6


@pytest.mark.parametrize("opts", [{"bogus": 1}, {"correction": "holm"}, {"alpha": 0.0}, {"alpha": 1.5},
                                  {"null_rate_tolerance": -0.1}, {"min_samples": 0}])
def test_get_detector_bad_options_are_config_errors(opts):
    with pytest.raises(ConfigError):
        get_detector("scipy", **opts)


def test_alibi_missing_is_unavailable_with_install_hint(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "alibi_detect" else real(name, *a))
    with pytest.raises(UnavailableError) as e:
        get_detector("alibi")
    assert e.value.exit_code == 7
    assert e.value.hint.startswith("pip install 'llctl[alibi]' (alibi-detect is BSL-1.1 licensed")


def test_detector_protocol_and_defaults():
    d = get_detector("scipy")
    assert isinstance(d, ScipyDriftDetector) and isinstance(d, DriftDetector)
    assert (d.name, d.alpha, d.correction, d.null_rate_tolerance, d.min_samples) == ("scipy", 0.05, "bonferroni",
                                                                                       0.05, 30)
    assert BACKENDS == ("scipy", "alibi")


def test_report_to_dict_is_json_and_round_trips():
    ref, cur = sample(1), sample(2)
    cur["x1"] = cur["x1"] + 1
    cur["x2"][:4] = np.inf
    cur["color"][:150] = None
    report = compare(ref, cur, correction="fdr")
    d = report.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d
    assert d["drifted_features"] == ["x1", "x2", "color"]
    assert d["backend"] == "scipy" and d["correction"] == "fdr" and d["drifted"] is True
    assert DriftReport.from_dict(json.loads(text)) == report
    assert all(type(f["statistic"]) is float for f in d["features"])


def test_reports_are_frozen():
    report = compare(sample(1), sample(2))
    with pytest.raises(AttributeError):
        report.drifted = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        report.features[0].p_value = 0.0  # type: ignore[misc]


def test_missing_column_is_invalid_input():
    ref, cur = sample(1), sample(2)
    del cur["x2"]
    with pytest.raises(InvalidInputError, match="'x2' is missing from the current data"):
        compare(ref, cur)


def test_column_listed_twice_is_config_error():
    ref, cur = sample(1), sample(2)
    with pytest.raises(ConfigError, match="x1"):
        get_detector("scipy").compare(ref, cur, numeric=["x1"], categorical=["x1"])


def test_unequal_column_lengths_is_invalid_input():
    ref, cur = sample(1), sample(2)
    cur["x1"] = cur["x1"][:-1]
    with pytest.raises(InvalidInputError, match="different lengths"):
        compare(ref, cur)


def test_int_numeric_columns_and_no_columns():
    ref = {"n": np.arange(100)}
    cur = {"n": np.arange(100) + 50}
    assert get_detector("scipy").compare(ref, cur, numeric=["n"], categorical=[]).drifted
    empty = get_detector("scipy").compare({}, {}, numeric=[], categorical=[])
    assert not empty.drifted and empty.features == () and empty.n_reference == 0


def test_importing_drift_does_not_import_scipy():
    code = ("import sys, lifelong_cli.drift as d; d.get_detector('scipy'); "
            "assert 'scipy' not in sys.modules, 'scipy imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_detector_does_not_import_scipy_stats():
    """`import scipy.stats` alone costs 0.5-1 s of a fresh process: the default backend's numbers are its own."""
    code = (
        "import sys, numpy as np, lifelong_cli.drift.scipy_backend as m\n"
        "rng = np.random.default_rng(0)\n"
        "ref = {'x': rng.normal(size=500), 'c': rng.choice(np.array(['a', 'b', 'c'], dtype=object), 500),"
        " 'k': rng.choice(np.array(['u', 'v'], dtype=object), 500)}\n"
        "cur = {'x': rng.normal(0.5, size=400), 'c': rng.choice(np.array(['a', 'b'], dtype=object), 400),"
        " 'k': rng.choice(np.array(['u', 'v'], dtype=object), 400)}\n"
        "r = m.ScipyDriftDetector().compare(ref, cur, numeric=['x'], categorical=['c'], label='k')\n"
        "assert r.drifted and all(f.p_value is not None for f in r.features if f.test in ('ks', 'chi2'))\n"
        "print('scipy.stats' in sys.modules, any(k == 'scipy' or k.startswith('scipy.') for k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "False"], out


def test_wide_batch_runs_columns_in_parallel_with_the_same_numbers():
    rng = np.random.default_rng(3)
    names = [f"w{i}" for i in range(4)]
    ref = {n: rng.normal(size=60_000) for n in names}
    cur = {n: rng.normal(loc=0.02 * i, size=50_000) for i, n in enumerate(names)}
    report = get_detector("scipy").compare(ref, cur, numeric=names, categorical=[])
    for n in names:
        expected = scipy.stats.ks_2samp(ref[n], cur[n], method="asymp")
        ks = result(report, n, "ks")
        assert ks.statistic == expected.statistic
        assert_p_close(ks.p_value, expected.pvalue, n)


def test_100k_by_20_numeric_is_fast():
    """Regression guard (typically ~0.17 s here; no scipy import any more); the bound is loose."""
    import time

    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(20)]
    ref = {n: rng.normal(size=100_000) for n in names}
    cur = {n: rng.normal(size=100_000) for n in names}
    detector = get_detector("scipy")
    detector.compare({"a": ref["x0"][:100]}, {"a": cur["x0"][:100]}, numeric=["a"], categorical=[])  # imports
    t0 = time.perf_counter()
    report = detector.compare(ref, cur, numeric=names, categorical=[])
    assert time.perf_counter() - t0 < 2.0
    assert len(report.features) == 60
