"""Batches on hold: stored, never lost, not trainable until a person releases them (their rows then
become trainable, their labels the newest delivery) or rejects them (kept on disk, never read)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import BatchNotFoundError, PreconditionError, UsageError
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class HoldsResult(Result):
    model: str
    holds: list[dict[str, Any]]  # batch, kind, source, held since, age (s), cause, reason, figures
    message: str
    next: str = ""


@dataclass(frozen=True)
class HoldDecision(Result):
    model: str
    batch: int
    decision: str  # released | rejected
    released_as: int | None  # the new batch id its rows and labels are trainable under
    changed: bool
    rows_trainable: int = 0
    rows_holdout: int = 0
    dry_run: bool = False
    message: str = ""
    next: str = ""
    hold: dict[str, Any] = field(default_factory=dict)
    roll_through_until: Any = None  # --roll-through: the drift SLO and drift holds relaxed until then


def data_holds(ctx: AppContext) -> HoldsResult:
    """The model's batches on hold, oldest first, with why."""
    from lifelong_cli.store import batches

    now = ctx.now()
    with ctx.store.tx(write=False) as t:
        rows = batches.held(t, ctx.model)
    holds = [{"batch": b["id"], "kind": b["kind"], "source": b["source"], "input": b["input"],
              "held_since": b["created_at"], "age_seconds": round((now - b["created_at"]).total_seconds(), 1),
              "rows": b["rows_accepted"], **{k: v for k, v in ((b["detail"] or {}).get("hold") or {}).items()}}
             for b in rows]
    if not holds:
        return HoldsResult(ctx.model, [], f"model '{ctx.model}': no batch is on hold")
    return HoldsResult(ctx.model, holds, f"model '{ctx.model}': {len(holds)} batch(es) on hold",
                       "`llctl data release BATCH --reason ...` (its labels then win) or "
                       "`llctl data reject BATCH --reason ...` (kept on disk, never trained on)")


def data_release(ctx: AppContext, *, batch: int, reason: str | None, dry_run: bool = False,
                 roll_through: bool = False, hours: float = 24.0) -> HoldDecision:
    """Accept a held batch: its rows become trainable under a new batch id (the newest: the next
    ``train`` reads them, and its labels are the newest delivery of their examples).

    ``roll_through``: the drift is a real shift of the world, not a fault — also relax the drift SLO
    for ``hours``, during which ingest flags drift without holding batches for it."""
    res = _decide(ctx, batch=batch, reason=reason, dry_run=dry_run, release=True)
    if not roll_through:
        return res
    if dry_run:
        return replace(res, message=f"{res.message}; would relax the drift SLO and drift holds for {hours:g} h")
    from lifelong_cli.ops.check import relax

    r = relax(ctx, policy="drift", hours=hours, reason=reason)
    return replace(res, roll_through_until=r.until,
                   message=f"{res.message}; rolling through: drift is flagged, not held, until {r.until}",
                   next="`llctl train` to learn the new data; `llctl check` reports the drift policy as relaxed")


def data_reject(ctx: AppContext, *, batch: int, reason: str | None, dry_run: bool = False) -> HoldDecision:
    """Keep a held batch out for good: it stays on disk (nothing is deleted) and is never read."""
    return _decide(ctx, batch=batch, reason=reason, dry_run=dry_run, release=False)


def _decide(ctx: AppContext, *, batch: int, reason: str | None, dry_run: bool, release: bool) -> HoldDecision:
    from lifelong_cli.store import batches

    verb = "release" if release else "reject"
    reason = (reason or "").strip()
    if not reason and not dry_run:
        raise UsageError("--reason is required", hint=f'llctl data {verb} {batch} --reason "why"')
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        row = batches.get(t, model, batch)
    if row is None:
        raise BatchNotFoundError(f"model '{model}' has no batch {batch}", hint="`llctl data holds` lists the held ones")
    hold = (row["detail"] or {}).get("hold") or {}
    if row["status"] != "held":
        done = (row["detail"] or {}).get("released_as")
        return HoldDecision(model, batch, "released" if done else row["status"], done, False, hold=hold,
                            message=f"model '{model}': batch {batch} is not on hold ({row['status']}"
                                    + (f", released as batch {done}" if done else "") + "); nothing changed")
    if dry_run:
        return HoldDecision(model, batch, "released" if release else "rejected", None, False, dry_run=True, hold=hold,
                            message=f"dry run: would {verb} batch {batch} of model '{model}' (held: "
                                    f"{hold.get('reason', '?')})", next="run again without --dry-run")
    new_id = None
    with audited(ctx, f"data-{verb}", args={"batch": batch}, reason=reason) as (t, entry):
        if release:
            copy = {k: row[k] for k in ("kind", "source", "content_hash", "input", "rows_read", "rows_accepted",
                                        "rows_quarantined", "rows_duplicate", "event_time_min", "event_time_max",
                                        "segment_path", "drifted", "drift")}
            new_id = batches.add(t, model, **copy, status="accepted", created_at=ctx.now(), created_by=ctx.actor,
                                 detail={**(row["detail"] or {}), "released_from": batch, "release_reason": reason})
            if new_id is None:
                raise PreconditionError(f"model '{model}': the content of batch {batch} is already accepted as another "
                                        "batch; nothing changed", hint="`llctl data reject` it instead")
        if not batches.close_hold(t, model, batch, status="released" if release else "rejected",
                                  detail={"released_as": new_id, "decided_by": ctx.actor, "decision_reason": reason}):
            raise PreconditionError(f"model '{model}': batch {batch} was released or rejected meanwhile",
                                    hint="`llctl data holds` shows what is still on hold")
        entry.detail = {"batch": batch, "released_as": new_id, "hold": hold.get("cause")}
    if not release:
        return HoldDecision(model, batch, "rejected", None, True, hold=hold,
                            message=f"model '{model}': batch {batch} rejected: kept on disk, never trained on")
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.ops.ingest import trainable_counts
    from lifelong_cli.store import purge_rules

    with ctx.store.tx(write=False) as t:
        refs, rules = batches.for_reading(t, model), purge_rules.active(t, model)
    data, schema = DataStore(ctx.data_root), DataSchema.from_settings(ctx.config.settings.data)
    trainable, held_out, waiting = trainable_counts(data, schema, refs, rules, new_id, row["kind"], row["segment_path"])
    with ctx.store.tx() as t:
        batches.set_counts(t, model, new_id, rows_trainable=trainable, rows_holdout=held_out, labels_waiting=waiting)
    return HoldDecision(model, batch, "released", new_id, True, trainable, held_out, hold=hold,
                        message=f"model '{model}': batch {batch} released as batch {new_id}: {trainable} row(s) "
                                f"trainable, {held_out} hold-out" + (", its labels in use" if row["kind"] != "examples" else ""),
                        next="`llctl train` to learn from it")
