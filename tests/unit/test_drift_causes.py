"""Per-column drift summaries (quantiles, null rates, ratio of medians, category shares) and the likely
cause named for a drifted column, on the default backend (the code is shared by every backend)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lifelong_cli.drift import DriftReport, get_detector
from lifelong_cli.drift.causes import quantile

COLORS = np.array(["red", "green", "blue"], dtype=object)


def sample(seed: int, n: int = 3000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "latency_ms": rng.lognormal(4.8, 0.5, n),
        "x1": rng.normal(0.0, 1.0, n),
        "x2": rng.normal(5.0, 2.0, n),
        "x3": rng.uniform(0.0, 10.0, n),
        "color": rng.choice(COLORS, size=n, p=[0.5, 0.3, 0.2]),
    }


NUMERIC = ["latency_ms", "x1", "x2", "x3"]


def compare(ref, cur, **opts) -> DriftReport:
    return get_detector("scipy", **opts).compare(ref, cur, numeric=NUMERIC, categorical=["color"])


def causes(report: DriftReport) -> dict[str, str]:
    """feature -> its strongest likely cause."""
    out: dict[str, str] = {}
    for c in report.likely_causes:
        out.setdefault(c["feature"], c["cause"])
    return out


# ------------------------------------------------------------------------------------------- summaries


def test_numeric_summary_has_reference_and_batch_quantiles_null_rate_and_ratios():
    ref, cur = sample(1), sample(2, n=800)
    cur["x2"] = cur["x2"] * 3
    cur["x3"][:200] = np.nan
    col = compare(ref, cur).columns["x2"]
    assert col["kind"] == "numeric"
    for side, values in (("reference", ref["x2"]), ("batch", cur["x2"])):
        for q in (1, 25, 50, 75, 99):
            assert col[side][f"p{q}"] == pytest.approx(np.percentile(values, q), rel=1e-12)
    assert col["median_ratio"] == pytest.approx(np.median(cur["x2"]) / np.median(ref["x2"]))
    assert col["iqr_ratio"] == pytest.approx(3.0, rel=0.15)
    x3 = compare(ref, cur).columns["x3"]
    assert (x3["reference"]["null_rate"], x3["batch"]["null_rate"]) == (0.0, 0.25)
    assert x3["batch"]["nulls"] == 200 and x3["batch"]["p50"] == pytest.approx(np.nanmedian(cur["x3"]))


def test_ratio_of_medians_is_none_when_the_reference_median_is_zero():
    ref = {"z": np.concatenate([np.zeros(600), np.arange(1.0, 401.0)])}
    cur = {"z": np.arange(1.0, 501.0)}
    col = get_detector("scipy").compare(ref, cur, numeric=["z"], categorical=[]).columns["z"]
    assert col["reference"]["p50"] == 0.0 and col["median_ratio"] is None
    assert col["iqr_ratio"] is not None


def test_quantile_of_sorted_values_matches_numpy_percentile():
    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 1000):
        x = np.sort(rng.normal(size=n))
        for q in (1, 25, 50, 75, 99):
            assert quantile(x, q) == pytest.approx(np.percentile(x, q), rel=1e-12, abs=1e-15)


def test_categorical_summary_has_top_shares_and_unseen_share():
    ref, cur = sample(1), sample(2, n=1000)
    cur["color"][:250] = "purple"
    col = compare(ref, cur).columns["color"]
    assert col["kind"] == "categorical"
    assert col["unseen_share"] == pytest.approx(0.25) and col["unseen"] == ["purple"]
    top = {t["category"]: t for t in col["top"]}
    assert top["red"]["reference"] == pytest.approx(np.mean(ref["color"] == "red"))
    assert top["purple"]["reference"] == 0.0 and top["purple"]["batch"] == pytest.approx(0.25)
    assert col["reference"]["categories"] == 3 and col["batch"]["categories"] == 4


def test_report_with_causes_round_trips_through_json():
    ref, cur = sample(1), sample(2, n=800)
    cur["latency_ms"] = cur["latency_ms"] / 1000
    report = compare(ref, cur)
    text = json.dumps(report.to_dict(), allow_nan=False)
    doc = json.loads(text)
    assert DriftReport.from_dict(doc) == report
    assert doc["likely_causes"][0]["feature"] == "latency_ms"
    assert doc["columns"]["latency_ms"]["likely_cause"]["cause"] == "unit_change"
    assert doc["columns"]["x1"]["likely_cause"] is None


def test_report_stored_before_summaries_still_loads_and_hints():
    ref, cur = sample(1), sample(2, n=800)
    cur["x1"] = cur["x1"] + 1
    doc = compare(ref, cur).to_dict()
    del doc["columns"], doc["likely_causes"]
    old = DriftReport.from_dict(doc)
    assert old.columns == {} and old.likely_causes == () and old.cause_for("x1") is None
    assert old.hint(7).startswith("feature x1 drifted (x1: KS p=")


# ------------------------------------------------------------------------------------------- unit change


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_times_1000_is_a_unit_change_with_a_unit_guess(seed):
    ref, cur = sample(seed), sample(seed + 10, n=500)
    cur["latency_ms"] = cur["latency_ms"] * 1000
    report = compare(ref, cur)
    assert causes(report) == {"latency_ms": "unit_change"}
    (c,) = report.likely_causes
    assert c["figures"]["factor"] == 1000.0
    assert c["evidence"].startswith("latency_ms: median ")
    assert "likely a unit change (microseconds instead of milliseconds?)" in c["evidence"]
    assert "likely a unit change ×1000" in report.hint()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_divided_by_10_is_a_unit_change(seed):
    ref, cur = sample(seed), sample(seed + 10, n=500)
    cur["x2"] = cur["x2"] / 10
    report = compare(ref, cur)
    assert causes(report) == {"x2": "unit_change"}
    assert report.likely_causes[0]["figures"]["factor"] == pytest.approx(0.1)


def test_zero_centred_column_times_1000_is_a_unit_change_though_its_median_ratio_is_noise():
    ref, cur = sample(1), sample(2, n=500)
    cur["x1"] = cur["x1"] * 1000
    report = compare(ref, cur)
    assert report.columns["x1"]["median_near_zero"] is True
    assert causes(report) == {"x1": "unit_change"}
    assert report.likely_causes[0]["figures"]["factor"] == 1000.0


def test_milliseconds_sent_as_seconds_is_named():
    ref, cur = sample(1), sample(2, n=500)
    cur["latency_ms"] = cur["latency_ms"] / 1000
    (c,) = compare(ref, cur).likely_causes
    assert c["cause"] == "unit_change" and "(seconds instead of milliseconds?)" in c["evidence"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("column", NUMERIC)
def test_seasonal_shift_of_one_sigma_is_not_named_a_unit_change(seed, column):
    ref, cur = sample(seed), sample(seed + 10, n=500)
    cur[column] = cur[column] + ref[column].std()
    report = compare(ref, cur)
    assert column in report.drifted_features()
    assert report.likely_causes == ()
    assert report.columns[column]["likely_cause"] is None


def test_shift_whose_ratio_of_medians_is_ten_is_not_a_unit_change():
    """The trap: a median of sigma/9 moved by one sigma is ten times larger, but the spread did not change."""
    rng = np.random.default_rng(5)
    ref = {"v": rng.normal(1 / 9, 1.0, 5000)}
    cur = {"v": rng.normal(1 / 9 + 1.0, 1.0, 2000)}
    report = get_detector("scipy").compare(ref, cur, numeric=["v"], categorical=[])
    assert report.drifted and report.columns["v"]["median_ratio"] == pytest.approx(10, rel=0.35)
    assert report.likely_causes == ()


def test_scale_change_of_one_and_a_half_is_not_a_unit_change():
    ref, cur = sample(1), sample(2, n=2000)
    cur["x2"] = cur["x2"] * 1.5
    report = compare(ref, cur)
    assert report.drifted_features() == ["x2"] and report.likely_causes == ()


# ------------------------------------------------------------------------------------------- constant


def test_constant_batch_column_is_a_stuck_feature():
    ref, cur = sample(1), sample(2, n=500)
    cur["x3"] = np.full(500, 3.0)
    report = compare(ref, cur)
    assert causes(report) == {"x3": "constant"}
    assert "all 500 batch values are 3" in report.likely_causes[0]["evidence"]


def test_near_zero_spread_is_a_stuck_feature():
    ref, cur = sample(1), sample(2, n=500)
    cur["x2"] = 5.0 + np.random.default_rng(0).normal(0, 1e-6, 500)
    assert causes(compare(ref, cur)) == {"x2": "constant"}


def test_constant_value_common_in_the_reference_is_not_named_stuck():
    """A column that is 0 in 95 % of the reference: 40 zeros in a row is chance, not a stuck feature."""
    rng = np.random.default_rng(2)
    ref = {"v": np.where(rng.random(5000) < 0.95, 0.0, rng.normal(5, 1, 5000))}
    cur = {"v": np.zeros(40)}
    report = get_detector("scipy").compare(ref, cur, numeric=["v"], categorical=[])
    assert all(c["cause"] != "constant" for c in report.likely_causes)


def test_categorical_stuck_on_one_category_is_constant():
    ref, cur = sample(1), sample(2, n=500)
    cur["color"] = np.full(500, "green", dtype=object)
    report = compare(ref, cur)
    assert causes(report) == {"color": "constant"}
    assert "every batch row is 'green'" in report.likely_causes[0]["evidence"]


# ------------------------------------------------------------------------------------------- swapped


def test_swapped_columns_are_named_with_each_other():
    ref, cur = sample(1), sample(2, n=500)
    cur["x2"], cur["x3"] = cur["x3"].copy(), cur["x2"].copy()
    cur["x1"] = cur["x1"] + 1.0  # an unrelated shift: not part of the swap
    report = compare(ref, cur)
    assert causes(report) == {"x2": "swapped_columns", "x3": "swapped_columns"}
    partners = {c["feature"]: c["with"] for c in report.likely_causes}
    assert partners == {"x2": "x3", "x3": "x2"}


def test_two_unrelated_shifts_are_not_swapped_columns():
    ref, cur = sample(1), sample(2, n=500)
    cur["x2"] = cur["x2"] + 2.0
    cur["x3"] = cur["x3"] - 3.0
    assert compare(ref, cur).likely_causes == ()


# ------------------------------------------------------------------------------------------- nulls, categories


def test_null_burst_is_named():
    ref, cur = sample(1), sample(2, n=500)
    cur["x2"][:200] = np.nan
    report = compare(ref, cur)
    assert causes(report) == {"x2": "null_burst"}
    assert "null rate 40.0% in the batch vs 0.0% in the reference" in report.likely_causes[0]["evidence"]


def test_null_rate_rise_from_an_already_high_rate_is_drift_but_not_a_burst():
    rng = np.random.default_rng(3)
    ref, cur = sample(1), sample(2, n=1000)
    ref["x3"][rng.random(3000) < 0.3] = np.nan
    cur["x3"][rng.random(1000) < 0.4] = np.nan
    report = compare(ref, cur)
    assert "x3" in report.drifted_features()
    assert "null_burst" not in causes(report).values()


def test_mostly_unseen_categories_are_remapped():
    ref, cur = sample(1), sample(2, n=500)
    cur["color"] = np.array([c.upper() for c in cur["color"]], dtype=object)
    report = compare(ref, cur)
    assert causes(report) == {"color": "categories_remapped"}
    assert "100% of batch rows have categories the reference never had" in report.likely_causes[0]["evidence"]


def test_permuted_shares_are_remapped_categories():
    ref, cur = sample(1), sample(2, n=1000)
    swap = {"red": "green", "green": "blue", "blue": "red"}
    cur["color"] = np.array([swap[c] for c in cur["color"]], dtype=object)
    assert causes(compare(ref, cur)) == {"color": "categories_remapped"}


def test_moderate_category_share_change_has_no_cause():
    rng = np.random.default_rng(7)
    ref, cur = sample(1), sample(2, n=2000)
    cur["color"] = rng.choice(COLORS, size=2000, p=[0.4, 0.35, 0.25])
    report = compare(ref, cur)
    assert report.drifted_features() == ["color"] and report.likely_causes == ()


def test_several_causes_in_one_batch():
    ref, cur = sample(1), sample(2, n=500)
    cur["latency_ms"] = cur["latency_ms"] * 1000
    cur["x2"][:300] = np.nan
    cur["x3"] = np.full(500, 1.0)
    cur["color"] = np.array([c.upper() for c in cur["color"]], dtype=object)
    assert causes(compare(ref, cur)) == {"latency_ms": "unit_change", "x2": "null_burst", "x3": "constant",
                                         "color": "categories_remapped"}


def test_too_few_samples_names_no_cause():
    ref, cur = sample(1), sample(2, n=20)
    cur["latency_ms"] = cur["latency_ms"] * 1000
    report = compare(ref, cur)
    assert report.likely_causes == ()
    assert report.columns["latency_ms"]["median_ratio"] == pytest.approx(1000, rel=0.5)


def test_many_drifted_wide_columns_stay_fast():
    """The swapped-columns search compares every pair of drifted columns: on sketches, not on all rows."""
    import time

    rng = np.random.default_rng(0)
    names = [f"w{i}" for i in range(20)]
    ref = {n: rng.normal(size=100_000) for n in names}
    cur = {n: rng.normal(loc=1.0, size=100_000) for n in names}
    detector = get_detector("scipy")
    t0 = time.perf_counter()
    report = detector.compare(ref, cur, numeric=names, categorical=[])
    assert time.perf_counter() - t0 < 4.0
    assert len(report.drifted_features()) == 20 and report.likely_causes == ()
