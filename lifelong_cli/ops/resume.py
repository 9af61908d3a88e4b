"""resume: the inverse of stop-training."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lifelong_cli.ops._base import Result, audited
from lifelong_cli.store import control, slo

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class ResumeResult(Result):
    model: str
    changed: bool
    dry_run: bool
    resumed_by: str | None
    resumed_at: datetime | None
    was_stopped_by: str | None
    was_stopped_at: datetime | None
    stop_reason: str | None
    message: str
    next: str


ROLL_THROUGH_HOURS = 24.0


def resume(ctx: AppContext, *, reason: str | None = None, dry_run: bool = False,
           roll_through: bool = False) -> ResumeResult:
    """Lift the stop flag; the next ``train`` continues from the training head. Idempotent.

    ``roll_through``: the data that caused the stop is real (an external event), not broken: nothing
    is purged, and the persistent-drift SLO is relaxed for 24 hours so the shifted stream does not
    page again while the model learns it (in the same transaction, audited)."""
    reason = (reason or "").strip() or None
    now, model = ctx.now(), ctx.model
    if dry_run:
        with ctx.store.tx(write=False) as conn:
            before = control.get(conn, model)
        msg = (f"would resume training of model '{model}' (stopped by {before.stopped_by}: {before.stop_reason})"
               if before.stopped else f"would do nothing: training of model '{model}' is not stopped")
        return ResumeResult(model=model, changed=False, dry_run=True, resumed_by=None, resumed_at=None,
                            was_stopped_by=before.stopped_by if before.stopped else None,
                            was_stopped_at=before.stopped_at if before.stopped else None,
                            stop_reason=before.stop_reason if before.stopped else None, message=msg, next="")
    with audited(ctx, "resume", args={"reason": reason, "roll_through": roll_through}, reason=reason) as (conn, entry):
        before = control.get(conn, model)
        state, changed = control.resume(conn, model, actor=ctx.actor, reason=reason, now=now)
        entry.outcome = "ok" if changed else "noop"
        if roll_through:
            from datetime import timedelta

            slo.relax(conn, model, policy="drift", until=now + timedelta(hours=ROLL_THROUGH_HOURS), now=now,
                      actor=ctx.actor, reason=f"resume --roll-through: {reason or 'external event'}")
            entry.detail = {"roll_through": True, "drift_relaxed_hours": ROLL_THROUGH_HOURS}
    if changed:
        message = (f"model '{model}': training resumed by {state.resumed_by} at {state.resumed_at:%Y-%m-%d %H:%M:%S}Z "
                   f"(had been stopped by {before.stopped_by}: {before.stop_reason})")
    else:
        message = f"model '{model}': training was not stopped; nothing changed"
    if roll_through:
        message += f"; rolling through: nothing purged, the drift SLO is relaxed for {ROLL_THROUGH_HOURS:g} h"
    return ResumeResult(
        model=model,
        changed=changed,
        dry_run=False,
        resumed_by=state.resumed_by if changed else None,
        resumed_at=state.resumed_at if changed else None,
        was_stopped_by=before.stopped_by if changed else None,
        was_stopped_at=before.stopped_at if changed else None,
        stop_reason=before.stop_reason if changed else None,
        message=message,
        next="`llctl train` continues from the training head over the remaining data",
    )
