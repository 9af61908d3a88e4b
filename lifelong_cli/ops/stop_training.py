"""stop-training: the big red button."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lifelong_cli.errors import NotFoundError, UsageError
from lifelong_cli.ops._base import Result, audited, notify_after_commit
from lifelong_cli.store import control

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class StopTrainingResult(Result):
    model: str
    changed: bool
    dry_run: bool
    stopped_by: str | None
    stopped_at: datetime | None
    reason: str | None
    lease_holder: str | None
    message: str
    next: str


@dataclass(frozen=True)
class StopAllModelsResult(Result):
    models: list[StopTrainingResult]
    changed: bool
    dry_run: bool
    message: str
    next: str


def stop_training(ctx: AppContext, *, reason: str, dry_run: bool = False) -> StopTrainingResult:
    """Set the model's stop flag: running trainers stop at their next step without writing a version;
    ``train``, ``push`` and ``canary step|promote`` are refused until ``resume``. Idempotent. Other
    models in the store are not touched."""
    reason = _require_reason(reason)
    now, model = ctx.now(), ctx.model
    if dry_run:
        with ctx.store.tx(write=False) as t:
            state = control.get(t, model)
        return _result(model, state, changed=False, dry_run=True, now=now)
    with audited(ctx, "stop-training", args={"reason": reason}, reason=reason) as (t, entry):
        state, changed = control.stop(t, model, actor=ctx.actor, reason=reason, now=now)
        entry.outcome, entry.detail = _audit_detail(state, changed, now)
    return _result(model, state, changed=changed, dry_run=False, now=now)


def stop_training_all_models(ctx: AppContext, *, reason: str, dry_run: bool = False) -> StopAllModelsResult:
    """Stop training of every model in the store (a shared upstream gone bad): one transaction, one
    audit entry per model."""
    from lifelong_cli.store import audit, models

    reason = _require_reason(reason)
    now = ctx.now()
    results = []
    with ctx.store.tx(write=not dry_run) as t:
        for model in models.names(t):
            if dry_run:
                results.append(_result(model, control.get(t, model), changed=False, dry_run=True, now=now))
                continue
            state, changed = control.stop(t, model, actor=ctx.actor, reason=reason, now=now)
            outcome, detail = _audit_detail(state, changed, now)
            audit.append(t, model=model, ts=now, actor=ctx.actor, verb="stop-training",
                         args={"reason": reason, "all_models": True}, reason=reason, outcome=outcome, detail=detail)
            results.append(_result(model, state, changed=changed, dry_run=False, now=now))
    if not results:
        raise NotFoundError("the state store holds no model yet", hint="`llctl init` adds one")
    for r in results:
        if r.changed:
            notify_after_commit(ctx, "stop-training", model=r.model, args={"reason": reason, "all_models": True},
                                reason=reason, outcome="ok", detail={})
    changed = [r.model for r in results if r.changed]
    if dry_run:
        message = f"dry run: would stop training of {len(results)} model(s): {', '.join(r.model for r in results)}"
    else:
        message = (f"training stopped for {len(changed)} of {len(results)} model(s)"
                   + (f": {', '.join(changed)}" if changed else "; all were already stopped"))
    return StopAllModelsResult(models=results, changed=bool(changed), dry_run=dry_run, message=message,
                               next="each model resumes on its own: `llctl --model NAME resume --reason ...`")


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise UsageError("--reason is required and must not be empty", hint='llctl stop-training --reason "why"')
    return reason


def _audit_detail(state: control.ControlState, changed: bool, now: datetime) -> tuple[str, dict]:
    return ("ok" if changed else "noop"), {"already_stopped_by": None if changed else state.stopped_by,
                                           "lease_holder": state.lease_holder if state.lease_active(now) else None}


def _result(model: str, state: control.ControlState, *, changed: bool, dry_run: bool, now: datetime
            ) -> StopTrainingResult:
    holder = state.lease_holder if state.lease_active(now) else None
    if dry_run:
        message = (
            f"would do nothing: training of model '{model}' already stopped by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z"
            if state.stopped
            else f"would stop training of model '{model}'" + (f" (running trainer {holder} stops at its next step)" if holder else "")
        )
    elif changed:
        message = f"model '{model}': training stopped by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z"
        if holder:
            message += f"; running trainer {holder} stops at its next step without writing a version"
    else:
        message = (
            f"model '{model}': training was already stopped by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z "
            f"({state.stop_reason}); nothing changed"
        )
    return StopTrainingResult(
        model=model,
        changed=changed,
        dry_run=dry_run,
        stopped_by=state.stopped_by,
        stopped_at=state.stopped_at,
        reason=state.stop_reason,
        lease_holder=holder,
        message=message,
        next="train, push and canary step/promote are refused until `llctl resume --reason ...`",
    )
