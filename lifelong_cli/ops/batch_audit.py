"""The checks that put a batch on hold at ingest, before anything is trained on it.

* ``label_audit``: every batch that carries labels (labels, feedback, labelled examples) against the
  same source's recent labels (all sources' when the source has too few of its own yet) — the class
  shares (chi-square) and, when a stable version exists, how often its labels disagree with the
  stable version's predictions, per predicted class (one-sided two-proportion test). A test fails
  only when it is both significant (``alpha``, Bonferroni over the batch's tests) and large (the
  configured minimum effects): a big batch's tiny wobble is not a fault.
* ``drift_hold``: a drifted examples batch whose drift is also large against the newest rows — a
  median moved by whole spreads, a spread changed several times (a unit change, a stuck feature),
  more nulls, categories moved.
* ``replay_hold``: a batch whose feature rows repeat stored rows (the same batch under new ids).

Each returns a hold (``cause``, ``reason`` — one sentence naming source, class or feature and the
figures — and the figures themselves) or None. Holding a batch never loses it: it is stored and
waits for ``llctl data release`` or ``reject``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from lifelong_cli.data.schema import DataSchema

REGRESSION_MIN_KS = 0.2  # a regression label's distribution must move at least this far (KS statistic)


# ------------------------------------------------------------------------------------------ label audit


def label_audit(ctx, data, schema: DataSchema, refs, rules, *, source: str, labelled: pa.Table) -> dict[str, Any]:
    """Audit ``labelled`` (key and label, plus the features when the batch is an examples batch) of a
    batch from ``source``. Returns the audit document (stored with the batch): the tests run, their
    figures, ``failed`` and, when failed and ``data.label_audit.on_fail`` is hold, ``hold``."""
    import pyarrow.compute as pc

    cfg = ctx.config.settings.data.label_audit
    labelled = labelled.filter(pc.is_valid(labelled[schema.label]))
    doc: dict[str, Any] = {"source": source, "rows": labelled.num_rows, "tests": [], "failed": False}
    if labelled.num_rows < cfg.min_rows:
        doc["not_judged"] = f"{labelled.num_rows} labelled row(s), fewer than {cfg.min_rows}"
        return doc
    ref, scope = _reference(data, schema, refs, rules, source, cfg.reference_rows, cfg.min_rows)
    doc["reference"] = {"scope": scope, "rows": ref.num_rows}
    if ref.num_rows < cfg.min_rows:
        doc["not_judged"] = "no reference labels yet (the first labels of this model)"
        return doc
    classification = schema.label_type == "category" or bool(schema.label_categories)
    if classification:
        dist = _class_shares(ref[schema.label], labelled[schema.label])
    else:
        dist = _value_shift(ref[schema.label], labelled[schema.label])
    agree = _agreement(ctx, data, schema, refs, ref, labelled, cfg.min_rows) if classification else []
    n_tests = 1 + len(agree)
    alpha = cfg.alpha / n_tests
    dist["failed"] = bool(dist["p_value"] < alpha and dist["effect"] >= (
        cfg.min_share_change if classification else REGRESSION_MIN_KS))
    for a in agree:
        a["failed"] = bool(a["p_value"] < alpha and a["rise"] >= cfg.min_agreement_drop)
    doc["tests"] = [dist, *agree]
    doc["alpha_per_test"] = alpha
    failed = [t for t in doc["tests"] if t["failed"]]
    if not failed:
        return doc
    doc["failed"] = True
    worst = max((t for t in failed if t["test"] == "agreement"), key=lambda t: t["rise"], default=None) or failed[0]
    who = f"{source}" + ("" if scope == "source" else " (against all sources: too few of its own)")
    if worst["test"] == "agreement":
        reason = (f"{who}: predicted {worst['predicted']} but labelled {worst['top_label']} — labels disagree with "
                  f"the stable version on {worst['now']:.0%} of {worst['rows']} vs {worst['before']:.0%} before")
    elif classification:
        reason = (f"{who}: class {worst['class']} is {worst['now']:.0%} of the labels vs {worst['before']:.0%} "
                  f"before (p={worst['p_value']:.1g})")
    else:
        reason = (f"{who}: the label's distribution moved (KS {worst['effect']:.2f}, median {worst['now']:.4g} "
                  f"vs {worst['before']:.4g})")
    others = len(failed) - 1
    if others:
        reason += f"; {others} more failed test(s)"
    doc["reason"] = reason
    if cfg.on_fail == "hold":
        doc["hold"] = {"cause": "label audit", "reason": reason, "source": source,
                       "tests": [t for t in doc["tests"] if t["failed"]]}
    return doc


def _reference(data, schema: DataSchema, refs, rules, source: str, n: int, min_rows: int) -> tuple[pa.Table, str]:
    """The newest ``n`` labelled rows (key, label) of ``source`` — every stored batch that carries
    labels, newest first, none a purge rule names — or of every source when it has too few."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd

    named_batches, named_sources = set(), set()
    for r in rd.rules_of(rules):
        if r.spec.get("batch") is not None:
            named_batches.add(int(r.spec["batch"]))
        elif r.spec.get("source"):
            named_sources.add(r.spec["source"])
    usable = [r for r in refs if r.id not in named_batches and r.source not in named_sources]

    def collect(want) -> pa.Table:
        parts, have = [], 0
        for r in reversed(usable):
            if not want(r):
                continue
            t = data.read(r.segment_path, columns=[schema.key, schema.label])
            t = t.filter(pc.is_valid(t[schema.label]))
            if t.num_rows:
                parts.append(t.select([schema.key, schema.label]).cast(
                    pa.schema([pa.field(schema.key, pa.string()), pa.field(schema.label, schema.label_arrow_type())])))
                have += t.num_rows
            if have >= n:
                break
        if not parts:
            return pa.table({schema.key: pa.array([], pa.string()),
                             schema.label: pa.array([], schema.label_arrow_type())})
        t = pa.concat_tables(parts)
        return t.slice(0, n)

    own = collect(lambda r: r.source == source)
    if own.num_rows >= max(3 * min_rows, 100):
        return own, "source"
    return collect(lambda r: True), "all sources"


def _class_shares(before: pa.ChunkedArray, now: pa.ChunkedArray) -> dict[str, Any]:
    from lifelong_cli.drift.scipy_backend import chi2_homogeneity

    b = [str(v) for v in before.to_pylist()]
    c = [str(v) for v in now.to_pylist()]
    classes = sorted(set(b) | set(c))
    cb = np.array([b.count(k) for k in classes], dtype=np.float64)
    cc = np.array([c.count(k) for k in classes], dtype=np.float64)
    sb, sc = cb / cb.sum(), cc / cc.sum()
    if len(classes) < 2:
        stat, p = 0.0, 1.0
    else:
        stat, p = chi2_homogeneity(np.vstack([cb, cc]))
    i = int(np.argmax(np.abs(sc - sb)))
    return {"test": "class shares", "p_value": float(p), "statistic": float(stat), "effect": float(abs(sc[i] - sb[i])),
            "class": classes[i], "now": float(sc[i]), "before": float(sb[i]),
            "shares_now": {k: round(float(v), 4) for k, v in zip(classes, sc, strict=True)},
            "shares_before": {k: round(float(v), 4) for k, v in zip(classes, sb, strict=True)}}


def _value_shift(before: pa.ChunkedArray, now: pa.ChunkedArray) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.drift.scipy_backend import ks_pvalues, ks_statistic

    a = np.asarray(pc.cast(before, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    b = np.asarray(pc.cast(now, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    d = ks_statistic(np.sort(a), np.sort(b))
    p = float(ks_pvalues([d], [(len(a), len(b))])[0])
    return {"test": "label distribution", "p_value": p, "statistic": float(d), "effect": float(d),
            "now": float(np.median(b)), "before": float(np.median(a))}


def _agreement(ctx, data, schema: DataSchema, refs, ref: pa.Table, labelled: pa.Table, min_rows: int) -> list[dict[str, Any]]:
    """Per predicted class of the stable version: how often the labels say otherwise, now against
    the reference. Empty when there is no stable version or too few rows have their features."""

    from lifelong_cli.store import deployment, versions

    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, ctx.model)
        stable = versions.get(t, ctx.model, dep["stable_version"]) if dep.get("stable_version") else None
    if stable is None:
        return []
    feats = [f.name for f in schema.features]
    now = labelled if all(f in labelled.column_names for f in feats) else _with_features(data, schema, refs, labelled)
    before = _with_features(data, schema, refs, ref)
    if now.num_rows < min_rows or before.num_rows < min_rows:
        return []
    from lifelong_cli.registry.base import open_registry
    from lifelong_cli.release import gates

    m = gates.load(open_registry(ctx), stable, ctx.config.settings)
    classes = [str(c) for c in m.pre.classes]

    def rates(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        pred = gates.scores_onnx(m, t).argmax(1)
        idx = {c: i for i, c in enumerate(classes)}
        y = np.array([idx.get(str(v), -1) for v in t[schema.label].to_pylist()], dtype=np.int64)
        return pred, y

    pn, yn = rates(now)
    pb, yb = rates(before)
    out = []
    for c, name in enumerate(classes):
        n1, n2 = int((pb == c).sum()), int((pn == c).sum())
        if n1 < min_rows or n2 < min_rows:
            continue
        d1 = int(((pb == c) & (yb != c)).sum())
        d2 = int(((pn == c) & (yn != c)).sum())
        wrong = yn[(pn == c) & (yn != c)]
        top = (classes[int(np.bincount(wrong[wrong >= 0]).argmax())] if (wrong >= 0).any() else "an unknown class") \
            if len(wrong) else "-"
        out.append({"test": "agreement", "predicted": name, "rows": n2, "now": d2 / n2, "before": d1 / n1,
                    "rise": d2 / n2 - d1 / n1, "p_value": _one_sided(d1, n1, d2, n2), "top_label": top,
                    "stable_version": stable["id"]})
    return out


def _with_features(data, schema: DataSchema, refs, rows: pa.Table) -> pa.Table:
    """``rows`` (key, label) joined with their stored examples' features (rows without one dropped)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd

    feats = [f.name for f in schema.features]
    if rows.num_rows == 0:
        return rows
    ex = rd.examples_for(data, schema, refs, rows[schema.key], feats)
    ex = ex.select([schema.key, *feats])
    if ex.num_rows == 0:
        return ex.append_column(schema.label, pa.array([], schema.label_arrow_type()))
    first = pc.index_in(rows[schema.key], value_set=ex[schema.key])
    keep = pc.is_valid(first)
    rows = rows.filter(keep)
    return ex.take(pc.drop_null(first)).append_column(schema.label, rows[schema.label])


def _one_sided(d1: int, n1: int, d2: int, n2: int) -> float:
    """P-value of "the second rate is higher" (two-proportion z-test, pooled)."""
    p = (d1 + d2) / (n1 + n2)
    se = math.sqrt(max(p * (1 - p) * (1 / n1 + 1 / n2), 1e-12))
    z = (d2 / n2 - d1 / n1) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


# ------------------------------------------------------------------------------------------ drift holds


def drift_hold(doc: dict[str, Any] | None, ref: pa.Table, current: pa.Table, schema: DataSchema,
               settings) -> dict[str, Any] | None:
    """A hold for a drifted batch whose drift is also large against the newest rows, else None."""
    d = settings.drift
    if d.on_drift != "hold" or not doc or not doc.get("drifted"):
        return None
    recent = ref.slice(max(0, ref.num_rows - d.hold_reference_rows))
    drifted = set(doc.get("drifted_features") or [])
    found = []
    for f in schema.numeric_features + schema.categorical_features:
        if f not in drifted:
            continue
        effect = _numeric_effect if f in schema.numeric_features else _categorical_effect
        if (e := effect(recent[f], current[f], d)) is not None:
            found.append({**e, "feature": f, "sentence": e["sentence"].replace("{f}", f)})
    for t in doc.get("features") or []:
        if t.get("drifted") and t.get("test") in ("null_rate", "non_finite") and t["name"] in drifted \
                and t["name"] != schema.label and not any(e["feature"] == t["name"] for e in found):
            det = t.get("detail") or {}
            found.append({"feature": t["name"], "effect": t["test"],
                          "sentence": f"{t['name']}: {'null' if t['test'] == 'null_rate' else '±Inf'} rate "
                                      f"{det.get('ref_rate', 0):.1%} → {det.get('cur_rate', 0):.1%}"})
    causes = {c.get("feature"): c for c in (doc.get("likely_causes") or [])}
    for f, c in causes.items():  # a cause `llctl drift` names is strong evidence on its own (e.g. remapped
        if f in drifted and f != schema.label and not any(e["feature"] == f for e in found):  # categories)
            found.append({"feature": f, "effect": c.get("cause"), "sentence": f"{f}: {c.get('evidence') or c.get('cause')}"})
    if not found:
        return None
    parts = []
    for e in found:
        c = causes.get(e["feature"])
        named = c and e["effect"] != c.get("cause")
        parts.append(e["sentence"] + (f" — likely {c['cause'].replace('_', ' ')}" if named else ""))
    return {"cause": "drift", "features": [e["feature"] for e in found], "effects": found,
            "reason": "large drift: " + "; ".join(parts[:4]) + (f"; {len(parts) - 4} more" if len(parts) > 4 else "")}


def _numeric(col) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    a = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return a[np.isfinite(a)]


def _spread(a: np.ndarray) -> float:
    q1, q3 = np.percentile(a, [25, 75])
    s = (q3 - q1) / 1.349
    return float(s if s > 0 else np.std(a))


def _numeric_effect(before, now, d) -> dict[str, Any] | None:
    a, b = _numeric(before), _numeric(now)
    if len(a) < 10 or len(b) < 10:
        return None
    sa, sb = _spread(a), _spread(b)
    ma, mb = float(np.median(a)), float(np.median(b))
    if sa <= 0:
        return None  # the reference was constant: any change is a KS matter, not a scale one
    shift = abs(mb - ma) / sa
    ratio = sb / sa
    if ratio >= d.hold_min_scale or ratio <= 1 / d.hold_min_scale:
        what = "stuck (no spread)" if sb == 0 else f"spread ×{ratio:.3g}"
        return {"effect": "scale", "ratio": ratio, "shift": shift, "median_before": ma, "median_now": mb,
                "sentence": f"{{f}}: {what}, median {ma:.4g} → {mb:.4g}"}
    if shift >= d.hold_min_shift:
        return {"effect": "shift", "ratio": ratio, "shift": shift, "median_before": ma, "median_now": mb,
                "sentence": f"{{f}}: median moved {shift:.1f} spreads ({ma:.4g} → {mb:.4g})"}
    return None


def _categorical_effect(before, now, d) -> dict[str, Any] | None:
    a = [str(v) for v in before.to_pylist() if v is not None]
    b = [str(v) for v in now.to_pylist() if v is not None]
    if len(a) < 10 or len(b) < 10:
        return None
    cats = sorted(set(a) | set(b))
    sa = np.array([a.count(c) for c in cats], np.float64) / len(a)
    sb = np.array([b.count(c) for c in cats], np.float64) / len(b)
    tvd = float(0.5 * np.abs(sa - sb).sum())
    unseen = float(sum(s for c, s in zip(cats, sb, strict=True) if c not in set(a)))
    if tvd < d.hold_min_share:
        return None
    return {"effect": "categories", "tvd": tvd, "unseen_share": unseen,
            "sentence": f"{{f}}: categories moved {tvd:.0%} (total variation)"
                        + (f", {unseen:.0%} never seen before" if unseen >= 0.05 else "")}


def replay_hold(ref: pa.Table, current: pa.Table, schema: DataSchema, settings) -> dict[str, Any] | None:
    """A hold for a batch most of whose feature rows are already stored (under other keys), unless
    the stored rows repeat each other that much too (few distinct values: repeats are normal)."""
    if settings.drift.on_drift != "hold" or ref.num_rows < 50 or current.num_rows < 20:
        return None
    feats = [f.name for f in schema.features]
    hr, hc = _row_hashes(ref, feats), _row_hashes(current, feats)
    share = float(np.isin(hc, hr).mean())
    if share < settings.drift.max_replayed_share:
        return None
    _, counts = np.unique(hr, return_counts=True)
    normal = float(counts[counts > 1].sum() / len(hr))
    if share - normal < settings.drift.max_replayed_share:
        return None
    return {"cause": "replay", "replayed_share": round(share, 4), "normal_repeat_share": round(normal, 4),
            "reason": f"{share:.0%} of its rows repeat stored rows feature for feature (normally {normal:.0%}): "
                      "a batch replayed under new ids?"}


def _row_hashes(t: pa.Table, feats: list[str]) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data.schema import sample_hash

    text = None
    for f in feats:
        col = pc.fill_null(pc.cast(t[f], pa.string()), "\x00")
        text = col if text is None else pc.binary_join_element_wise(text, col, "\x1f")
    return sample_hash(text)
