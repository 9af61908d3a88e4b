"""check: evaluate the SLO policies in the config on one model's state (for cron or CI), and with
``act`` run the action agreed for each violation on that model. A policy relaxed for a window
(``relax``, per model; the roll-through playbook does this) is reported but does not count as
violated until the window ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import LlctlError, UsageError
from lifelong_cli.ops._base import Result, audited, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mae": False, "rmse": False}


@dataclass(frozen=True)
class CheckResult(Result):
    model: str
    ok: bool
    policies: list[dict[str, Any]]
    violated: list[str]
    actions: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


def _policy(name: str, ok: bool | None, figure: Any, threshold: Any, detail: str = "") -> dict[str, Any]:
    return {"policy": name, "ok": ok, "figure": figure, "threshold": threshold, "detail": detail}


def evaluate(ctx: AppContext) -> list[dict[str, Any]]:
    """``ctx.model``'s SLO policies, each with its figure, threshold, action and relaxation."""
    from lifelong_cli.store import batches, control, deployment, purge_rules, slo, versions

    slo_cfg = ctx.config.settings.slo
    now = ctx.now()
    model = ctx.model
    out: list[dict[str, Any]] = []
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, model)
        ctl = control.get(t, model)
        stable = versions.get(t, model, dep["stable_version"]) if dep["stable_version"] else None
        validation = versions.latest_validation(t, model, dep["stable_version"]) if dep["stable_version"] else None
        recent = batches.recent_examples(t, model, slo_cfg.max_drifted_batches)
        purged = {r["spec"].get("batch") for r in purge_rules.in_force(t, model)}
        relaxed = slo.relaxed(t, model, now=now)
        held = batches.held(t, model)
    if stable:
        age_h = (now - stable["created_at"]).total_seconds() / 3600
        out.append(_policy("staleness", age_h <= slo_cfg.max_staleness_hours, f"stable v{stable['id']} is {age_h:.1f} h old",
                           f"≤ {slo_cfg.max_staleness_hours:g} h", "train, validate and push a newer version"))
    else:
        out.append(_policy("staleness", None, "no stable version", f"≤ {slo_cfg.max_staleness_hours:g} h"))
    if dep["fallback_mode"]:
        mins = (now - dep["fallback_since"]).total_seconds() / 60
        out.append(_policy("fallback", mins <= slo_cfg.max_fallback_minutes, f"in fallback for {mins:.0f} min",
                           f"≤ {slo_cfg.max_fallback_minutes:g} min", "get a good version stable, then `llctl fallback off`"))
    else:
        out.append(_policy("fallback", True, "not in fallback", f"≤ {slo_cfg.max_fallback_minutes:g} min"))
    figures = {g["name"][len("golden "):]: g["figure"] for g in ((validation or {}).get("gates") or [])
               if g["name"].startswith("golden ") and isinstance(g["figure"], int | float)}
    bad = [f"{m} {figures[m]:.4f}" for m, floor in slo_cfg.golden_floor.items() if m in figures
           and (figures[m] < floor if HIGHER_IS_BETTER[m] else figures[m] > floor)]
    out.append(_policy("golden", (not bad) if figures else None,
                       ", ".join(f"{m} {v:.4f}" for m, v in figures.items()) or "no golden figures for stable",
                       ", ".join(f"{m} {'≥' if HIGHER_IS_BETTER[m] else '≤'} {f}" for m, f in slo_cfg.golden_floor.items()),
                       "roll back to a good version" if bad else ""))
    drifting = [r["id"] for r in recent if r["drifted"] and r["id"] not in purged]
    persistent = len(recent) >= slo_cfg.max_drifted_batches and len(drifting) == len(recent)
    out.append(_policy("drift", not persistent, f"{len(drifting)} of the last {len(recent)} batches drifted (unpurged)",
                       f"< {slo_cfg.max_drifted_batches} in a row", "run the drift-surge playbook: roll through or purge"))
    if dep["canary_version"] and dep["canary_step_started_at"]:
        mins = (now - dep["canary_step_started_at"]).total_seconds() / 60
        out.append(_policy("canary_hold", mins <= slo_cfg.max_canary_hold_minutes,
                           f"canary v{dep['canary_version']} at {dep['canary_share']:.0%} for {mins:.0f} min",
                           f"≤ {slo_cfg.max_canary_hold_minutes:g} min", "`llctl canary status` to see what it waits for"))
    else:
        out.append(_policy("canary_hold", True, "no canary running", f"≤ {slo_cfg.max_canary_hold_minutes:g} min"))
    if ctl.stopped:
        hours = (now - ctl.stopped_at).total_seconds() / 3600
        out.append(_policy("stopped", hours <= slo_cfg.max_stopped_hours, f"training stopped for {hours:.1f} h ({ctl.stop_reason})",
                           f"≤ {slo_cfg.max_stopped_hours:g} h", "find the cause, then `llctl resume`"))
    else:
        out.append(_policy("stopped", True, "training running", f"≤ {slo_cfg.max_stopped_hours:g} h"))
    if held:
        oldest = held[0]
        hours = (now - oldest["created_at"]).total_seconds() / 3600
        cause = ((oldest["detail"] or {}).get("hold") or {}).get("cause", "held")
        out.append(_policy("holds", hours <= slo_cfg.max_hold_hours,
                           f"{len(held)} batch(es) on hold, the oldest (batch {oldest['id']}, {cause}) for {hours:.1f} h",
                           f"≤ {slo_cfg.max_hold_hours:g} h", "`llctl data holds`: release or reject each"))
    else:
        out.append(_policy("holds", True, "no batch on hold", f"≤ {slo_cfg.max_hold_hours:g} h"))
    for p in out:
        p["action"] = getattr(slo_cfg.actions, p["policy"])
        p["relaxed_until"] = relaxed.get(p["policy"])
        p["violated"] = p["ok"] is False and p["relaxed_until"] is None
    return jsonable(out)


def _act(ctx: AppContext, p: dict[str, Any]) -> dict[str, Any]:
    reason = f"SLO {p['policy']} violated: {p['figure']} (threshold {p['threshold']})"
    action = p["action"]
    try:
        if action == "open-incident":
            from lifelong_cli.ops.incident import open_incident

            r = open_incident(ctx, title=f"SLO violated: {p['policy']} — {p['figure']}", severity="sev2", join=True)
        elif action == "fallback-on":
            from lifelong_cli.ops.fallback import fallback

            r = fallback(ctx, on=True, reason=reason)
        elif action == "rollback-last-good":
            from lifelong_cli.ops.rollback import rollback

            r = rollback(ctx, last_good=True, reason=reason)
        elif action == "stop-training":
            from lifelong_cli.ops.stop_training import stop_training

            r = stop_training(ctx, reason=reason)
        elif action == "canary-abort":
            from lifelong_cli.ops.canary import abort

            r = abort(ctx, reason=reason)
        else:
            return {"policy": p["policy"], "action": action, "ok": True, "message": "no action configured"}
    except LlctlError as exc:
        return {"policy": p["policy"], "action": action, "ok": False, "message": exc.message}
    return {"policy": p["policy"], "action": action, "ok": True, "message": r.message}


def check(ctx: AppContext, *, act: bool = False) -> CheckResult:
    policies = evaluate(ctx)
    violated = [p for p in policies if p["violated"]]
    actions: list[dict[str, Any]] = []
    if violated:
        with audited(ctx, "check", args={"act": act}) as (_t, entry):
            entry.outcome = "violated"
            entry.detail = {"violated": [{k: p[k] for k in ("policy", "figure", "threshold")} for p in violated]}
        if act:
            actions = [_act(ctx, p) for p in violated]
    names = [p["policy"] for p in violated]
    msg = ("all SLO policies hold" if not violated else f"SLO violated: {', '.join(names)}")
    return CheckResult(ctx.model, not violated, policies, names, actions, f"model '{ctx.model}': {msg}")


@dataclass(frozen=True)
class RelaxResult(Result):
    model: str
    policy: str
    until: Any
    message: str


def relax(ctx: AppContext, *, policy: str, hours: float, reason: str) -> RelaxResult:
    from lifelong_cli.config import SLO_POLICIES
    from lifelong_cli.store import slo

    if policy not in SLO_POLICIES:
        raise UsageError(f"no SLO policy {policy!r}; policies: {', '.join(SLO_POLICIES)}", hint="llctl check --relax drift --hours 6")
    if not 0 < hours <= 24 * 14:
        raise UsageError(f"--hours {hours:g}: relax for more than 0 and at most 336 hours", hint="--hours 6")
    now = ctx.now()
    until = now + timedelta(hours=hours)
    with audited(ctx, "slo relax", args={"policy": policy, "hours": hours}, reason=reason) as (t, entry):
        slo.relax(t, ctx.model, policy=policy, until=until, now=now, actor=ctx.actor, reason=reason)
        entry.detail = {"policy": policy, "until": jsonable(until)}
    return RelaxResult(ctx.model, policy, jsonable(until), f"model '{ctx.model}': SLO policy {policy} relaxed until {until:%Y-%m-%d %H:%M}Z: violations are "
                       "reported but not counted")
