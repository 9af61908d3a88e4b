"""Canary analysis: canary against stable on the prediction log and feedback since the canary began.

Each figure has a minimum sample count and a one-sided two-sample test; it *fails* only when the
difference is both larger than its configured margin and significant at ``canary.alpha``:

- error rate: share of requests that failed (Fisher's exact test);
- p95 latency: ratio of p95s (Mann-Whitney U on the latencies);
- prediction distribution: on the canary's own requests, the total-variation distance between the
  classes the canary predicted and those stable predicted for the same rows (each replica also asks
  stable about a canary request and logs that "shadow" answer; chi-square), or the KS distance
  between the two models' values for a regression model;
- labelled accuracy (once ``canary.min_labelled`` feedback labels arrived for canary requests): the
  drop of the canary's accuracy against stable's shadow answers to the same rows (McNemar's exact
  test on the discordant pairs); for regression, mean absolute error (Wilcoxon signed-rank).

Comparing both models on the same requests matters because routing is sticky: the canary's users are
a fixed slice of keys whose mix of cases differs from everyone else's, and comparing different users
would blame the canary for its users.

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
        recent = t.rows(f"SELECT latency_ms, output, shadow FROM predictions WHERE ts >= :since AND ok = :t "
                        f"AND variant = :arm AND version = :v ORDER BY id DESC LIMIT {SAMPLE}", p,
                        types={"output": "json", "shadow": "json"})
        total = t.scalar("SELECT count(*) FROM predictions WHERE ts >= :since AND variant = :arm AND version = :v",
                         {**p, "since": dep["canary_started_at"]})
        arms[arm] = {
            "requests": int(c["n"] or 0),
            "errors": int(c["errors"] or 0),
            "latency_ms": np.array([r["latency_ms"] for r in recent], dtype=float),
            "outputs": [o for r in recent if r["output"] for o in r["output"]],
            "paired": [(a, b) for r in recent if r["output"] and r["shadow"] and len(r["output"]) == len(r["shadow"])
                       for a, b in zip(r["output"], r["shadow"], strict=True)],
            "total": int(total or 0),
        }
    labelled = t.rows(f"SELECT p.output, p.shadow, f.row_index, f.label FROM predictions p JOIN feedback f "
                      f"ON f.request_id = p.request_id WHERE p.ok = :t AND p.variant = 'canary' AND p.version = :c "
                      f"AND p.ts >= :cs AND p.shadow IS NOT NULL ORDER BY f.id DESC LIMIT {SAMPLE}",
                      {"t": True, "c": versions["canary"], "cs": windows["canary"]},
                      types={"output": "json", "shadow": "json"})
    return arms, labelled


def _figure(name: str, status: str, **data: Any) -> dict[str, Any]:
    return {"name": name, "status": status, **data}


def _json_float(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def analyse(t, dep: dict[str, Any], settings: Any, now: datetime, task: str) -> dict[str, Any]:
    from scipy.stats import binomtest, chi2_contingency, fisher_exact, ks_2samp, mannwhitneyu, wilcoxon

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

    # Prediction distribution: the canary's answers against stable's shadow answers to the same rows.
    pairs = k["paired"]
    if not enough or len(pairs) < c.min_requests:
        figures.append(_figure("prediction_shift", "waiting", distance=None, p_value=None, paired=len(pairs),
                               threshold=c.max_prediction_shift))
    elif task == "classification":
        s_count, k_count = Counter(str(b) for _, b in pairs), Counter(str(a) for a, _ in pairs)
        classes = sorted(set(s_count) | set(k_count))
        sc = np.array([s_count[x] for x in classes], dtype=float)
        kc = np.array([k_count[x] for x in classes], dtype=float)
        dist = 0.5 * float(np.abs(sc / sc.sum() - kc / kc.sum()).sum())
        p = 1.0 if len(classes) < 2 else float(chi2_contingency(np.vstack([sc, kc])).pvalue)
        bad = dist > c.max_prediction_shift and p < c.alpha
        agree = sum(str(a) == str(b) for a, b in pairs) / len(pairs)
        figures.append(_figure("prediction_shift", "fail" if bad else "pass", distance=round(dist, 4),
                               p_value=_json_float(p), threshold=c.max_prediction_shift, paired=len(pairs),
                               agreement=round(agree, 4),
                               stable_classes=dict(zip(classes, sc.astype(int).tolist(), strict=True)),
                               canary_classes=dict(zip(classes, kc.astype(int).tolist(), strict=True))))
    else:
        res = ks_2samp(np.asarray([a for a, _ in pairs], float), np.asarray([b for _, b in pairs], float))
        bad = res.statistic > c.max_prediction_shift and res.pvalue < c.alpha
        figures.append(_figure("prediction_shift", "fail" if bad else "pass", distance=round(float(res.statistic), 4),
                               p_value=_json_float(res.pvalue), threshold=c.max_prediction_shift, paired=len(pairs)))

    # Labelled outcome from feedback, paired: on the canary's requests, canary's answer and stable's
    # shadow answer against the same label (McNemar's exact test / Wilcoxon's signed-rank test).
    triples = []
    for r in labelled:
        out, shadow = r["output"] or [], r["shadow"] or []
        i = r["row_index"]
        if r["label"] is not None and 0 <= i < len(out) and i < len(shadow):
            triples.append((out[i], shadow[i], r["label"]))
    n = len(triples)
    name = "labelled_accuracy" if task == "classification" else "labelled_mae"
    if n < c.min_labelled:
        figures.append(_figure(name, "waiting", labelled=n, needed=c.min_labelled,
                               threshold=c.max_accuracy_drop))
    elif task == "classification":
        k_ok = [str(a) == str(y) for a, _, y in triples]
        s_ok = [str(b) == str(y) for _, b, y in triples]
        worse = sum(so and not ko for ko, so in zip(k_ok, s_ok, strict=True))  # stable right, canary wrong
        better = sum(ko and not so for ko, so in zip(k_ok, s_ok, strict=True))
        ka, sa = sum(k_ok) / n, sum(s_ok) / n
        p = binomtest(worse, worse + better, 0.5, alternative="greater").pvalue if worse + better else 1.0
        bad = sa - ka > c.max_accuracy_drop and p < c.alpha
        figures.append(_figure(name, "fail" if bad else "pass", stable=round(sa, 4), canary=round(ka, 4), labelled=n,
                               p_value=_json_float(p), threshold=f"-{c.max_accuracy_drop:g}"))
    else:
        ke, se = [], []
        for a, b, y in triples:
            try:
                ke.append(abs(float(a) - float(y)))
                se.append(abs(float(b) - float(y)))
            except (TypeError, ValueError):
                continue
        ke_, se_ = np.asarray(ke, float), np.asarray(se, float)
        kmae, smae = float(ke_.mean()), float(se_.mean())
        p = wilcoxon(ke_, se_, alternative="greater").pvalue if np.any(ke_ != se_) else 1.0
        bad = kmae > smae * (1 + c.max_accuracy_drop) and p < c.alpha
        figures.append(_figure(name, "fail" if bad else "pass", stable=round(smae, 6), canary=round(kmae, 6), labelled=n,
                               p_value=_json_float(p), threshold=f"x{1 + c.max_accuracy_drop:g}"))

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
