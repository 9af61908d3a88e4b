"""The alibi-detect backend agrees with the scipy backend, feature by feature.

Runs only where alibi-detect is installed: `make test-alibi` (its own venv, since alibi-detect pins numpy<2).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

pytestmark = pytest.mark.alibi
pytest.importorskip("alibi_detect", reason="alibi-detect is the optional [alibi] extra (BSL-1.1, numpy<2): installed only in .venv-alibi, where `make test` runs this file via `make test-alibi`")

from lifelong_cli.drift import DriftReport, get_detector  # noqa: E402
from lifelong_cli.drift.alibi_backend import AlibiDriftDetector  # noqa: E402

NUMERIC = ["x1", "x2", "x3"]
CATEGORICAL = ["color", "plan"]
LABEL = "y"
COLORS = np.array(["red", "green", "blue"], dtype=object)
PLANS = np.array(["free", "pro"], dtype=object)  # 2 categories: chi2 with Yates' correction


def sample(seed: int, n: int = 2000, *, color_p=(0.5, 0.3, 0.2), label_p=(0.6, 0.3, 0.1)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x1": rng.normal(0.0, 1.0, n),
        "x2": rng.lognormal(0.0, 0.5, n),
        "x3": np.round(rng.uniform(-1.0, 1.0, n), 2),  # ties
        "color": rng.choice(COLORS, size=n, p=list(color_p)),
        "plan": rng.choice(PLANS, size=n, p=[0.8, 0.2]),
        "y": rng.choice(np.array([0, 1, 2]), size=n, p=list(label_p)),
    }


def _mean_shift(r, c):
    c["x1"] = c["x1"] + 0.3


def _scale(r, c):
    c["x2"] = c["x2"] * 100


def _nan_burst(r, c):
    c["x2"][np.random.default_rng(5).choice(c["x2"].size, c["x2"].size // 20, replace=False)] = np.nan


def _inf_burst(r, c):
    c["x1"][:7] = np.inf
    c["x3"][:3] = -np.inf


def _category_share(r, c):
    c["color"] = np.random.default_rng(9).choice(COLORS, size=c["color"].size, p=[0.4, 0.3, 0.3])


def _new_category(r, c):
    c["color"][:80] = "purple"


def _category_nulls(r, c):
    c["plan"][:150] = None
    r["color"][:10] = None


def _label_flip(r, c):
    c["y"] = np.where(c["y"] == 2, 1, c["y"])


def _moderate_many(r, c):  # p-values near the thresholds: Bonferroni and FDR disagree here
    c["x1"] = c["x1"] + 0.08
    c["x3"] = np.round(c["x3"] + 0.04, 2)
    c["plan"][:60] = "pro"


def _several(r, c):
    c["x1"] = c["x1"] - 0.5
    c["x3"][:400] = np.nan
    c["y"][:300] = 2


def _nothing(r, c):
    pass


SCENARIOS: dict[str, tuple[int, Callable]] = {
    "no-drift-seed-1": (1, _nothing),
    "no-drift-seed-2": (2, _nothing),
    "no-drift-seed-3": (3, _nothing),
    "no-drift-seed-4": (4, _nothing),
    "mean-shift": (5, _mean_shift),
    "scale-x100": (6, _scale),
    "nan-burst-5pct": (7, _nan_burst),
    "inf-burst": (8, _inf_burst),
    "category-share": (9, _category_share),
    "new-category": (10, _new_category),
    "category-nulls": (11, _category_nulls),
    "label-flip": (12, _label_flip),
    "moderate-many": (13, _moderate_many),
    "several": (14, _several),
}


def _both(seed: int, mutate: Callable, correction: str, n_cur: int = 2000) -> tuple[DriftReport, DriftReport]:
    ref, cur = sample(seed), sample(1000 + seed, n=n_cur)
    mutate(ref, cur)
    kw = dict(numeric=NUMERIC, categorical=CATEGORICAL, label=LABEL)
    return (get_detector("scipy", correction=correction).compare(ref, cur, **kw),
            get_detector("alibi", correction=correction).compare(ref, cur, **kw))


def _assert_agree(s: DriftReport, a: DriftReport) -> None:
    assert a.backend == "alibi" and s.backend == "scipy"
    assert [(f.name, f.test) for f in a.features] == [(f.name, f.test) for f in s.features]
    for fs, fa in zip(s.features, a.features, strict=True):
        assert fa.drifted == fs.drifted, (fs, fa)
        assert fa.detail.get("skipped") == fs.detail.get("skipped")
        if fs.p_value is None:
            assert fa.p_value is None and fa.statistic == fs.statistic and fa.detail == fs.detail
        else:  # alibi-detect returns float32 p-values and statistics
            assert fa.p_value == pytest.approx(fs.p_value, abs=1e-6), fs.name
            assert fa.statistic == pytest.approx(fs.statistic, rel=1e-5, abs=1e-6), fs.name
        assert fa.threshold == pytest.approx(fs.threshold, rel=1e-5)
    assert a.drifted == s.drifted
    assert a.drifted_features() == s.drifted_features()


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_backends_agree(scenario, correction):
    seed, mutate = SCENARIOS[scenario]
    s, a = _both(seed, mutate, correction)
    _assert_agree(s, a)
    expected_drift = not scenario.startswith("no-drift")
    assert s.drifted == expected_drift, s.hint()


def test_moderate_scenario_separates_the_corrections():
    seed, mutate = SCENARIOS["moderate-many"]
    bonf, _ = _both(seed, mutate, "bonferroni")
    fdr, _ = _both(seed, mutate, "fdr")
    assert bonf.drifted_features() == ["plan"] and fdr.drifted_features() == ["x1", "plan"]


def test_ks_p_values_agree_to_1e_6_over_many_seeds():
    for seed in range(20):
        s, a = _both(100 + seed, _mean_shift if seed % 2 else _nothing, "bonferroni")
        ks_s = [f.p_value for f in s.features if f.test == "ks"]
        ks_a = [f.p_value for f in a.features if f.test == "ks"]
        assert len(ks_s) == 3 and np.allclose(ks_a, ks_s, rtol=0, atol=1e-6)


def test_too_few_samples_agree():
    s, a = _both(20, _mean_shift, "bonferroni", n_cur=25)
    _assert_agree(s, a)
    assert not a.drifted and all(f.detail.get("skipped") for f in a.features)


def test_get_detector_alibi():
    d = get_detector("alibi", alpha=0.01, correction="fdr")
    assert isinstance(d, AlibiDriftDetector) and d.name == "alibi" and d.alpha == 0.01
