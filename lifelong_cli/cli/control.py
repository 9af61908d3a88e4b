"""Emergency switches: stop-training and resume."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, app_ctx, run, version_number


def stop_training(
    tctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")],
    all_models: Annotated[bool, typer.Option("--all-models", help="Stop every model in the store (a shared upstream gone bad): one transaction, one audit entry per model.")] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Stop the model's training now (the big red button).

    Running trainers stop at their next step without writing a version; new `train`, `push`
    and `canary step|promote` are refused until `llctl resume`. Serving is not touched: to
    change what users get, use `llctl fallback on` or `llctl rollback`. Other models in the
    store are not touched unless --all-models. Safe to repeat.
    """
    from lifelong_cli.ops import stop_training as ops

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        for m in getattr(r, "models", []):
            ctx.say(f"  {m.message}")
        ctx.say(r.message)
        if not r.dry_run:
            ctx.say(f"next: {r.next}")

    op = ops.stop_training_all_models if all_models else ops.stop_training
    run(ctx, lambda: op(ctx, reason=reason, dry_run=dry_run), render)


def resume(
    tctx: typer.Context,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")] = None,
    roll_through: Annotated[bool, typer.Option("--roll-through", help="The shift is real: purge nothing, relax the drift SLO for 24 h.")] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Lift a stop-training: training, push and canary steps are allowed again.

    The next `llctl train` continues from the training head over the data not yet trained on
    (after a rollback, from the version rolled back to). Safe to repeat.
    """
    from lifelong_cli.ops.resume import resume as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        ctx.say(r.message)
        if r.changed:
            ctx.say(f"next: {r.next}")

    run(ctx, lambda: op(ctx, reason=reason, dry_run=dry_run, roll_through=roll_through), render)


fallback_app = typer.Typer(help="Serve from a simple fallback instead of the models (on | off).", no_args_is_help=True)


def _say(ctx, r) -> None:
    ctx.say(r.message)
    if r.next:
        ctx.say(f"next: {r.next}")


@fallback_app.command("on")
def fallback_on(
    tctx: typer.Context,
    strategy: Annotated[str, typer.Option("--strategy", help="majority | median | lookup | version:N.")] = "majority",
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Serving answers from a simple fallback (the stable version's majority class / median /
    lookup table, or an older version) until `llctl fallback off`. Training is not touched."""
    from lifelong_cli.ops.fallback import fallback

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: fallback(ctx, on=True, strategy=strategy, reason=reason, dry_run=dry_run), _say)


@fallback_app.command("off")
def fallback_off(
    tctx: typer.Context,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Serving answers from the models again (stable, and the canary's share)."""
    from lifelong_cli.ops.fallback import fallback

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: fallback(ctx, on=False, reason=reason, dry_run=dry_run), _say)


def rollback(
    tctx: typer.Context,
    to: Annotated[int | None, typer.Option("--to", parser=version_number, help="This version.")] = None,
    last_good: Annotated[bool, typer.Option("--last-good", help="The newest version that passed validation, served healthily and was not trained on purged data.")] = False,
    before: Annotated[str | None, typer.Option("--before", help="The newest last-good version created before this time (ISO or 2h).")] = None,
    serving_only: Annotated[bool, typer.Option("--serving-only", help="Leave the training head where it is.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Roll back to a version validation rejected or a purge tainted (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Point serving at an earlier version, aborting any canary, and (unless --serving-only) move
    the training head there so `resume` + `train` continue from it. Refuses a version whose
    artifacts fail their checksum and names the next good one. Reversible: roll forward with --to."""
    from lifelong_cli.ops.rollback import rollback as op

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: op(ctx, to=to, last_good=last_good, before=before, serving_only=serving_only, reason=reason,
                        dry_run=dry_run, force=force), _say)
