"""resume: the inverse of stop-training."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lifelong_cli.ops._base import Result, audited
from lifelong_cli.store import control

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class ResumeResult(Result):
    changed: bool
    dry_run: bool
    resumed_by: str | None
    resumed_at: datetime | None
    was_stopped_by: str | None
    was_stopped_at: datetime | None
    stop_reason: str | None
    message: str
    next: str


def resume(ctx: AppContext, *, reason: str | None = None, dry_run: bool = False) -> ResumeResult:
    """Lift the stop flag; the next ``train`` continues from the training head. Idempotent."""
    reason = (reason or "").strip() or None
    now = ctx.now()
    if dry_run:
        with ctx.store.tx(write=False) as conn:
            before = control.get(conn)
        msg = (f"would resume training (stopped by {before.stopped_by}: {before.stop_reason})"
               if before.stopped else "would do nothing: training is not stopped")
        return ResumeResult(False, True, None, None, before.stopped_by if before.stopped else None,
                            before.stopped_at if before.stopped else None,
                            before.stop_reason if before.stopped else None, msg, "")
    with audited(ctx, "resume", args={"reason": reason}, reason=reason) as (conn, entry):
        before = control.get(conn)
        state, changed = control.resume(conn, actor=ctx.actor, reason=reason, now=now)
        entry.outcome = "ok" if changed else "noop"
    if changed:
        message = (f"training resumed by {state.resumed_by} at {state.resumed_at:%Y-%m-%d %H:%M:%S}Z "
                   f"(had been stopped by {before.stopped_by}: {before.stop_reason})")
    else:
        message = "training was not stopped; nothing changed"
    return ResumeResult(
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
