"""drift: the drift report of a batch (stored at ingest) or of an event-time window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import BatchNotFoundError, NotFoundError, UsageError
from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class DriftResult(Result):
    scope: str
    batch: int | None
    drifted: bool
    report: dict[str, Any]
    hint: str


def drift(ctx: AppContext, *, batch: int | None = None, from_: str | None = None,
          to: str | None = None) -> DriftResult:
    """Per-feature statistics, p-values and the decision. Without arguments: the newest checked batch."""
    from sqlalchemy import select

    from lifelong_cli.store.schema import batches

    if batch is not None and (from_ or to):
        raise UsageError("give either --batch or --from/--to, not both", hint="llctl drift --batch 12")
    if from_ or to:
        return _window(ctx, from_, to)
    with ctx.store.read() as conn:
        q = select(batches.c.id, batches.c.drift, batches.c.status, batches.c.kind)
        q = q.where(batches.c.id == batch) if batch is not None else q.where(batches.c.drift.is_not(None)).order_by(batches.c.id.desc()).limit(1)
        row = conn.execute(q).first()
    if row is None:
        if batch is not None:
            raise BatchNotFoundError(f"no batch {batch}", hint="`llctl status` shows the newest batches")
        raise NotFoundError("no batch has been checked for drift yet", hint="ingest a second batch: the first one is the reference")
    if row[1] is None:
        raise NotFoundError(f"batch {row[0]} has no drift report ({row[3]} batch, {row[2]}; the first batch has no reference)",
                            hint="`llctl drift --from T --to T` checks any window")
    rep = row[1]
    return DriftResult("batch", row[0], bool(rep["drifted"]), rep, rep.get("hint", "").replace("<batch>", str(row[0])))


def _window(ctx: AppContext, from_: str | None, to: str | None) -> DriftResult:
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import TS_TYPE, DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.ops.audit import parse_time
    from lifelong_cli.ops.ingest import drift_report

    now = ctx.now()
    lo = parse_time(from_, now=now, flag="--from") if from_ else None
    hi = parse_time(to, now=now, flag="--to") if to else None
    schema = DataSchema.from_settings(ctx.config.settings.data)
    data = DataStore(ctx.config.data_root)
    with ctx.store.read() as conn:
        rows = rd.read_rows(conn, data, schema, trainable_only=False, holdout="include")
    et = rows[schema.event_time]
    inside = pa.array([True] * rows.num_rows, pa.bool_())
    if lo:
        inside = pc.and_(inside, pc.greater_equal(et, pa.scalar(lo, TS_TYPE)))
    if hi:
        inside = pc.and_(inside, pc.less(et, pa.scalar(hi, TS_TYPE)))
    inside = pc.fill_null(inside, False)
    current = rows.filter(inside)
    before = rows.filter(pc.invert(inside))
    if lo:
        before = before.filter(pc.less(before[schema.event_time], pa.scalar(lo, TS_TYPE)))
    before = before.filter(pc.is_valid(before[schema.label]))
    if current.num_rows == 0 or before.num_rows == 0:
        raise NotFoundError(f"no rows {'in the window' if current.num_rows == 0 else 'before the window to compare with'}",
                            hint="widen --from/--to; `llctl status` shows the newest event time")
    before = before.slice(max(0, before.num_rows - ctx.config.settings.drift.reference_rows))
    rep = drift_report(ctx, schema, before, current)
    window = " ".join(f"--{k} {v}" for k, v in (("from", from_), ("to", to)) if v)
    hint = rep.get("hint", "").replace("`llctl drift --batch <batch>`", f"`llctl drift {window}`")
    return DriftResult("window", None, bool(rep["drifted"]), rep, hint.replace("--batch <batch>", window))
