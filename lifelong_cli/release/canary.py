"""Canary analysis: canary against stable on the model's prediction log and feedback since the canary began.

Four figures (error rate, p95 latency, prediction shift, labelled accuracy or MAE; each function below
says how it is tested), each with a minimum sample count and a one-sided two-sample test: a figure
*fails* only when the difference is both larger than its configured margin and significant at
``canary.alpha``. Prediction shift and labelled outcome compare the two models on the *same* requests
(replicas log stable's "shadow" answer to each canary request), because the sticky split sends the
canary a fixed slice of users whose mix differs from everyone else's.

Window: the current step only (the split, load and users change between steps); at the 100% step
stable takes no traffic, so its side is everything since the canary began. Verdict: ``fail`` if any
figure fails; else ``inconclusive`` while either side has fewer than ``canary.min_requests`` requests
in the window or the step is younger than ``canary.min_step_seconds``; else ``pass``. Missing feedback
never blocks a step. ``ops/canary.py`` aborts only when the next look confirms a fail."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np

SAMPLE = 20_000  # the newest requests per side that latency and prediction figures are computed on


def _load(t, model: str, dep: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Counts over the whole canary (in SQL); latencies and outputs from the newest SAMPLE requests
    per side; labelled pairs from the newest SAMPLE feedback rows — so the cost stays bounded however
    long the canary runs. Only ``model``'s prediction log is read."""
    from lifelong_cli.store import predictions

    step = dep["canary_step_started_at"] or dep["canary_started_at"]
    full = float(dep["canary_share"] or 0.0) >= 1.0
    windows = {"stable": dep["canary_started_at"] if full else step, "canary": step}
    versions = {"stable": dep["stable_version"], "canary": dep["canary_version"]}
    arms: dict[str, dict[str, Any]] = {}
    for arm in ("stable", "canary"):
        which = {"variant": arm, "version": versions[arm]}
        c = predictions.arm_counts(t, model, since=windows[arm], **which)
        recent = predictions.arm_recent(t, model, since=windows[arm], limit=SAMPLE, **which)
        total = predictions.arm_counts(t, model, since=dep["canary_started_at"], **which)["requests"]
        arms[arm] = {
            "requests": c["requests"],
            "errors": c["errors"],
            "latency_ms": np.array([r["latency_ms"] for r in recent], dtype=float),
            "outputs": [o for r in recent if r["output"] for o in r["output"]],
            "paired": [(a, b) for r in recent if r["output"] and r["shadow"] and len(r["output"]) == len(r["shadow"])
                       for a, b in zip(r["output"], r["shadow"], strict=True)],
            "total": total,
        }
    labelled = predictions.labelled_canary(t, model, version=versions["canary"], since=windows["canary"], limit=SAMPLE)
    return arms, labelled


def _figure(name: str, status: str, **data: Any) -> dict[str, Any]:
    return {"name": name, "status": status, **data}


def _json_float(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def analyse(t, model: str, dep: dict[str, Any], settings: Any, now: datetime, task: str) -> dict[str, Any]:
    """The canary of ``model``'s deployment row ``dep`` against its stable, on ``model``'s prediction log."""
    c = settings.canary
    arms, labelled = _load(t, model, dep)
    s, k = arms["stable"], arms["canary"]
    enough = s["requests"] >= c.min_requests and k["requests"] >= c.min_requests
    figures = [_error_rate(c, s, k, enough), _latency(c, s, k, enough), _prediction_shift(c, k, enough, task),
               _labelled(c, labelled, task)]
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


def _error_rate(c: Any, s: dict[str, Any], k: dict[str, Any], enough: bool) -> dict[str, Any]:
    """Share of requests that failed (Fisher's exact test)."""
    from scipy.stats import fisher_exact

    s_rate = s["errors"] / s["requests"] if s["requests"] else None
    k_rate = k["errors"] / k["requests"] if k["requests"] else None
    if not enough:
        return _figure("error_rate", "waiting", stable=s_rate, canary=k_rate, p_value=None,
                       threshold=f"+{c.max_error_rate_increase:g}")
    p = fisher_exact([[k["errors"], k["requests"] - k["errors"]], [s["errors"], s["requests"] - s["errors"]]],
                     alternative="greater").pvalue
    bad = k_rate - s_rate > c.max_error_rate_increase and p < c.alpha
    return _figure("error_rate", "fail" if bad else "pass", stable=_json_float(s_rate), canary=_json_float(k_rate),
                   p_value=_json_float(p), threshold=f"+{c.max_error_rate_increase:g}")


def _latency(c: Any, s: dict[str, Any], k: dict[str, Any], enough: bool) -> dict[str, Any]:
    """Ratio of p95 latencies (Mann-Whitney U), and an absolute increase over the minimum."""
    from scipy.stats import mannwhitneyu

    if not enough or len(s["latency_ms"]) < c.min_requests or len(k["latency_ms"]) < c.min_requests:
        return _figure("p95_latency_ms", "waiting", stable=None, canary=None, ratio=None, p_value=None,
                       threshold=f"x{c.max_latency_ratio:g}")
    sp, kp = float(np.percentile(s["latency_ms"], 95)), float(np.percentile(k["latency_ms"], 95))
    ratio = kp / sp if sp > 0 else float("inf")
    p = mannwhitneyu(k["latency_ms"], s["latency_ms"], alternative="greater").pvalue
    bad = ratio > c.max_latency_ratio and kp - sp > c.min_latency_increase_ms and p < c.alpha
    return _figure("p95_latency_ms", "fail" if bad else "pass", stable=round(sp, 3), canary=round(kp, 3),
                   ratio=_json_float(ratio), p_value=_json_float(p), threshold=f"x{c.max_latency_ratio:g}")


def _prediction_shift(c: Any, k: dict[str, Any], enough: bool, task: str) -> dict[str, Any]:
    """The canary's answers against stable's shadow answers to the same rows."""
    from scipy.stats import chi2_contingency, ks_2samp

    pairs = k["paired"]
    if not enough or len(pairs) < c.min_requests:
        return _figure("prediction_shift", "waiting", distance=None, p_value=None, paired=len(pairs),
                       threshold=c.max_prediction_shift)
    if task != "classification":
        res = ks_2samp(np.asarray([a for a, _ in pairs], float), np.asarray([b for _, b in pairs], float))
        bad = res.statistic > c.max_prediction_shift and res.pvalue < c.alpha
        return _figure("prediction_shift", "fail" if bad else "pass", distance=round(float(res.statistic), 4),
                       p_value=_json_float(res.pvalue), threshold=c.max_prediction_shift, paired=len(pairs))
    s_count, k_count = Counter(str(b) for _, b in pairs), Counter(str(a) for a, _ in pairs)
    classes = sorted(set(s_count) | set(k_count))
    sc = np.array([s_count[x] for x in classes], dtype=float)
    kc = np.array([k_count[x] for x in classes], dtype=float)
    dist = 0.5 * float(np.abs(sc / sc.sum() - kc / kc.sum()).sum())
    p = 1.0 if len(classes) < 2 else float(chi2_contingency(np.vstack([sc, kc])).pvalue)
    bad = dist > c.max_prediction_shift and p < c.alpha
    agree = sum(str(a) == str(b) for a, b in pairs) / len(pairs)
    return _figure("prediction_shift", "fail" if bad else "pass", distance=round(dist, 4),
                   p_value=_json_float(p), threshold=c.max_prediction_shift, paired=len(pairs),
                   agreement=round(agree, 4),
                   stable_classes=dict(zip(classes, sc.astype(int).tolist(), strict=True)),
                   canary_classes=dict(zip(classes, kc.astype(int).tolist(), strict=True)))


def _labelled(c: Any, labelled: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """Labelled outcome from feedback, paired: on the canary's requests, canary's answer and stable's
    shadow answer against the same label (McNemar's exact test / Wilcoxon's signed-rank test)."""
    from scipy.stats import binomtest, wilcoxon

    triples = []
    for r in labelled:
        out, shadow = r["output"] or [], r["shadow"] or []
        i = r["row_index"]
        if r["label"] is not None and 0 <= i < len(out) and i < len(shadow):
            triples.append((out[i], shadow[i], r["label"]))
    n = len(triples)
    name = "labelled_accuracy" if task == "classification" else "labelled_mae"
    if n < c.min_labelled:
        return _figure(name, "waiting", labelled=n, needed=c.min_labelled, threshold=c.max_accuracy_drop)
    if task == "classification":
        k_ok = [str(a) == str(y) for a, _, y in triples]
        s_ok = [str(b) == str(y) for _, b, y in triples]
        worse = sum(so and not ko for ko, so in zip(k_ok, s_ok, strict=True))  # stable right, canary wrong
        better = sum(ko and not so for ko, so in zip(k_ok, s_ok, strict=True))
        ka, sa = sum(k_ok) / n, sum(s_ok) / n
        p = binomtest(worse, worse + better, 0.5, alternative="greater").pvalue if worse + better else 1.0
        bad = sa - ka > c.max_accuracy_drop and p < c.alpha
        return _figure(name, "fail" if bad else "pass", stable=round(sa, 4), canary=round(ka, 4), labelled=n,
                       p_value=_json_float(p), threshold=f"-{c.max_accuracy_drop:g}")
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
    return _figure(name, "fail" if bad else "pass", stable=round(smae, 6), canary=round(kmae, 6), labelled=n,
                   p_value=_json_float(p), threshold=f"x{1 + c.max_accuracy_drop:g}")
