"""drift: the drift report of a batch (stored at ingest) or of an event-time window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import BatchNotFoundError, NotFoundError, UsageError
from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class DriftResult(Result):
    model: str
    scope: str
    batch: int | None
    drifted: bool
    report: dict[str, Any]
    hint: str
    # {"feature", "cause", "evidence", "figures"}: the report's likely causes (empty for reports stored before
    # they were computed, and when no pattern fits)
    likely_causes: list[dict[str, Any]] = field(default_factory=list)


def drift(ctx: AppContext, *, batch: int | None = None, from_: str | None = None,
          to: str | None = None) -> DriftResult:
    """Per-feature statistics, p-values and the decision, for one of the model's batches (against the
    model's own rows before it). Without arguments: its newest checked batch."""
    from lifelong_cli.store import batches

    if batch is not None and (from_ or to):
        raise UsageError("give either --batch or --from/--to, not both", hint="llctl drift --batch 12")
    if from_ or to:
        return _window(ctx, from_, to)
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        row = batches.get(t, model, batch) if batch is not None else batches.newest_drift(t, model)
    if row is None:
        if batch is not None:
            raise BatchNotFoundError(f"model '{model}' has no batch {batch}", hint="`llctl status` shows the newest batches")
        raise NotFoundError(f"no batch of model '{model}' has been checked for drift yet",
                            hint="ingest a second batch: the first one is the reference")
    if row["drift"] is None:
        raise NotFoundError(f"batch {row['id']} has no drift report ({row['kind']} batch, {row['status']}; "
                            "the first batch has no reference)", hint="`llctl drift --from T --to T` checks any window")
    rep = row["drift"]
    return DriftResult(model, "batch", row["id"], bool(rep["drifted"]), rep,
                       rep.get("hint", "").replace("<batch>", str(row["id"])), list(rep.get("likely_causes") or []))


def _window(ctx: AppContext, from_: str | None, to: str | None) -> DriftResult:
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import TS_TYPE, DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.ops.ingest import drift_report
    from lifelong_cli.store import batches, purge_rules
    from lifelong_cli.timeparse import parse_time

    now = ctx.now()
    lo = parse_time(from_, now=now, flag="--from") if from_ else None
    hi = parse_time(to, now=now, flag="--to") if to else None
    schema = DataSchema.from_settings(ctx.config.settings.data)
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        refs = batches.for_reading(t, model)
        rules = purge_rules.active(t, model)
    rows = rd.read_rows(DataStore(ctx.data_root), schema, refs, rules, trainable_only=False, holdout="include")
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
    return DriftResult(model, "window", None, bool(rep["drifted"]), rep, hint.replace("--batch <batch>", window),
                       list(rep.get("likely_causes") or []))
