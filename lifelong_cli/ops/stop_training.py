"""stop-training: the big red button."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lifelong_cli.errors import UsageError
from lifelong_cli.ops._base import Result, audited
from lifelong_cli.store import control

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class StopTrainingResult(Result):
    changed: bool
    dry_run: bool
    stopped_by: str | None
    stopped_at: datetime | None
    reason: str | None
    lease_holder: str | None
    message: str
    next: str


def stop_training(ctx: AppContext, *, reason: str, dry_run: bool = False) -> StopTrainingResult:
    """Set the stop flag: running trainers stop at their next step without writing a version;
    ``train``, ``push`` and ``canary step|promote`` are refused until ``resume``. Idempotent."""
    reason = (reason or "").strip()
    if not reason:
        raise UsageError("--reason is required and must not be empty", hint='llctl stop-training --reason "why"')
    now = ctx.now()
    if dry_run:
        with ctx.store.tx(write=False) as conn:
            state = control.get(conn)
        return _result(state, changed=False, dry_run=True, now=now)
    with audited(ctx, "stop-training", args={"reason": reason}, reason=reason) as (conn, entry):
        state, changed = control.stop(conn, actor=ctx.actor, reason=reason, now=now)
        entry.outcome = "ok" if changed else "noop"
        entry.detail = {"already_stopped_by": None if changed else state.stopped_by,
                        "lease_holder": state.lease_holder if state.lease_active(now) else None}
    return _result(state, changed=changed, dry_run=False, now=now)


def _result(state: control.ControlState, *, changed: bool, dry_run: bool, now: datetime) -> StopTrainingResult:
    holder = state.lease_holder if state.lease_active(now) else None
    if dry_run:
        message = (
            f"would do nothing: training already stopped by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z"
            if state.stopped
            else "would stop training" + (f" (running trainer {holder} stops at its next step)" if holder else "")
        )
    elif changed:
        message = f"training stopped by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z"
        if holder:
            message += f"; running trainer {holder} stops at its next step without writing a version"
    else:
        message = (
            f"training was already stopped by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z "
            f"({state.stop_reason}); nothing changed"
        )
    return StopTrainingResult(
        changed=changed,
        dry_run=dry_run,
        stopped_by=state.stopped_by,
        stopped_at=state.stopped_at,
        reason=state.stop_reason,
        lease_holder=holder,
        message=message,
        next="train, push and canary step/promote are refused until `llctl resume --reason ...`",
    )
