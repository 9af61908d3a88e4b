"""canary start | step | status | promote | abort | watch, for the model the command acts on.

The canary's state lives in the model's deployment row (version, share, step, state, when the step
began, the last analysis). Every change of that row — a new share, and a step that holds, suspects
or completes — is one audited compare-and-set computed from the row as it is locked for the change:
a verb that finds the canary changed since it looked (another engineer promoted, aborted or stepped
it) refuses with exit 5 and says what changed. Traffic changes then wait for the live replicas to
confirm them. Abort returns all traffic to stable; it is not a rollback of stable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import CheckFailedError, PreconditionError, TrainingHaltedError
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext
    from lifelong_cli.store.sql import Tx

# What a canary verb decides on: if any of these changed between its look and its write, it refuses.
_DECIDED_ON = ("canary_version", "canary_step", "canary_state", "stable_version", "fallback_mode")


@dataclass(frozen=True)
class CanaryResult(Result):
    model: str
    action: str
    state: str | None
    version: int | None
    stable: int | None
    share: float
    changed: bool
    analysis: dict[str, Any] | None = None
    confirm: dict[str, Any] | None = None
    message: str = ""
    next: str = ""
    exit_code: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def _task(ctx: AppContext) -> str:
    return "regression" if ctx.config.settings.data.label_type in ("float", "int") else "classification"


def _steps(ctx: AppContext) -> list[float]:
    return [s / 100 for s in ctx.config.settings.canary.steps]


def _named(ctx: AppContext, text: str) -> str:
    return f"model '{ctx.model}': {text}"


def _result(ctx: AppContext, action: str, dep: dict[str, Any], *, changed: bool, message: str = "",
            **kw: Any) -> CanaryResult:
    return CanaryResult(model=ctx.model, action=action, state=dep["canary_state"], version=dep["canary_version"],
                        stable=dep["stable_version"], share=float(dep["canary_share"] or 0.0), changed=changed,
                        message=_named(ctx, message), **kw)


def _read(ctx: AppContext) -> tuple[dict[str, Any], Any]:
    from lifelong_cli.store import control, deployment

    with ctx.store.tx(write=False) as t:
        return deployment.get(t, ctx.model), control.get(t, ctx.model)


def _confirm(ctx: AppContext, generation: int) -> dict[str, Any]:
    from lifelong_cli.store import replicas

    return replicas.wait_for(ctx, generation)


def _refuse_if_halted(ctx: AppContext, state: Any, what: str) -> None:
    if state.stopped:
        from lifelong_cli.ops.push import halted_error

        raise halted_error(state, what, ctx.model)


def what_changed(seen: dict[str, Any], now: dict[str, Any]) -> str:
    """How the deployment row ``now`` differs from the row ``seen`` earlier, in the canary's terms."""
    v, nv = seen["canary_version"], now["canary_version"]
    if v is not None and nv is None:
        if now["canary_state"] == "promoted" and now["stable_version"] == v:
            what = f"canary v{v} was promoted: v{v} is stable"
        else:
            what = f"canary v{v} was {now['canary_state'] or 'ended'}; stable is v{now['stable_version']}"
    elif nv != v:
        what = f"canary v{nv} was started" + (f" in place of v{v}" if v is not None else "")
    elif now["canary_step"] != seen["canary_step"]:
        what = f"canary v{v} moved from {seen['canary_share'] or 0:.0%} to {now['canary_share'] or 0:.0%}"
    elif now["canary_state"] != seen["canary_state"]:
        what = f"canary v{v} is now {now['canary_state']}"
    elif now["stable_version"] != seen["stable_version"]:
        what = f"stable changed from v{seen['stable_version']} to v{now['stable_version']}"
    elif now["fallback_mode"] != seen["fallback_mode"]:
        what = f"fallback was turned {'on' if now['fallback_mode'] else 'off'}"
    else:
        what = "the deployment row changed"
    return f"{what} (by {now['updated_by']}, generation {seen['generation']} → {now['generation']})"


def _lock(t: Tx, ctx: AppContext, seen: dict[str, Any], verb: str) -> dict[str, Any]:
    """The deployment row, locked for this change; refuses (exit 5) if what the verb decided on has
    changed since it looked."""
    from lifelong_cli.store import deployment

    dep = deployment.get(t, ctx.model, lock=True)
    if any(dep[k] != seen[k] for k in _DECIDED_ON):
        raise PreconditionError(_named(ctx, f"the canary changed while `canary {verb}` ran: {what_changed(seen, dep)}; "
                                            "nothing changed"),
                                hint="`llctl canary status` shows where it is now; decide again from there")
    return dep


def _write(t: Tx, ctx: AppContext, dep: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Apply ``changes`` to the locked row ``dep``; the row as it is now."""
    from lifelong_cli.store import deployment

    now = ctx.now()
    gen = deployment.compare_and_set(t, ctx.model, expected_generation=dep["generation"], actor=ctx.actor, now=now,
                                     **changes)
    return {**dep, **changes, "generation": gen, "updated_by": ctx.actor, "updated_at": now}


# -- start ---------------------------------------------------------------------------------------

def _check_start(ctx: AppContext, dep: dict[str, Any], row: dict[str, Any]) -> None:
    version = row["id"]
    if dep["canary_version"] is not None:
        raise PreconditionError(_named(ctx, f"canary v{dep['canary_version']} is running at {dep['canary_share']:.0%}"),
                                hint="`llctl canary promote` or `llctl canary abort` it first")
    if dep["stable_version"] == version:
        raise PreconditionError(_named(ctx, f"v{version} is already stable"), hint="nothing to launch")
    if row["pushed_at"] is None:
        raise PreconditionError(_named(ctx, f"v{version} has not been pushed"), hint=f"`llctl push {version}` first")
    if dep["fallback_mode"]:
        raise PreconditionError(_named(ctx, "fallback is on: every request is answered by the fallback, so a canary "
                                            "would see no traffic"), hint="`llctl fallback off` first")


def start(ctx: AppContext, *, version: int, reason: str | None = None, dry_run: bool = False) -> CanaryResult:
    """Send the first step's share of traffic to a pushed ``version`` (with no stable version yet, it
    becomes stable: the first launch)."""
    from lifelong_cli.ops.rollback import verify_local
    from lifelong_cli.store import control, replicas, versions

    dep, state = _read(ctx)
    _refuse_if_halted(ctx, state, "canary start")
    with ctx.store.tx(write=False) as t:
        row = versions.require(t, ctx.model, version)
        verdict = versions.latest_verdict(t, ctx.model, version)
    if dep["canary_version"] == version:
        return _result(ctx, "start", dep, changed=False, message=f"canary v{version} is already running at "
                       f"{dep['canary_share']:.0%}; nothing changed", next="`llctl canary status`")
    _check_start(ctx, dep, row)
    # its artifacts may have changed since the push: replicas would refuse to load them and the canary would hang
    problem = verify_local(row, ctx.registry_root)
    if problem:
        raise CheckFailedError(_named(ctx, f"v{version} cannot be served: {problem}; nothing changed"),
                               hint="train, validate and push another version")
    first = dep["stable_version"] is None
    share = 1.0 if first else _steps(ctx)[0]
    if dry_run:
        msg = (f"dry run: no stable version yet, v{version} would become stable (first launch)" if first
               else f"dry run: would send {share:.0%} of traffic to v{version} (stable v{dep['stable_version']})")
        return _result(ctx, "start", dep, changed=False, message=msg, next="run again without --dry-run")
    with audited(ctx, "canary start", args={"version": version}, reason=reason) as (t, entry):
        locked = _lock(t, ctx, dep, "start")
        _refuse_if_halted(ctx, control.get(t, ctx.model), "canary start")
        now = ctx.now()
        if first:
            dep = _write(t, ctx, locked, stable_version=version, canary_state="promoted", canary_share=0.0)
            versions.mark_promoted(t, ctx.model, version, now=now)
        else:
            dep = _write(t, ctx, locked, canary_version=version, canary_share=share, canary_step=0,
                         canary_state="running", canary_started_at=now, canary_step_started_at=now,
                         canary_analysis=None)
        entry.detail = {"version": version, "share": share, "first_launch": first, "verdict": verdict,
                        "state": dep["canary_state"], "generation": dep["generation"]}
    confirm = _confirm(ctx, dep["generation"])
    if first:
        return _result(ctx, "start", dep, changed=True, confirm=confirm,
                       message=f"no stable version yet: v{version} is now stable (first launch){replicas.describe(confirm)}",
                       next="train, validate and push the next version, then `llctl canary start V`")
    return _result(ctx, "start", dep, changed=True, confirm=confirm,
                   message=f"canary v{version} started: {share:.0%} of traffic (stable v{dep['stable_version']})"
                   f"{replicas.describe(confirm)}", next="`llctl canary watch` steps it through to promotion or abort")


# -- status --------------------------------------------------------------------------------------

def _analyse(ctx: AppContext, dep: dict[str, Any]) -> dict[str, Any]:
    from lifelong_cli.release.canary import analyse

    with ctx.store.tx(write=False) as t:
        return analyse(t, ctx.model, dep, ctx.config.settings, ctx.now(), _task(ctx))


def analysis(ctx: AppContext) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The deployment row and, if a canary is running, its analysis now."""
    dep, _ = _read(ctx)
    return dep, None if dep["canary_version"] is None else _analyse(ctx, dep)


def status(ctx: AppContext) -> CanaryResult:
    dep, a = analysis(ctx)
    if a is None:
        last = dep["canary_state"]
        return _result(ctx, "status", dep, changed=False, analysis=dep.get("canary_analysis"),
                       message=f"no canary running (last: {last or 'none'}); stable v{dep['stable_version']}"
                       if dep["stable_version"] else "no canary running and nothing stable yet",
                       next="`llctl canary start V` after `llctl push V`")
    steps = ctx.config.settings.canary.steps
    return _result(ctx, "status", dep, changed=False, analysis=a,
                   message=f"canary v{dep['canary_version']} at {dep['canary_share']:.0%} (step {dep['canary_step'] + 1} of "
                   f"{len(steps)}) against stable v{dep['stable_version']}: analysis {a['verdict']}",
                   next=_next_for(a))


def _next_for(a: dict[str, Any]) -> str:
    if a["verdict"] == "fail":
        return "`llctl canary step` aborts it (or `llctl canary abort`)"
    if a["verdict"] == "inconclusive":
        return "waiting: " + "; ".join(a["waiting_for"])
    return "`llctl canary step` moves to the next share"


# -- step ----------------------------------------------------------------------------------------

def _summary(a: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": a["verdict"], "requests": a["requests"], "failed": a["failed"], "waiting_for": a["waiting_for"]}


def _mark(ctx: AppContext, seen: dict[str, Any], a: dict[str, Any], state: str, reason: str | None) -> dict[str, Any]:
    """Record a step that keeps the share (holding, suspect, complete): the analysis and the state,
    audited with the step's outcome. Returns the row as written."""
    with audited(ctx, "canary step", args={"version": seen["canary_version"]}, reason=reason) as (t, entry):
        dep = _write(t, ctx, _lock(t, ctx, seen, "step"), canary_state=state, canary_analysis=a)
        entry.outcome = state
        entry.detail = {"version": dep["canary_version"], "share": dep["canary_share"], "state": state,
                        "generation": dep["generation"], "analysis": _summary(a)}
    return dep


def step(ctx: AppContext, *, reason: str | None = None) -> CanaryResult:
    """Analyse; fail → abort; inconclusive → hold; pass → next share (at 100%: eligible for promote)."""
    from lifelong_cli.store import control, replicas

    dep, state = _read(ctx)
    if dep["canary_version"] is None:
        raise PreconditionError(_named(ctx, "no canary is running"), hint="`llctl canary start V`")
    _refuse_if_halted(ctx, state, "canary step")
    a = _analyse(ctx, dep)
    v = dep["canary_version"]
    if a["verdict"] == "fail":
        before = dep.get("canary_analysis") or {}
        if before.get("verdict") == "fail" and before.get("share") == a["share"]:
            why = f"automatic: canary analysis failed twice in a row ({', '.join(a['failed'])})"
            r = abort(ctx, reason=f"{why}; {reason}" if reason else why, automatic=True, analysis=a, seen=dep)
            return CanaryResult(model=ctx.model, action="step", state="aborted", version=v, stable=r.stable, share=0.0,
                                changed=True, analysis=a, confirm=r.confirm, message=r.message, next=r.next,
                                exit_code=3)
        dep = _mark(ctx, dep, a, "suspect", reason)
        return _result(ctx, "step", dep, changed=False, analysis=a,
                       message=f"canary v{v} at {dep['canary_share']:.0%} FAILED {', '.join(a['failed'])}; "
                       "held, and aborted if the next look confirms it",
                       next="`llctl canary step` again (or `llctl canary abort` now)")
    if a["verdict"] == "inconclusive":
        if dep["canary_state"] != "holding":  # already holding: nothing new to record
            dep = _mark(ctx, dep, a, "holding", reason)
        return _result(ctx, "step", dep, changed=False, analysis=a,
                       message=f"holding canary v{v} at {dep['canary_share']:.0%}: " + "; ".join(a["waiting_for"]),
                       next="`llctl canary step` again later, or `llctl canary watch`")
    steps = _steps(ctx)
    idx = dep["canary_step"] or 0
    if idx + 1 >= len(steps):
        if dep["canary_state"] != "complete":
            dep = _mark(ctx, dep, a, "complete", reason)
        return _result(ctx, "step", dep, changed=False, analysis=a,
                       message=f"canary v{v} passed at {dep['canary_share']:.0%}: ready to promote",
                       next="`llctl canary promote`")
    share = steps[idx + 1]
    with audited(ctx, "canary step", args={"version": v, "share": share}, reason=reason) as (t, entry):
        locked = _lock(t, ctx, dep, "step")
        _refuse_if_halted(ctx, control.get(t, ctx.model), "canary step")
        dep = _write(t, ctx, locked, canary_share=share, canary_step=idx + 1, canary_state="running",
                     canary_step_started_at=ctx.now(), canary_analysis=a)
        entry.detail = {"version": v, "from": locked["canary_share"], "to": share, "state": "running",
                        "generation": dep["generation"], "analysis": {"verdict": a["verdict"], "requests": a["requests"]}}
    confirm = _confirm(ctx, dep["generation"])
    return _result(ctx, "step", dep, changed=True, analysis=a, confirm=confirm,
                   message=f"canary v{v}: {a['requests']['canary']} requests at this step passed; now {share:.0%} "
                   f"of traffic{replicas.describe(confirm)}",
                   next="`llctl canary step` again after the next window" if share < 1 else "one more passing window, then promote")


# -- promote and abort ---------------------------------------------------------------------------

def promote(ctx: AppContext, *, reason: str | None = None, force: bool = False,
            analysis_done: dict[str, Any] | None = None) -> CanaryResult:
    """Make the canary stable. ``analysis_done``: the analysis a passing step just made (watch), used
    instead of a fresh one that, a moment later, could disagree by chance."""
    from lifelong_cli.store import control, replicas, versions

    dep, state = _read(ctx)
    _refuse_if_halted(ctx, state, "canary promote")
    if dep["canary_version"] is None:
        raise PreconditionError(_named(ctx, "nothing to promote: no canary is running"), hint="`llctl canary start V`")
    a = analysis_done if analysis_done is not None else _analyse(ctx, dep)
    v = dep["canary_version"]
    if a["verdict"] == "fail" and not force:
        raise CheckFailedError(_named(ctx, f"canary v{v} fails its analysis ({', '.join(a['failed'])}); not promoted"),
                               hint="`llctl canary abort`; or --force --reason to promote anyway")
    with audited(ctx, "canary promote", args={"version": v, "force": force}, reason=reason) as (t, entry):
        locked = _lock(t, ctx, dep, "promote")
        _refuse_if_halted(ctx, control.get(t, ctx.model), "canary promote")
        old = locked["stable_version"]
        dep = _write(t, ctx, locked, stable_version=v, canary_version=None, canary_share=0.0, canary_step=None,
                     canary_state="promoted", canary_analysis=a)
        versions.mark_promoted(t, ctx.model, v, now=dep["updated_at"])
        entry.detail = {"version": v, "previous_stable": old, "analysis": a["verdict"], "state": "promoted",
                        "generation": dep["generation"]}
    confirm = _confirm(ctx, dep["generation"])
    early = "" if a["verdict"] == "pass" else f" (analysis was {a['verdict']})"
    return _result(ctx, "promote", dep, changed=True, analysis=a, confirm=confirm,
                   message=f"v{v} promoted: it is stable and takes all traffic (was v{old}){early}{replicas.describe(confirm)}",
                   next=f"`llctl rollback --to {old}` if it misbehaves" if old else "")


def abort(ctx: AppContext, *, reason: str | None = None, automatic: bool = False,
          analysis: dict[str, Any] | None = None, seen: dict[str, Any] | None = None) -> CanaryResult:
    """All traffic back to stable. Safe to repeat. An automatic abort marks the version as not good.
    ``seen``: the row the decision to abort was made on (an automatic abort refuses if it changed)."""
    from lifelong_cli.store import replicas, versions

    dep = seen if seen is not None else _read(ctx)[0]
    v = dep["canary_version"]
    if v is None:
        return _result(ctx, "abort", dep, changed=False, message="no canary is running; nothing changed")
    with audited(ctx, "canary abort", args={"version": v, "automatic": automatic}, reason=reason) as (t, entry):
        locked = _abort_lock(t, ctx, dep, strict=seen is not None)
        if locked["canary_version"] is None:  # aborted by someone else meanwhile: what was asked is done
            entry.outcome, entry.detail = "noop", {"version": v, "already": locked["canary_state"]}
            return _result(ctx, "abort", locked, changed=False,
                           message=f"canary v{v} was already aborted ({what_changed(dep, locked)}); nothing changed")
        dep = _write(t, ctx, locked, canary_version=None, canary_share=0.0, canary_step=None, canary_state="aborted",
                     **({"canary_analysis": analysis} if analysis else {}))
        if automatic:
            versions.demote(t, ctx.model, v, now=dep["updated_at"], reason=reason or "automatic canary abort")
        entry.detail = {"version": v, "share_was": locked["canary_share"], "automatic": automatic, "state": "aborted",
                        "generation": dep["generation"], **({"failed": analysis["failed"]} if analysis else {})}
    confirm = _confirm(ctx, dep["generation"])
    why = f" ({reason})" if reason else ""
    return _result(ctx, "abort", dep, changed=True, analysis=analysis, confirm=confirm,
                   message=f"canary v{v} aborted{why}: all traffic back to stable v{dep['stable_version']}"
                   f"{replicas.describe(confirm)}",
                   next="stable was not changed; `llctl rollback` is a separate decision")


def _abort_lock(t: Tx, ctx: AppContext, seen: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """The row locked for an abort of ``seen``'s canary. A manual abort goes ahead whatever step the
    canary reached, and is a no-op if the canary was aborted meanwhile; it refuses if the canary was
    promoted or replaced. An automatic abort (``strict``) refuses on any change: its analysis is stale."""
    if strict:
        return _lock(t, ctx, seen, "step")
    from lifelong_cli.store import deployment

    dep = deployment.get(t, ctx.model, lock=True)
    v = seen["canary_version"]
    promoted = dep["canary_version"] is None and dep["canary_state"] == "promoted" and dep["stable_version"] == v
    if promoted or dep["canary_version"] not in (v, None):
        raise PreconditionError(_named(ctx, f"the canary changed while `canary abort` ran: {what_changed(seen, dep)}; "
                                            "nothing changed"),
                                hint=f"`llctl rollback --to {seen['stable_version']}` if v{v} must not serve"
                                if promoted else "`llctl canary status`, then abort again if it should go")
    return dep


# -- watch ---------------------------------------------------------------------------------------

def watch(ctx: AppContext, *, timeout: float = 3600.0, interval: float = 5.0, reason: str | None = None,
          progress: Callable[[str], None] | None = None) -> CanaryResult:
    """Step until promoted (exit 0), aborted (3), or the timeout passes while holding (3).
    While training is stopped the canary is frozen: watch waits without stepping. A step or promote
    that loses a race with another verb is not an error here: the next look sees what the other did."""
    say = progress or (lambda _m: None)
    dep, _ = _read(ctx)
    if dep["canary_version"] is None:
        raise PreconditionError(_named(ctx, "no canary is running"), hint="`llctl canary start V`")
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    last_msg = None
    while True:
        dep, state = _read(ctx)
        if dep["canary_version"] is None:
            return _result(ctx, "watch", dep, changed=bool(events), events=events,
                           exit_code=0 if dep["canary_state"] == "promoted" else 3,
                           message=f"the canary ended elsewhere: {dep['canary_state']}")
        r, msg = None, _named(ctx, f"frozen at {dep['canary_share']:.0%}: training is stopped ({state.stop_reason})")
        if not state.stopped:
            try:
                r = step(ctx, reason=reason)
                msg = r.message
                if r.changed or r.state in ("aborted", "complete"):
                    events.append({"at": ctx.now(), "state": r.state, "share": r.share, "message": r.message})
                if r.state == "aborted":
                    say(msg)
                    return _ended(r, "aborted", 3, events)
                if r.state == "complete":
                    say(msg)
                    p = promote(ctx, reason=reason or "canary watch: every step passed", analysis_done=r.analysis)
                    say(p.message)
                    events.append({"at": ctx.now(), "state": "promoted", "share": 1.0, "message": p.message})
                    return _ended(p, "promoted", 0, events)
            except PreconditionError as exc:  # stopped, or another verb changed the canary since the look above
                if not isinstance(exc, TrainingHaltedError) and _read(ctx)[0]["generation"] == dep["generation"]:
                    raise
                msg = exc.message
        if msg != last_msg:
            say(msg)
            last_msg = msg
        if time.monotonic() >= deadline:
            return _result(ctx, "watch", dep, changed=bool(events), analysis=r.analysis if r else None, events=events,
                           exit_code=3, message=f"timed out after {timeout:g} s with canary v{dep['canary_version']} "
                           f"held at {dep['canary_share']:.0%}: {msg.removeprefix(_named(ctx, ''))}",
                           next="`llctl canary status`; abort or keep watching")
        time.sleep(interval)


def _ended(r: CanaryResult, state: str, exit_code: int, events: list[dict[str, Any]]) -> CanaryResult:
    return CanaryResult(model=r.model, action="watch", state=state, version=r.stable if state == "promoted" else r.version,
                        stable=r.stable, share=0.0, changed=True, analysis=r.analysis, confirm=r.confirm,
                        message=r.message, next=r.next, exit_code=exit_code, events=events)
