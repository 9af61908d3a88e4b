"""incident, playbook and check: the on-call engineer's side."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, YesOpt, app_ctx, run, when, whole

incident_app = typer.Typer(help="Open, annotate, close and report incidents (postmortem drafts).", no_args_is_help=True)
playbook_app = typer.Typer(help="Executable playbooks: list, show, lint, run.", no_args_is_help=True)


def _say(ctx, r) -> None:
    ctx.say(r.message)
    if getattr(r, "next", ""):
        ctx.say(f"next: {r.next}")


@incident_app.command("open")
def incident_open(
    tctx: typer.Context,
    title: Annotated[str, typer.Argument(help="What is happening, in a few words.")],
    severity: Annotated[str, typer.Option("--severity", help="sev1 (worst) .. sev4.")] = "sev2",
    all_models: Annotated[bool, typer.Option("--all-models", help="An incident of the whole store (e.g. a shared "
                                             "upstream), not of one model: every model's actions link to it.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Open an incident of the model (--model): its audited actions are linked to it until it is closed."""
    from lifelong_cli.ops.incident import open_incident

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: open_incident(ctx, title=title, severity=severity, store_wide=all_models), _say)


@incident_app.command("note")
def incident_note(
    tctx: typer.Context,
    incident: Annotated[int, typer.Argument(parser=whole, help="Incident id.")],
    text: Annotated[str, typer.Argument(help="The note.")],
    json_out: JsonOpt = False,
) -> None:
    """Add a note to an incident's timeline."""
    from lifelong_cli.ops.incident import note

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: note(ctx, incident_id=incident, text=text), _say)


@incident_app.command("close")
def incident_close(
    tctx: typer.Context,
    incident: Annotated[int, typer.Argument(parser=whole, help="Incident id.")],
    summary: Annotated[str | None, typer.Option("--summary", "-s", help="One paragraph for the report.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Close an incident. Safe to repeat."""
    from lifelong_cli.ops.incident import close

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: close(ctx, incident_id=incident, summary=summary), _say)


@incident_app.command("list")
def incident_list(
    tctx: typer.Context,
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The model's incidents and the store-wide ones, oldest first."""
    from lifelong_cli.ops.incident import list_incidents

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        if not r.incidents:
            ctx.say("no incidents")
        for i in r.incidents:
            ctx.say(f"{i['id']:>4}  {i['severity']}  {i['status']:<6}  {when(i['opened_at'])}  {i['title']}"
                    + ("  [all models]" if i["model"] is None else ""))

    run(ctx, lambda: list_incidents(ctx, all_=not open_only), render)


@incident_app.command("show")
def incident_show(
    tctx: typer.Context,
    incident: Annotated[int, typer.Argument(parser=whole, help="Incident id.")],
    json_out: JsonOpt = False,
) -> None:
    """An incident and its timeline (linked audit entries and notes)."""
    from lifelong_cli.ops.incident import show

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        ctx.say(r.message)
        store_wide = r.incident["model"] is None
        for e in r.timeline:
            why = f" — {e['reason']}" if e["reason"] else ""
            of = f" [{e['model']}]" if store_wide and e["model"] else ""  # the entries of several models
            ctx.say(f"  {when(e['ts'])}  {e['actor']:<12} {e['what']:<16} {e['outcome']:<8}{why}{of}")
        if r.next:
            ctx.say(f"next: {r.next}")

    run(ctx, lambda: show(ctx, incident_id=incident), render)


@incident_app.command("report")
def incident_report(
    tctx: typer.Context,
    incident: Annotated[int, typer.Argument(parser=whole, help="Incident id.")],
    fmt: Annotated[str, typer.Option("--format", help="md or html.")] = "md",
    out: Annotated[str | None, typer.Option("--out", help="Directory (default .llctl/reports).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a postmortem draft: timeline, time to detect / mitigate / recover, data and versions
    affected, golden metrics before / during / after, traffic split (PNG plots)."""
    from lifelong_cli.ops.incident import report

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        d = r.durations
        ctx.say(r.message)
        ctx.say("time to detect {}, to mitigate {}, to recover {}".format(
            *(f"{d[k]:.0f} s" if d[k] is not None else "—" for k in ("time_to_detect_s", "time_to_mitigate_s", "time_to_recover_s"))))

    run(ctx, lambda: report(ctx, incident_id=incident, fmt=fmt, out_dir=out), render)


@playbook_app.command("list")
def playbook_list(tctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Shipped playbooks and those in incident.playbooks_dir."""
    from lifelong_cli.ops.playbook import list_playbooks

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        for p in r.playbooks:
            ctx.say(f"{p['name']:<16} {p['when'] if p['ok'] else 'INVALID: ' + p['error']}")

    run(ctx, lambda: list_playbooks(ctx), render)


@playbook_app.command("show")
def playbook_show(
    tctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Playbook name.")],
    json_out: JsonOpt = False,
) -> None:
    """A playbook's description, parameters and steps."""
    from lifelong_cli.ops.playbook import show

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        ctx.say(f"{r.name}: {r.description.strip()}")
        ctx.say(f"when: {r.when}")
        for p in r.params:
            req = "required" if p["required"] else f"default {p['default']!r}"
            ctx.say(f"  --param {p['name']}=<{p['type']}>  ({req}) {p['help']}")
        n = 0
        for s in r.steps:
            if not s["recovery"]:
                n += 1
            tag = "recovery" if s["recovery"] else f"{n:>2}"
            extra = "".join([f" if {s['if']}" if s["if"] else "", f" check {s['check']}" if s["check"] else "",
                             " (confirm)" if s["confirm"] else "",
                             f" on failure: {s['on_failure']}" if s["on_failure"] != "stop" else ""])
            ctx.say(f"  {tag}. {s['name']}: {s['run']} {s['with'] or ''}{extra}")

    run(ctx, lambda: show(ctx, name=name), render)


@playbook_app.command("lint")
def playbook_lint(
    tctx: typer.Context,
    files: Annotated[list[str] | None, typer.Argument(help="Files (default: every playbook llctl finds).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check playbooks against the schema: unknown verbs, arguments, parameters, fields (exit 6)."""
    from lifelong_cli.ops.playbook import lint

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        for p in r.problems:
            ctx.warn(f"error: {p}")
        ctx.say(f"{len(r.checked)} playbook(s) checked, {len(r.problems)} problem(s)")

    run(ctx, lambda: lint(ctx, paths=files), render, exit_code=lambda r: 0 if r.ok else 6)


@playbook_app.command("run")
def playbook_run(
    tctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Playbook name.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="k=v (repeatable).")] = None,
    from_step: Annotated[int, typer.Option("--from-step", parser=whole, help="Continue from this step (1-based).")] = 1,
    title: Annotated[str | None, typer.Option("--title", help="Title of the incident it opens (if none is open).")] = None,
    severity: Annotated[str, typer.Option("--severity", help="Severity of the incident it opens.")] = "sev2",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a playbook step by step, inside an incident (opened, or the open one joined)."""
    from lifelong_cli.errors import UsageError
    from lifelong_cli.ops.playbook import run as op

    ctx = app_ctx(tctx, json_out=json_out)

    def go():
        params = {}
        for item in param or []:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise UsageError(f"--param {item!r} is not k=v", hint="--param batch=3")
            params[k.strip()] = v
        return op(ctx, name=name, params=params, dry_run=dry_run, yes=yes, from_step=from_step, title=title,
                  severity=severity, progress=ctx.warn)

    def render(ctx, r) -> None:
        if r.dry_run:
            ctx.say(f"plan for {r.playbook} with {r.params}:")
            for s in r.steps:
                ctx.say(f"  {s['n']:>2}. {s['name']}: {s['run']} {s['with'] or ''}" + ("  (skipped)" if s["skipped"] else ""))
        _say(ctx, r)

    run(ctx, go, render, exit_code=lambda r: r.exit_code)


def check(
    tctx: typer.Context,
    act: Annotated[bool, typer.Option("--act", help="Run the action configured for each violated policy.")] = False,
    relax: Annotated[str | None, typer.Option("--relax", help="Relax this policy for --hours instead of checking.")] = None,
    hours: Annotated[float, typer.Option("--hours", help="With --relax: for how long.")] = 6.0,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="With --relax: why.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate the SLO policies (staleness, fallback time, golden floor, persistent drift, canary
    held, training stopped). Exit 3 when any is violated; for cron and CI."""
    from lifelong_cli.errors import UsageError
    from lifelong_cli.ops import check as ops

    ctx = app_ctx(tctx, json_out=json_out)
    if relax is not None:
        def go():
            if not reason:
                raise UsageError("--relax needs --reason", hint="llctl check --relax drift --hours 6 --reason 'holiday sale'")
            return ops.relax(ctx, policy=relax, hours=hours, reason=reason)

        run(ctx, go, _say)
        return

    def render(ctx, r) -> None:
        for p in r.policies:
            mark = {True: "ok", False: "VIOLATED" if p["violated"] else "relaxed", None: "n/a"}[p["ok"]]
            ctx.say(f"  {p['policy']:<12} {mark:<9} {p['figure']}  (threshold {p['threshold']})"
                    + (f" → {p['action']}" if p["violated"] else ""))
        for a in r.actions:
            ctx.say(f"  acted on {a['policy']}: {a['action']}: {a['message']}")
        ctx.say(r.message)

    run(ctx, lambda: ops.check(ctx, act=act), render, exit_code=lambda r: 0 if r.ok else 3)
