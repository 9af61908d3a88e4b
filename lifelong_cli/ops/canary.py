"""canary start | step | status | promote | abort | watch.

The canary's state lives in the deployment row (version, share, step, state, when the step began,
the last analysis); every change is one audited compare-and-set, and waits for the live replicas to
confirm it. Abort returns all traffic to stable; it is not a rollback of stable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import CheckFailedError, ModelVersionNotFoundError, PreconditionError
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class CanaryResult(Result):
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


def _result(action: str, dep: dict[str, Any], *, changed: bool, **kw: Any) -> CanaryResult:
    return CanaryResult(action, dep["canary_state"], dep["canary_version"], dep["stable_version"],
                        float(dep["canary_share"] or 0.0), changed, **kw)


def _read(ctx: AppContext) -> tuple[dict[str, Any], Any]:
    from lifelong_cli.store import control, deployment

    with ctx.store.tx(write=False) as t:
        return deployment.get(t), control.get(t)


def _confirm(ctx: AppContext, generation: int) -> dict[str, Any]:
    from lifelong_cli.store import replicas

    return replicas.wait_for(ctx, generation)


def _halted(state, what: str):
    from lifelong_cli.ops.push import halted_error

    return halted_error(state, what)


def start(ctx: AppContext, *, version: int, reason: str | None = None, dry_run: bool = False) -> CanaryResult:
    from lifelong_cli.ops.push import latest_verdict
    from lifelong_cli.ops.rollback import verify_local
    from lifelong_cli.store import deployment, replicas

    dep, state = _read(ctx)
    if state.stopped:
        raise _halted(state, "canary start")
    with ctx.store.tx(write=False) as t:
        row = t.row("SELECT id, pushed_at, artifacts FROM model_versions WHERE id = :v", {"v": version},
                    types={"pushed_at": "ts", "artifacts": "json"})
        verdict = latest_verdict(t, version)
    if row is None:
        raise ModelVersionNotFoundError(f"no model version {version}", hint="`llctl versions` lists them")
    if dep["canary_version"] == version:
        return _result("start", dep, changed=False, message=f"canary v{version} is already running at "
                       f"{dep['canary_share']:.0%}; nothing changed", next="`llctl canary status`")
    if dep["canary_version"] is not None:
        raise PreconditionError(f"canary v{dep['canary_version']} is running at {dep['canary_share']:.0%}",
                                hint="`llctl canary promote` or `llctl canary abort` it first")
    if dep["stable_version"] == version:
        raise PreconditionError(f"v{version} is already stable", hint="nothing to launch")
    if row["pushed_at"] is None:
        raise PreconditionError(f"v{version} has not been pushed", hint=f"`llctl push {version}` first")
    # its artifacts may have changed since the push: replicas would refuse to load them and the canary would hang
    problem = verify_local(row, ctx.config.registry_root)
    if problem:
        raise CheckFailedError(f"v{version} cannot be served: {problem}; nothing changed",
                               hint="train, validate and push another version")
    if dep["fallback_mode"]:
        raise PreconditionError("fallback is on: every request is answered by the fallback, so a canary would see no traffic",
                                hint="`llctl fallback off` first")
    first = dep["stable_version"] is None
    share = 1.0 if first else _steps(ctx)[0]
    if dry_run:
        msg = (f"dry run: no stable version yet, v{version} would become stable (first launch)" if first
               else f"dry run: would send {share:.0%} of traffic to v{version} (stable v{dep['stable_version']})")
        return _result("start", dep, changed=False, message=msg, next="run again without --dry-run")
    now = ctx.now()
    with audited(ctx, "canary start", args={"version": version}, reason=reason) as (t, entry):
        if first:
            gen = deployment.update_locked(t, actor=ctx.actor, now=now, stable_version=version, canary_state="promoted",
                                           canary_share=0.0)
            t.execute("UPDATE model_versions SET promoted_at = :now WHERE id = :v", {"now": now, "v": version})
        else:
            gen = deployment.update_locked(t, actor=ctx.actor, now=now, canary_version=version, canary_share=share,
                                           canary_step=0, canary_state="running", canary_started_at=now,
                                           canary_step_started_at=now, canary_analysis=None)
        entry.detail = {"version": version, "share": share, "first_launch": first, "verdict": verdict, "generation": gen}
    confirm = _confirm(ctx, gen)
    dep, _ = _read(ctx)
    if first:
        return _result("start", dep, changed=True, confirm=confirm,
                       message=f"no stable version yet: v{version} is now stable (first launch){replicas.describe(confirm)}",
                       next="train, validate and push the next version, then `llctl canary start V`")
    return _result("start", dep, changed=True, confirm=confirm,
                   message=f"canary v{version} started: {share:.0%} of traffic (stable v{dep['stable_version']})"
                   f"{replicas.describe(confirm)}", next="`llctl canary watch` steps it through to promotion or abort")


def analysis(ctx: AppContext) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from lifelong_cli.release.canary import analyse

    dep, _ = _read(ctx)
    if dep["canary_version"] is None:
        return dep, None
    with ctx.store.tx(write=False) as t:
        return dep, analyse(t, dep, ctx.config.settings, ctx.now(), _task(ctx))


def status(ctx: AppContext) -> CanaryResult:
    dep, a = analysis(ctx)
    if a is None:
        last = dep["canary_state"]
        return _result("status", dep, changed=False, analysis=dep.get("canary_analysis"),
                       message=f"no canary running (last: {last or 'none'}); stable v{dep['stable_version']}"
                       if dep["stable_version"] else "no canary running and nothing stable yet",
                       next="`llctl canary start V` after `llctl push V`")
    steps = ctx.config.settings.canary.steps
    return _result("status", dep, changed=False, analysis=a,
                   message=f"canary v{dep['canary_version']} at {dep['canary_share']:.0%} (step {dep['canary_step'] + 1} of "
                   f"{len(steps)}) against stable v{dep['stable_version']}: analysis {a['verdict']}",
                   next=_next_for(a))


def _next_for(a: dict[str, Any]) -> str:
    if a["verdict"] == "fail":
        return "`llctl canary step` aborts it (or `llctl canary abort`)"
    if a["verdict"] == "inconclusive":
        return "waiting: " + "; ".join(a["waiting_for"])
    return "`llctl canary step` moves to the next share"


def _store_analysis(ctx: AppContext, dep: dict[str, Any], a: dict[str, Any], **changes: Any) -> int:
    from lifelong_cli.store import deployment

    with ctx.store.tx() as t:
        return deployment.compare_and_set(t, expected_generation=dep["generation"], actor=ctx.actor, now=ctx.now(),
                                          canary_analysis=a, **changes)


def step(ctx: AppContext, *, reason: str | None = None) -> CanaryResult:
    """Analyse; fail → abort; inconclusive → hold; pass → next share (at 100%: eligible for promote)."""
    from lifelong_cli.store import deployment, replicas

    dep, state = _read(ctx)
    if dep["canary_version"] is None:
        raise PreconditionError("no canary is running", hint="`llctl canary start V`")
    if state.stopped:
        raise _halted(state, "canary step")
    dep, a = analysis(ctx)
    assert a is not None
    if a["verdict"] == "fail":
        before = dep.get("canary_analysis") or {}
        confirmed = before.get("verdict") == "fail" and before.get("share") == a["share"]
        if confirmed:
            r = abort(ctx, reason=f"automatic: canary analysis failed twice in a row ({', '.join(a['failed'])})",
                      automatic=True, analysis=a)
            return CanaryResult("step", "aborted", dep["canary_version"], dep["stable_version"], 0.0, True, a, r.confirm,
                                r.message, r.next, exit_code=3)
        _store_analysis(ctx, dep, a, canary_state="suspect")
        dep, _ = _read(ctx)
        return _result("step", dep, changed=False, analysis=a,
                       message=f"canary v{dep['canary_version']} at {dep['canary_share']:.0%} FAILED {', '.join(a['failed'])}; "
                       "held, and aborted if the next look confirms it",
                       next="`llctl canary step` again (or `llctl canary abort` now)")
    if a["verdict"] == "inconclusive":
        _store_analysis(ctx, dep, a, canary_state="holding")
        dep, _ = _read(ctx)
        return _result("step", dep, changed=False, analysis=a,
                       message=f"holding canary v{dep['canary_version']} at {dep['canary_share']:.0%}: "
                       + "; ".join(a["waiting_for"]), next="`llctl canary step` again later, or `llctl canary watch`")
    steps = _steps(ctx)
    idx = dep["canary_step"] or 0
    if idx + 1 >= len(steps):
        _store_analysis(ctx, dep, a, canary_state="complete")
        dep, _ = _read(ctx)
        return _result("step", dep, changed=False, analysis=a,
                       message=f"canary v{dep['canary_version']} passed at {dep['canary_share']:.0%}: ready to promote",
                       next="`llctl canary promote`")
    share = steps[idx + 1]
    now = ctx.now()
    with audited(ctx, "canary step", args={"version": dep["canary_version"], "share": share}, reason=reason) as (t, entry):
        gen = deployment.compare_and_set(t, expected_generation=dep["generation"], actor=ctx.actor, now=now,
                                         canary_share=share, canary_step=idx + 1, canary_state="running",
                                         canary_step_started_at=now, canary_analysis=a)
        entry.detail = {"version": dep["canary_version"], "from": dep["canary_share"], "to": share, "generation": gen,
                        "analysis": {"verdict": a["verdict"], "requests": a["requests"]}}
    confirm = _confirm(ctx, gen)
    dep, _ = _read(ctx)
    return _result("step", dep, changed=True, analysis=a, confirm=confirm,
                   message=f"canary v{dep['canary_version']}: {a['requests']['canary']} requests at this step passed; now {share:.0%} "
                   f"of traffic{replicas.describe(confirm)}",
                   next="`llctl canary step` again after the next window" if share < 1 else "one more passing window, then promote")


def promote(ctx: AppContext, *, reason: str | None = None, force: bool = False,
            analysis_done: dict[str, Any] | None = None) -> CanaryResult:
    """Make the canary stable. ``analysis_done``: the analysis a passing step just made (watch), used
    instead of a fresh one that, a moment later, could disagree by chance."""
    from lifelong_cli.store import deployment, replicas

    dep, state = _read(ctx)
    if state.stopped:
        raise _halted(state, "canary promote")
    if dep["canary_version"] is None:
        raise PreconditionError("nothing to promote: no canary is running", hint="`llctl canary start V`")
    if analysis_done is not None:
        a = analysis_done
    else:
        dep, a = analysis(ctx)
        assert a is not None
    if a["verdict"] == "fail" and not force:
        raise CheckFailedError(f"canary v{dep['canary_version']} fails its analysis ({', '.join(a['failed'])}); not promoted",
                               hint="`llctl canary abort`; or --force --reason to promote anyway")
    v, old = dep["canary_version"], dep["stable_version"]
    now = ctx.now()
    with audited(ctx, "canary promote", args={"version": v, "force": force}, reason=reason) as (t, entry):
        gen = deployment.compare_and_set(t, expected_generation=dep["generation"], actor=ctx.actor, now=now,
                                         stable_version=v, canary_version=None, canary_share=0.0, canary_step=None,
                                         canary_state="promoted", canary_analysis=a)
        t.execute("UPDATE model_versions SET promoted_at = :now WHERE id = :v", {"now": now, "v": v})
        entry.detail = {"version": v, "previous_stable": old, "analysis": a["verdict"], "generation": gen}
    confirm = _confirm(ctx, gen)
    dep, _ = _read(ctx)
    early = "" if a["verdict"] == "pass" and dep["canary_share"] == 0 else f" (analysis was {a['verdict']})"
    return _result("promote", dep, changed=True, analysis=a, confirm=confirm,
                   message=f"v{v} promoted: it is stable and takes all traffic (was v{old}){early}{replicas.describe(confirm)}",
                   next=f"`llctl rollback --to {old}` if it misbehaves" if old else "")


def abort(ctx: AppContext, *, reason: str | None = None, automatic: bool = False,
          analysis: dict[str, Any] | None = None) -> CanaryResult:
    """All traffic back to stable. Safe to repeat. An automatic abort marks the version as not good."""
    from lifelong_cli.store import deployment, replicas

    dep, _ = _read(ctx)
    v = dep["canary_version"]
    if v is None:
        return _result("abort", dep, changed=False, message="no canary is running; nothing changed")
    now = ctx.now()
    with audited(ctx, "canary abort", args={"version": v, "automatic": automatic}, reason=reason) as (t, entry):
        gen = deployment.update_locked(t, actor=ctx.actor, now=now, canary_version=None, canary_share=0.0,
                                       canary_step=None, canary_state="aborted",
                                       **({"canary_analysis": analysis} if analysis else {}))
        if automatic:
            t.execute("UPDATE model_versions SET demoted_at = :now, demoted_reason = :why WHERE id = :v",
                      {"now": now, "why": reason, "v": v})
        entry.detail = {"version": v, "share_was": dep["canary_share"], "automatic": automatic, "generation": gen,
                        **({"failed": analysis["failed"]} if analysis else {})}
    confirm = _confirm(ctx, gen)
    dep, _ = _read(ctx)
    why = f" ({reason})" if reason else ""
    return _result("abort", dep, changed=True, analysis=analysis, confirm=confirm,
                   message=f"canary v{v} aborted{why}: all traffic back to stable v{dep['stable_version']}"
                   f"{replicas.describe(confirm)}",
                   next="stable was not changed; `llctl rollback` is a separate decision")


def watch(ctx: AppContext, *, timeout: float = 3600.0, interval: float = 5.0,
          progress: Callable[[str], None] | None = None) -> CanaryResult:
    """Step until promoted (exit 0), aborted (3), or the timeout passes while holding (3).
    While training is stopped the canary is frozen: watch waits without stepping."""
    say = progress or (lambda _m: None)
    dep, _ = _read(ctx)
    if dep["canary_version"] is None:
        raise PreconditionError("no canary is running", hint="`llctl canary start V`")
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    last_msg = None
    while True:
        dep, state = _read(ctx)
        if dep["canary_version"] is None:
            return _result("watch", dep, changed=bool(events), events=events, exit_code=0 if dep["canary_state"] == "promoted" else 3,
                           message=f"the canary ended elsewhere: {dep['canary_state']}")
        if state.stopped:
            msg = f"frozen at {dep['canary_share']:.0%}: training is stopped ({state.stop_reason})"
            r = None
        else:
            r = step(ctx)
            msg = r.message
            if r.changed or r.state in ("aborted", "complete"):
                events.append({"at": ctx.now(), "state": r.state, "share": r.share, "message": r.message})
            if r.state == "aborted":
                say(msg)
                return CanaryResult("watch", "aborted", r.version, r.stable, 0.0, True, r.analysis, r.confirm, r.message,
                                    r.next, exit_code=3, events=events)
            if r.state == "complete":
                say(msg)
                p = promote(ctx, reason="canary watch: every step passed", analysis_done=r.analysis)
                say(p.message)
                events.append({"at": ctx.now(), "state": "promoted", "share": 1.0, "message": p.message})
                return CanaryResult("watch", "promoted", p.stable, p.stable, 0.0, True, p.analysis, p.confirm, p.message,
                                    p.next, exit_code=0, events=events)
        if msg != last_msg:
            say(msg)
            last_msg = msg
        if time.monotonic() >= deadline:
            return _result("watch", dep, changed=bool(events), analysis=r.analysis if r else None, events=events, exit_code=3,
                           message=f"timed out after {timeout:g} s with canary v{dep['canary_version']} held at "
                           f"{dep['canary_share']:.0%}: {msg}", next="`llctl canary status`; abort or keep watching")
        time.sleep(interval)
