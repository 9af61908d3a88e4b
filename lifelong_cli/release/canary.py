"""Canary analysis: canary against stable on the prediction log and feedback since the canary began.

Each figure has a minimum sample count and a one-sided two-sample test; it *fails* only when the
difference is both larger than its configured margin and significant at ``canary.alpha``:

- error rate: share of requests that failed (Fisher's exact test);
- p95 latency: ratio of p95s (Mann-Whitney U on the latencies);
- prediction distribution: total-variation distance between predicted classes (chi-square), or the
  KS distance between predicted values for a regression model;
- labelled accuracy (once ``canary.min_labelled`` feedback labels arrived on each side): the drop
  (Fisher's exact test on right/wrong counts); for regression, mean absolute error (Mann-Whitney U).

Window: both sides are compared over the current step only (the traffic split, the load and the
users change between steps, so mixing steps turns any trend over time into a difference between
arms); at the 100% step stable takes no traffic, so its side is everything since the canary began.
A latency difference must also exceed ``canary.min_latency_increase_ms`` in absolute terms.

Verdict: ``fail`` if any figure fails; else ``inconclusive`` while either side has fewer than
``canary.min_requests`` requests in the window or the step is younger than
``canary.min_step_seconds``; else ``pass``. Missing feedback never blocks a step (it is reported as
waiting). ``ops/canary.py`` aborts only when a fail is confirmed by the next look, so one unlucky
test among the many a watch makes does not kill a good version."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np

SAMPLE = 20_000  # the newest requests per side that latency and prediction figures are computed on


def _load(t, dep: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Counts over the whole canary (in SQL); latencies and outputs from the newest SAMPLE requests
    per side; labelled pairs from the newest SAMPLE feedback rows — so the cost stays bounded however
    long the canary runs."""
    step = dep["canary_step_started_at"] or dep["canary_started_at"]
    full = float(dep["canary_share"] or 0.0) >= 1.0
    windows = {"stable": dep["canary_started_at"] if full else step, "canary": step}
    versions = {"stable": dep["stable_version"], "canary": dep["canary_version"]}
    arms: dict[str, dict[str, Any]] = {}
    for arm in ("stable", "canary"):
        p = {"since": windows[arm], "arm": arm, "v": versions[arm], "t": True}
        c = t.row("SELECT count(*) AS n, sum(CASE WHEN ok = :t THEN 0 ELSE 1 END) AS errors FROM predictions "
                  "WHERE ts >= :since AND variant = :arm AND version = :v", p)
        recent = t.rows(f"SELECT latency_ms, output FROM predictions WHERE ts >= :since AND ok = :t "
                        f"AND variant = :arm AND version = :v ORDER BY id DESC LIMIT {SAMPLE}", p, types={"output": "json"})
        total = t.scalar("SELECT count(*) FROM predictions WHERE ts >= :since AND variant = :arm AND version = :v",
                         {**p, "since": dep["canary_started_at"]})
        arms[arm] = {
            "requests": int(c["n"] or 0),
            "errors": int(c["errors"] or 0),
            "latency_ms": np.array([r["latency_ms"] for r in recent], dtype=float),
            "outputs": [o for r in recent if r["output"] for o in r["output"]],
            "total": int(total or 0),
        }
    labelled = t.rows(f"SELECT p.variant, p.output, f.row_index, f.label FROM predictions p JOIN feedback f "
                      f"ON f.request_id = p.request_id WHERE p.ok = :t AND ("
                      f"(p.variant = 'stable' AND p.version = :s AND p.ts >= :ss) OR "
                      f"(p.variant = 'canary' AND p.version = :c AND p.ts >= :cs)) ORDER BY f.id DESC LIMIT {SAMPLE}",
                      {"t": True, "s": versions["stable"], "c": versions["canary"], "ss": windows["stable"],
                       "cs": windows["canary"]}, types={"output": "json"})
    return arms, labelled


def _figure(name: str, status: str, **data: Any) -> dict[str, Any]:
    return {"name": name, "status": status, **data}


def _json_float(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def analyse(t, dep: dict[str, Any], settings: Any, now: datetime, task: str) -> dict[str, Any]:
    from scipy.stats import chi2_contingency, fisher_exact, ks_2samp, mannwhitneyu

    c = settings.canary
    arms, labelled = _load(t, dep)
    s, k = arms["stable"], arms["canary"]
    enough = s["requests"] >= c.min_requests and k["requests"] >= c.min_requests
    figures = []

    # Error rate.
    s_rate = s["errors"] / s["requests"] if s["requests"] else None
    k_rate = k["errors"] / k["requests"] if k["requests"] else None
    if not enough:
        figures.append(_figure("error_rate", "waiting", stable=s_rate, canary=k_rate, p_value=None,
                               threshold=f"+{c.max_error_rate_increase:g}"))
    else:
        p = fisher_exact([[k["errors"], k["requests"] - k["errors"]], [s["errors"], s["requests"] - s["errors"]]],
                         alternative="greater").pvalue
        bad = k_rate - s_rate > c.max_error_rate_increase and p < c.alpha
        figures.append(_figure("error_rate", "fail" if bad else "pass", stable=_json_float(s_rate), canary=_json_float(k_rate),
                               p_value=_json_float(p), threshold=f"+{c.max_error_rate_increase:g}"))

    # p95 latency.
    if not enough or len(s["latency_ms"]) < c.min_requests or len(k["latency_ms"]) < c.min_requests:
        figures.append(_figure("p95_latency_ms", "waiting", stable=None, canary=None, ratio=None, p_value=None,
                               threshold=f"x{c.max_latency_ratio:g}"))
    else:
        sp, kp = float(np.percentile(s["latency_ms"], 95)), float(np.percentile(k["latency_ms"], 95))
        ratio = kp / sp if sp > 0 else float("inf")
        p = mannwhitneyu(k["latency_ms"], s["latency_ms"], alternative="greater").pvalue
        bad = ratio > c.max_latency_ratio and kp - sp > c.min_latency_increase_ms and p < c.alpha
        figures.append(_figure("p95_latency_ms", "fail" if bad else "pass", stable=round(sp, 3), canary=round(kp, 3),
                               ratio=_json_float(ratio), p_value=_json_float(p), threshold=f"x{c.max_latency_ratio:g}"))

    # Prediction distribution.
    if not enough or not s["outputs"] or not k["outputs"]:
        figures.append(_figure("prediction_shift", "waiting", distance=None, p_value=None,
                               threshold=c.max_prediction_shift))
    elif task == "classification":
        s_count, k_count = Counter(map(str, s["outputs"])), Counter(map(str, k["outputs"]))
        classes = sorted(set(s_count) | set(k_count))
        sc = np.array([s_count[x] for x in classes], dtype=float)
        kc = np.array([k_count[x] for x in classes], dtype=float)
        dist = 0.5 * float(np.abs(sc / sc.sum() - kc / kc.sum()).sum())
        p = 1.0 if len(classes) < 2 else float(chi2_contingency(np.vstack([sc, kc])).pvalue)
        bad = dist > c.max_prediction_shift and p < c.alpha
        figures.append(_figure("prediction_shift", "fail" if bad else "pass", distance=round(dist, 4),
                               p_value=_json_float(p), threshold=c.max_prediction_shift,
                               stable_classes=dict(zip(classes, sc.astype(int).tolist(), strict=True)),
                               canary_classes=dict(zip(classes, kc.astype(int).tolist(), strict=True))))
    else:
        res = ks_2samp(np.asarray(k["outputs"], float), np.asarray(s["outputs"], float))
        bad = res.statistic > c.max_prediction_shift and res.pvalue < c.alpha
        figures.append(_figure("prediction_shift", "fail" if bad else "pass", distance=round(float(res.statistic), 4),
                               p_value=_json_float(res.pvalue), threshold=c.max_prediction_shift))

    # Labelled outcome from feedback.
    per_arm: dict[str, list[tuple[Any, Any]]] = {"stable": [], "canary": []}
    for r in labelled:
        out = r["output"] or []
        if r["label"] is not None and 0 <= r["row_index"] < len(out):
            per_arm[r["variant"]].append((out[r["row_index"]], r["label"]))
    ns, nk = len(per_arm["stable"]), len(per_arm["canary"])
    if ns < c.min_labelled or nk < c.min_labelled:
        figures.append(_figure("labelled_accuracy" if task == "classification" else "labelled_mae", "waiting",
                               stable_labelled=ns, canary_labelled=nk, needed=c.min_labelled,
                               threshold=c.max_accuracy_drop))
    elif task == "classification":
        sr = sum(str(p) == str(y) for p, y in per_arm["stable"])
        kr = sum(str(p) == str(y) for p, y in per_arm["canary"])
        sa, ka = sr / ns, kr / nk
        p = fisher_exact([[nk - kr, kr], [ns - sr, sr]], alternative="greater").pvalue
        bad = sa - ka > c.max_accuracy_drop and p < c.alpha
        figures.append(_figure("labelled_accuracy", "fail" if bad else "pass", stable=round(sa, 4), canary=round(ka, 4),
                               stable_labelled=ns, canary_labelled=nk, p_value=_json_float(p),
                               threshold=f"-{c.max_accuracy_drop:g}"))
    else:
        def errs(pairs):
            out = []
            for p_, y in pairs:
                try:
                    out.append(abs(float(p_) - float(y)))
                except (TypeError, ValueError):
                    continue
            return np.asarray(out, float)

        se, ke = errs(per_arm["stable"]), errs(per_arm["canary"])
        smae, kmae = float(se.mean()), float(ke.mean())
        p = mannwhitneyu(ke, se, alternative="greater").pvalue
        bad = kmae > smae * (1 + c.max_accuracy_drop) and p < c.alpha
        figures.append(_figure("labelled_mae", "fail" if bad else "pass", stable=round(smae, 6), canary=round(kmae, 6),
                               stable_labelled=ns, canary_labelled=nk, p_value=_json_float(p),
                               threshold=f"x{1 + c.max_accuracy_drop:g}"))

    failed = [f["name"] for f in figures if f["status"] == "fail"]
    step_age = (now - dep["canary_step_started_at"]).total_seconds() if dep["canary_step_started_at"] else 0.0
    waiting_for = []
    if s["requests"] < c.min_requests:
        waiting_for.append(f"stable has {s['requests']} of {c.min_requests} requests at this step")
    if k["requests"] < c.min_requests:
        waiting_for.append(f"canary has {k['requests']} of {c.min_requests} requests at this step")
    if step_age < c.min_step_seconds:
        waiting_for.append(f"the step is {step_age:.0f} s old, steps last at least {c.min_step_seconds:g} s")
    verdict = "fail" if failed else ("inconclusive" if waiting_for else "pass")
    return json.loads(json.dumps({
        "verdict": verdict, "failed": failed, "waiting_for": waiting_for, "at": now.isoformat().replace("+00:00", "Z"),
        "share": dep["canary_share"], "step_age_seconds": round(step_age, 1),
        "requests": {"stable": s["requests"], "canary": k["requests"], "stable_total": s["total"],
                     "canary_total": k["total"]},
        "figures": figures}, default=float))
