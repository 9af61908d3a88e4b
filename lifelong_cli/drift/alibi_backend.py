"""Optional drift backend on alibi-detect's ``KSDrift`` and ``ChiSquareDrift``.

alibi-detect is BSL-1.1 licensed (no production use without a commercial licence) and pins numpy<2, so it
is an extra (``llctl[alibi]``), never the default, and is imported only when this backend runs.

What comes from alibi-detect: the per-feature KS and chi-square statistics and p-values. Columns with the
same row counts (after dropping nulls / non-finite values) go to one multivariate detector, with our
correction name passed through. What does not: the null-rate and non-finite checks, the category encoding,
the too-few-samples skip and the multiple-testing correction are the shared code in
``lifelong_cli.drift.base``. The correction runs over *all* KS and chi-square tests of the report, while
alibi-detect's own ``is_drift`` corrects within one detector only, so the verdict is taken from the shared
correction applied to alibi-detect's p-values: that is what makes both backends agree per feature.

alibi-detect returns float32 p-values; they match scipy's to ~1e-7.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from lifelong_cli.drift.base import BaseDriftDetector, CategoricalPair
from lifelong_cli.errors import UnavailableError

ALIBI_HINT = (
    "pip install 'llctl[alibi]' (alibi-detect is BSL-1.1 licensed: no production use without a commercial "
    "licence; it also pins numpy<2, so use a separate venv: `make test-alibi` builds .venv-alibi), "
    "or use the default backend: drift.backend: scipy"
)

# Our correction names -> alibi-detect's (the same words).
ALIBI_CORRECTION = {"bonferroni": "bonferroni", "fdr": "fdr"}


def _unavailable(cause: BaseException | None = None) -> UnavailableError:
    why = f" ({cause})" if cause else ""
    return UnavailableError(f"the 'alibi' drift backend needs alibi-detect, which is not importable{why}",
                            hint=ALIBI_HINT)


def _cd() -> Any:
    try:
        import alibi_detect.cd as cd
    except ImportError as e:  # installed but broken (e.g. next to numpy 2) is as good as absent
        raise _unavailable(e) from e
    return cd


def _groups(sizes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, size in enumerate(sizes):
        groups[size].append(i)
    return groups


class AlibiDriftDetector(BaseDriftDetector):
    """``AlibiDriftDetector(alpha=0.05, correction="bonferroni"|"fdr", null_rate_tolerance=0.05, min_samples=30)``.

    Raises ``UnavailableError`` when alibi-detect is not installed."""

    name = "alibi"

    def __init__(self, alpha: float = 0.05, correction: str = "bonferroni", null_rate_tolerance: float = 0.05,
                 min_samples: int = 30) -> None:
        super().__init__(alpha=alpha, correction=correction, null_rate_tolerance=null_rate_tolerance,
                         min_samples=min_samples)
        if importlib.util.find_spec("alibi_detect") is None:
            raise _unavailable()

    def _predict(self, detector: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        data = detector.predict(x, drift_type="batch", return_p_val=True, return_distance=True)["data"]
        return np.asarray(data["distance"], dtype=np.float64), np.asarray(data["p_val"], dtype=np.float64)

    def _ks_tests(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
        cd = _cd()
        out: list[tuple[float, float]] = [(0.0, 1.0)] * len(pairs)
        for idx in _groups([(a.size, b.size) for a, b in pairs]).values():
            x_ref = np.column_stack([pairs[i][0] for i in idx])
            x_cur = np.column_stack([pairs[i][1] for i in idx])
            detector = cd.KSDrift(x_ref, p_val=self.alpha, correction=ALIBI_CORRECTION[self.correction])
            dist, p = self._predict(detector, x_cur)
            for j, i in enumerate(idx):
                out[i] = (float(dist[j]), float(p[j]))
        return out

    def _chi2_tests(self, pairs: Sequence[CategoricalPair]) -> list[tuple[float, float]]:
        cd = _cd()
        out: list[tuple[float, float]] = [(0.0, 1.0)] * len(pairs)
        for idx in _groups([(p.codes_ref.size, p.codes_cur.size) for p in pairs]).values():
            x_ref = np.column_stack([pairs[i].codes_ref for i in idx])
            x_cur = np.column_stack([pairs[i].codes_cur for i in idx])
            # Codes are 0..k-1 over the union of both sides' categories, so a category that appears only in
            # current is counted (alibi-detect would otherwise infer the categories from x_ref alone).
            categories = {j: len(pairs[i].categories) for j, i in enumerate(idx)}
            detector = cd.ChiSquareDrift(x_ref, p_val=self.alpha, categories_per_feature=categories,
                                         correction=ALIBI_CORRECTION[self.correction])
            dist, p = self._predict(detector, x_cur)
            for j, i in enumerate(idx):
                out[i] = (float(dist[j]), float(p[j]))
        return out
