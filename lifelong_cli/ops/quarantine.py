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
    batches: list[dict[str, Any]]
    orphan_labels: int


@dataclass(frozen=True)
class QuarantineShowResult(Result):
    batch: int
    total: int
    rows: list[dict[str, Any]]


def quarantine_list(ctx: AppContext) -> QuarantineListResult:
    from sqlalchemy import select

    from lifelong_cli.store.schema import batches

    with ctx.store.read() as conn:
        rows = conn.execute(select(batches).where(batches.c.rows_quarantined > 0).order_by(batches.c.id.desc())).mappings().all()
    out = [{"batch": r["id"], "status": r["status"], "source": r["source"], "kind": r["kind"], "input": r["input"],
            "created_at": r["created_at"], "rows_read": r["rows_read"], "rows_quarantined": r["rows_quarantined"],
            "top_reasons": (r["detail"] or {}).get("top_reasons", {})} for r in rows]
    return QuarantineListResult(batches=jsonable(out), orphan_labels=orphan_labels(ctx))


def orphan_labels(ctx: AppContext) -> int:
    """Labels whose example has not arrived within data.orphan_label_window_hours."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store.schema import batches

    schema = DataSchema.from_settings(ctx.config.settings.data)
    data = DataStore(ctx.config.data_root)
    cutoff = ctx.now() - timedelta(hours=ctx.config.settings.data.orphan_label_window_hours)
    from sqlalchemy import select

    with ctx.store.read() as conn:
        refs = rd.accepted_batches(conn)
        old = {r[0] for r in conn.execute(select(batches.c.id).where(batches.c.created_at <= cutoff))}
    old_label_refs = [r for r in refs if r.kind in ("labels", "feedback") and r.id in old]
    if not old_label_refs:
        return 0
    keys = rd.existing_keys(data, refs, schema)
    n = 0
    for r in old_label_refs:
        k = data.read(r.segment_path, columns=[schema.key])[schema.key]
        n += int(pc.sum(pc.invert(pc.is_in(k, value_set=keys if len(keys) else pa.array([], pa.string())))).as_py() or 0)
    return n


def quarantine_show(ctx: AppContext, *, batch: int, limit: int = 50) -> QuarantineShowResult:
    from sqlalchemy import select

    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store.schema import batches

    if limit < 1:
        raise UsageError("--limit must be at least 1", hint=f"llctl quarantine show {batch} --limit 20")
    with ctx.store.read() as conn:
        row = conn.execute(select(batches.c.quarantine_path, batches.c.rows_quarantined).where(batches.c.id == batch)).first()
    if row is None:
        raise BatchNotFoundError(f"no batch {batch}", hint="`llctl quarantine list` shows batches with quarantined rows")
    if not row[0]:
        return QuarantineShowResult(batch=batch, total=0, rows=[])
    t = DataStore(ctx.config.data_root).read(row[0])
    return QuarantineShowResult(batch=batch, total=t.num_rows, rows=jsonable(t.slice(0, limit).to_pylist()))
