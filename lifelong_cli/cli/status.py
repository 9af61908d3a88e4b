"""status, audit, doctor: reading the state."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, YesOpt, app_ctx, confirm, run, when, whole
from lifelong_cli.errors import UsageError


def status(
    tctx: typer.Context,
    json_out: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes with --watch.")] = 2.0,
) -> None:
    """One screen for one model (--model): serving (stable, canary, fallback), training (stopped?
    running?), data freshness, drift, open incidents, and what to run next. Changes nothing."""
    from lifelong_cli.ops.status import status as op

    ctx = app_ctx(tctx, json_out=json_out)
    if watch:
        if ctx.json:
            run(ctx, _raise(UsageError("--watch and --json do not combine", hint="poll `llctl status --json` instead")),
                lambda c, r: None)
        _watch(ctx, op, interval)
        return
    run(ctx, lambda: op(ctx), lambda c, r: c.out().print(_status_table(r)))


def _raise(exc: Exception):
    def f():
        raise exc
    return f


def _watch(ctx, op, interval: float) -> None:
    from rich.live import Live

    def body():
        try:
            return _status_table(op(ctx))
        except Exception as exc:  # keep watching through a store blip; show it
            return f"[red]{type(exc).__name__}: {exc}[/red]"

    try:
        with Live(body(), console=ctx.out(), auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(max(interval, 0.25))
                live.update(body(), refresh=True)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _status_table(r):
    from rich.table import Table

    s, t, d, dr = r.serving, r.training, r.data, r.drift
    tbl = Table(title=f"llctl status · model {r.model} · {when(r.now)}", show_header=False, title_justify="left")
    tbl.add_column(style="bold")
    tbl.add_column()
    if r.other_models:
        tbl.add_row("other models", f"{', '.join(r.other_models)} (not shown: `llctl --model NAME status`)")
    canary = f"v{s['canary_version']} at {s['canary_share']:.0%} ({s['canary_state']})" if s["canary_version"] else "none"
    tbl.add_row("serving", f"stable {('v' + str(s['stable_version'])) if s['stable_version'] else 'none'} · canary {canary} · generation {s['generation']}")
    reps = s.get("replicas") or []
    tbl.add_row("replicas", ", ".join(f"{r['url'] or r['id']} gen {r['generation']}" + ("" if r["in_sync"] else " [red]behind[/red]")
                                      + (f" [red]{r['status']}[/red]" if r["status"] != "serving" else "") for r in reps)
                or "none live")
    if s["canary_version"] and s.get("canary_analysis"):
        a = s["canary_analysis"]
        tbl.add_row("canary analysis", f"{a['verdict']}" + (f": failed {', '.join(a['failed'])}" if a["failed"] else "")
                    + (f": waiting — {'; '.join(a['waiting_for'])}" if a["waiting_for"] else ""))
    tbl.add_row("fallback", f"[red]ON[/red] ({s['fallback_strategy']}) since {when(s['fallback_since'])}" if s["fallback"] else "off")
    if t["stopped"]:
        tr = f"[red]STOPPED[/red] by {t['stopped_by']} at {when(t['stopped_at'])}: {t['stop_reason']}"
    elif t["running"]:
        tr = f"running ({t['lease_holder']})"
    else:
        tr = "idle"
    tbl.add_row("training", tr)
    tbl.add_row("versions", f"{t['versions']} · head {('v' + str(t['head_version'])) if t['head_version'] else 'none'}"
                + (f" · latest v{t['latest_version']} ({t['latest_verdict'] or 'not validated'})" if t["latest_version"] else ""))
    age = d["last_ingest_age_seconds"]
    fresh = f"last ingest {when(d['last_ingest_at'])} ({_age(age)} ago)" if age is not None else "no data ingested"
    tbl.add_row("data", f"{d['batches']} batch(es), {d['rows_accepted']} rows, {d['rows_quarantined']} quarantined, "
                f"{d['batches_rejected']} rejected, {d['batches_held']} on hold · {fresh} · {d['active_purge_rules']} active purge rule(s)")
    if dr.get("batch") is None:
        tbl.add_row("drift", "not checked yet")
    else:
        purged = " (batch purged)" if dr.get("purged") else ""
        tbl.add_row("drift", (f"[red]drift[/red] in batch {dr['batch']}: {', '.join(dr['features'])}{purged}" if dr["drifted"]
                              else f"none in batch {dr['batch']}"))
    tbl.add_row("incidents", ", ".join(f"#{i['id']} {i['title']} ({i['severity']}"
                                       + (", all models)" if i["model"] is None else ")") for i in r.incidents)
                or "none open")
    for i, step in enumerate(r.next):
        tbl.add_row("next" if i == 0 else "", step)
    return tbl


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def audit(
    tctx: typer.Context,
    verb: Annotated[str | None, typer.Option("--verb", help="Only this verb, e.g. stop-training.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only entries by this actor.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time or a duration: 30m, 2h, 7d.")] = None,
    incident: Annotated[int | None, typer.Option("--incident", parser=whole, help="Only entries linked to this incident.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", parser=whole, help="At most this many (the newest).")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """The audit log of the model (--model) and the store-wide entries: who did what, when, why, and
    how it ended. Changes nothing."""
    from lifelong_cli.ops.audit import audit as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        if not r.entries:
            ctx.say("no audit entries match")
            return
        tbl = Table("id", "time", "actor", "verb", "outcome", "reason", "incident", title_justify="left",
                    title=f"audit log · model {r.model} (and store-wide entries, marked *)")
        for e in r.entries:
            tbl.add_row(str(e["id"]), when(e["ts"]), e["actor"], e["verb"] + (" *" if e["model"] is None else ""),
                        e["outcome"], e["reason"] or "", str(e["incident_id"] or ""))
        ctx.out().print(tbl)

    run(ctx, lambda: op(ctx, verb=verb, actor=actor, since=since, incident=incident, limit=limit), render)


def doctor(
    tctx: typer.Context,
    fix: Annotated[bool, typer.Option("--fix", help="Remove what interrupted writes left behind (temp files, segments no batch refers to, stale training snapshots), after showing it; audited.")] = False,
    min_age: Annotated[str, typer.Option("--min-age", help="With --fix: only files older than this (30s, 10m, 1h), so a running command's files are left alone.")] = "10m",
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the workspace: config, store reachable, migrations current, the model (--model) and its
    deployment pointers, lease and segments, every model's state rows, data and registry paths,
    leftovers of interrupted writes.
    Exit 3 when anything needs attention; each finding says what to do.
    With --fix: list the leftovers of interrupted writes older than --min-age, ask, remove them (one
    `doctor fix` audit entry with the paths and bytes), then check again. Files a batch refers to are
    never removed. Exit 8 when not confirmed (no terminal and no --yes)."""
    from lifelong_cli.ops.doctor import doctor as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        for x in getattr(r, "removed", []):
            ctx.say(f"{'would remove' if r.dry_run else 'removed'} {x.kind} {x.path} ({x.bytes} bytes)")
        for c in r.checks:
            mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
            ctx.out().print(f"{mark} {c.name}: {c.detail}")
            if c.hint and not c.ok:
                ctx.say(f"      hint: {c.hint}")
        if hasattr(r, "removed"):
            ctx.say(r.message)
        ctx.say("all checks passed" if r.ok else f"{sum(not c.ok for c in r.checks)} finding(s)")

    if not fix:
        if dry_run or yes or min_age != "10m":
            run(ctx, _raise(UsageError("--dry-run, --yes and --min-age go with --fix", hint="llctl doctor --fix --dry-run")),
                lambda c, r: None)
        run(ctx, lambda: op(ctx), render, exit_code=lambda r: 0 if r.ok else 3)
        return
    run(ctx, lambda: _doctor_fix(ctx, min_age, yes=yes, dry_run=dry_run), render, exit_code=lambda r: 0 if r.ok else 3)


def _doctor_fix(ctx, min_age: str, *, yes: bool, dry_run: bool):
    from lifelong_cli.config import duration_seconds
    from lifelong_cli.ops.doctor import doctor_fix, find_leftovers

    try:
        age = duration_seconds(min_age)
    except ValueError:
        raise UsageError(f"--min-age {min_age!r} is not a duration", hint="e.g. --min-age 10m (or 0s, 30s, 1h)") from None
    if dry_run:
        return doctor_fix(ctx, min_age_seconds=age, dry_run=True)
    plan, _young = find_leftovers(ctx, min_age_seconds=age)
    if plan:
        for x in plan:
            ctx.warn(f"to remove: {x.kind} {x.path} ({x.bytes} bytes, {x.age_seconds:.0f}s old)")
        confirm(ctx, f"remove these {len(plan)} leftover(s), {sum(x.bytes for x in plan)} bytes?", yes=yes)
    return doctor_fix(ctx, min_age_seconds=age, only=[x.path for x in plan])
