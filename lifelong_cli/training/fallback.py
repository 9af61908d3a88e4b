"""The simple fallback stored with every version: what serving answers in fallback mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def build_fallback(rows: pa.Table, label: str, pre, lookup_key: str | None) -> dict[str, Any]:
    """Majority class (or median) over the training lineage, and the same per value of a lookup key."""
    out: dict[str, Any] = {"task": pre.task}
    if pre.task == "classification":
        counts = pc.value_counts(rows[label]).to_pylist()
        out["majority"] = max(counts, key=lambda c: c["counts"])["values"] if counts else (pre.classes[0] if pre.classes else None)
        out["classes"] = pre.classes
    else:
        vals = rows[label].to_numpy(zero_copy_only=False)
        out["median"] = float(np.nanmedian(vals)) if len(vals) else 0.0
    if lookup_key and lookup_key in rows.column_names:
        table: dict[str, Any] = {}
        if pre.task == "classification":
            tally: dict[str, dict[str, int]] = {}
            for r in rows.select([lookup_key, label]).to_pylist():
                k = "" if r[lookup_key] is None else str(r[lookup_key])
                tally.setdefault(k, {}).setdefault(r[label], 0)
                tally[k][r[label]] += 1
            table = {k: max(v, key=v.get) for k, v in tally.items()}
        else:
            agg = rows.group_by(lookup_key).aggregate([(label, "approximate_median")]).to_pylist()
            table = {str(r[lookup_key]): r[f"{label}_approximate_median"] for r in agg}
        out["lookup"] = {"key": lookup_key, "table": table}
    return out
