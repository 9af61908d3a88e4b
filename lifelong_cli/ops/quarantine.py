"""quarantine list|show: the rows ingest refused, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import BatchNotFoundError, UsageError
from lifelong_cli.ops._base import Result, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class QuarantineListResult(Result):
    model: str
    batches: list[dict[str, Any]]
    orphan_labels: int


@dataclass(frozen=True)
class QuarantineShowResult(Result):
    model: str
    batch: int
    total: int
    rows: list[dict[str, Any]]


def quarantine_list(ctx: AppContext) -> QuarantineListResult:
    """The model's batches with quarantined rows, newest first, and how many of its labels are orphans."""
    from lifelong_cli.store import batches

    model = ctx.model
    with ctx.store.tx(write=False) as t:
        rows = batches.with_quarantine(t, model)
    out = [{"batch": r["id"], "status": r["status"], "source": r["source"], "kind": r["kind"], "input": r["input"],
            "created_at": r["created_at"], "rows_read": r["rows_read"], "rows_quarantined": r["rows_quarantined"],
            "top_reasons": (r["detail"] or {}).get("top_reasons", {})} for r in rows]
    return QuarantineListResult(model=model, batches=jsonable(out), orphan_labels=orphan_labels(ctx))


def orphan_labels(ctx: AppContext) -> int:
    """Labels whose example has not arrived within data.orphan_label_window_hours."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches

    schema = DataSchema.from_settings(ctx.config.settings.data)
    data = DataStore(ctx.data_root)
    cutoff = ctx.now() - timedelta(hours=ctx.config.settings.data.orphan_label_window_hours)
    with ctx.store.tx(write=False) as t:
        old_label_refs = batches.for_reading(t, ctx.model, kinds=["labels", "feedback"], created_before=cutoff)
        if not old_label_refs:
            return 0
        example_refs = batches.for_reading(t, ctx.model, kinds=["examples"])
    keys = rd.existing_keys(data, example_refs, schema)
    n = 0
    for r in old_label_refs:
        k = data.read(r.segment_path, columns=[schema.key])[schema.key]
        n += int(pc.sum(pc.invert(pc.is_in(k, value_set=keys if len(keys) else pa.array([], pa.string())))).as_py() or 0)
    return n


def quarantine_show(ctx: AppContext, *, batch: int, limit: int = 50) -> QuarantineShowResult:
    """The quarantined rows of one of the model's batches (at most ``limit``)."""
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches

    if limit < 1:
        raise UsageError("--limit must be at least 1", hint=f"llctl quarantine show {batch} --limit 20")
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        row = batches.get(t, model, batch)
    if row is None:
        raise BatchNotFoundError(f"model '{model}' has no batch {batch}",
                                 hint="`llctl quarantine list` shows batches with quarantined rows")
    if not row["quarantine_path"]:
        return QuarantineShowResult(model=model, batch=batch, total=0, rows=[])
    t = DataStore(ctx.data_root).read(row["quarantine_path"])
    return QuarantineShowResult(model=model, batch=batch, total=t.num_rows, rows=jsonable(t.slice(0, limit).to_pylist()))
