"""serve, push and canary: putting versions in front of traffic."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, app_ctx, run, version_number, whole

ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")]


def _say(ctx, r) -> None:
    ctx.say(r.message)
    if getattr(r, "next", ""):
        ctx.say(f"next: {r.next}")


def serve(
    tctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Interface to listen on (default serving.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", parser=whole, help="Port (default serving.port, 8700).")] = None,
    workers: Annotated[int, typer.Option("--workers", parser=whole, help="Worker processes; each is a replica following the store.")] = 1,
    advertise_url: Annotated[str | None, typer.Option("--advertise-url", help="The URL other machines reach this replica at (default http://HOST:PORT).")] = None,
    models: Annotated[list[str] | None, typer.Option("--models", help="Serve these models of the store (comma-separated, repeatable) instead of the one --model names.")] = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="Serve every model in the store.")] = False,
) -> None:
    """Serve deployed models over HTTP until interrupted (Ctrl-C).

    Serves the model that --model (or LLCTL_MODEL, model.name) names, or several: `--models churn,fraud`
    or `--all-models`; they share this workspace's config (features, serving settings). Each model
    follows its own deployment row in the store: stable, canary share (sticky on the request key),
    fallback mode; swaps versions only after the new one is loaded and verified. Routes:
    POST /v1/models/NAME/predict and /v1/models/NAME/feedback; in a single-model process also
    POST /v1/predict and /v1/feedback; GET /v1/models, /healthz, /readyz, /metrics (labelled by model);
    admin routes need the bearer token in the environment variable named by serving.admin_token_env."""
    from lifelong_cli.ops.serve import serve as op

    ctx = app_ctx(tctx)
    run(ctx, lambda: op(ctx, host=host, port=port, workers=workers, advertise_url=advertise_url, models=models,
                        all_models=all_models),
        lambda _c, _r: None, exit_code=lambda code: code)


def push(
    tctx: typer.Context,
    version: Annotated[int, typer.Argument(parser=version_number, help="The version to push.")],
    force: Annotated[bool, typer.Option("--force", help="Push a version that has not passed validation (needs --reason).")] = False,
    reason: ReasonOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Make a validated version available to serving: verify its artifacts, ask every replica to
    load and query it, set the registry alias. No traffic moves (`llctl canary start` does that)."""
    from lifelong_cli.ops.push import push as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        for rep in r.replicas:
            ctx.say(f"  {rep['replica']}: " + (f"ok (load {rep['load_ms']:.0f} ms, query {rep['query_ms']:.1f} ms)"
                                               if rep["ok"] else f"FAILED: {rep['error']}"))
        _say(ctx, r)

    run(ctx, lambda: op(ctx, version=version, force=force, reason=reason, dry_run=dry_run), render)


canary_app = typer.Typer(help="Shift traffic to a pushed version in steps, analysed against stable.", no_args_is_help=True)


def _render_canary(ctx, r) -> None:
    a = r.analysis
    if a and a.get("figures"):
        q = a["requests"]
        ctx.say(f"analysis: {a['verdict']} — requests at this step: stable {q['stable']}, canary {q['canary']} "
                f"(since the canary began: {q.get('stable_total', '?')}, {q.get('canary_total', '?')})")
        for f in a["figures"]:
            figs = ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("name", "status", "stable_classes", "canary_classes"))
            ctx.say(f"  {f['name']:<18} {f['status']:<8} {figs}")
    for e in r.events:
        ctx.say(f"  {e['message']}")
    _say(ctx, r)


@canary_app.command("start")
def canary_start(
    tctx: typer.Context,
    version: Annotated[int, typer.Argument(parser=version_number, help="A pushed version.")],
    reason: ReasonOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Send the first step's share of traffic (canary.steps, default 5%) to a pushed version.
    With no stable version yet, the version becomes stable (first launch)."""
    from lifelong_cli.ops import canary

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: canary.start(ctx, version=version, reason=reason, dry_run=dry_run), _render_canary)


@canary_app.command("step")
def canary_step(tctx: typer.Context, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """Analyse canary against stable: fail → held as suspect, aborted (exit 3) when the next look
    confirms it; inconclusive → hold; pass → next share. Exit 5 if another command changed the canary
    while this one analysed it."""
    from lifelong_cli.ops import canary

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: canary.step(ctx, reason=reason), _render_canary, exit_code=lambda r: r.exit_code)


@canary_app.command("status")
def canary_status(tctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The running canary and its analysis figures (error rate, p95 latency, predictions, accuracy)."""
    from lifelong_cli.ops import canary

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: canary.status(ctx), _render_canary)


@canary_app.command("promote")
def canary_promote(
    tctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the analysis fails.")] = False,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make the canary stable (all traffic). Refused while its analysis fails, unless --force; exit 5
    if the canary was aborted or changed meanwhile."""
    from lifelong_cli.errors import UsageError
    from lifelong_cli.ops import canary

    ctx = app_ctx(tctx, json_out=json_out)

    def op():
        if force and not reason:
            raise UsageError("--force needs --reason", hint="llctl canary promote --force --reason '...'")
        return canary.promote(ctx, reason=reason, force=force)

    run(ctx, op, _render_canary)


@canary_app.command("abort")
def canary_abort(tctx: typer.Context, reason: ReasonOpt = None, json_out: JsonOpt = False) -> None:
    """All traffic back to stable now. Stable is not changed. Safe to repeat; exit 5 if the canary was
    promoted meanwhile (then `llctl rollback` is the way back)."""
    from lifelong_cli.ops import canary

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: canary.abort(ctx, reason=reason), _render_canary)


@canary_app.command("watch")
def canary_watch(
    tctx: typer.Context,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up (exit 3) after this many seconds held.")] = 3600.0,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between analyses.")] = 5.0,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Step the canary to promotion (exit 0) or abort (exit 3). Frozen while training is stopped."""
    from lifelong_cli.ops import canary

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: canary.watch(ctx, timeout=timeout, interval=interval, reason=reason, progress=ctx.warn),
        lambda c, r: _say(c, r), exit_code=lambda r: r.exit_code)


feedback_app = typer.Typer(help="Outcomes received by serving.", no_args_is_help=True)


@feedback_app.command("export")
def feedback_export(
    tctx: typer.Context,
    out: Annotated[str, typer.Option("--out", "-o", help="CSV file to write (key, event time, label).")],
    after_id: Annotated[int, typer.Option("--after-id", parser=whole, help="Only feedback after this id (the last export's last_id).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Write the feedback labels serving received as rows for `llctl ingest FILE --kind feedback`."""
    from lifelong_cli.ops.feedback import export

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: export(ctx, out=out, after_id=after_id), _say)
