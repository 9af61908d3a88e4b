"""Label counts over a version's training lineage, stored with its fallback (``"tally"``), so that the
next version's fallback adds the rows it trained on instead of counting the whole history again.

For classification only (a median cannot be merged: regression counts its lineage again). The
fallback built from a tally is the one ``fallback.build_fallback`` builds from the same rows: the
majority class, and the majority per value of the lookup key (ties go to the label seen first)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

Tally = dict[str, Any]  # {"labels": {label: n}, "lookup": {value: {label: n}} | None, "rules": [ids]}


def count(rows: pa.Table, label: str, lookup_key: str | None) -> Tally:
    """The labels of ``rows`` counted, overall and per value of ``lookup_key`` (order of first appearance)."""
    labels: dict[str, int] = {}
    lookup: dict[str, dict[str, int]] | None = None
    if rows.num_rows:
        for r in rows.group_by([label], use_threads=False).aggregate([([], "count_all")]).to_pylist():
            labels[r[label]] = labels.get(r[label], 0) + r["count_all"]
    if lookup_key and lookup_key in rows.column_names:
        lookup = {}
        if rows.num_rows:
            pairs = rows.select([lookup_key, label]).group_by([lookup_key, label], use_threads=False)
            for r in pairs.aggregate([([], "count_all")]).to_pylist():
                k = "" if r[lookup_key] is None else str(r[lookup_key])
                by = lookup.setdefault(k, {})
                by[r[label]] = by.get(r[label], 0) + r["count_all"]
    return {"labels": labels, "lookup": lookup}


def merge(a: Tally, b: Tally, sign: int = 1) -> Tally:
    """``a`` plus (``sign`` 1) or minus (-1) ``b``; counts that reach 0 are dropped."""
    def add(x: dict[str, int], y: dict[str, int]) -> dict[str, int]:
        out = dict(x)
        for k, n in y.items():
            out[k] = out.get(k, 0) + sign * n
        return {k: n for k, n in out.items() if n > 0}

    lookup = None
    if a.get("lookup") is not None or b.get("lookup") is not None:
        lookup = {k: dict(v) for k, v in (a.get("lookup") or {}).items()}
        for k, v in (b.get("lookup") or {}).items():
            lookup[k] = add(lookup.get(k, {}), v)
        lookup = {k: v for k, v in lookup.items() if v}
    return {"labels": add(a.get("labels") or {}, b.get("labels") or {}), "lookup": lookup}


def fallback_doc(tally: Tally, pre, lookup_key: str | None) -> dict[str, Any]:
    """The fallback artifact of a classification model from its lineage's tally (the tally kept in it)."""
    labels = tally["labels"]
    out: dict[str, Any] = {"task": pre.task}
    out["majority"] = max(labels, key=labels.get) if labels else (pre.classes[0] if pre.classes else None)
    out["classes"] = pre.classes
    if lookup_key and tally.get("lookup") is not None:
        out["lookup"] = {"key": lookup_key, "table": {k: max(v, key=v.get) for k, v in tally["lookup"].items()}}
    out["tally"] = tally
    return out
