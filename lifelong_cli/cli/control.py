"""Emergency switches: stop-training and resume."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, app_ctx, run


def stop_training(
    tctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")],
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Stop all training now (the big red button).

    Running trainers stop at their next step without writing a version; new `train`, `push`
    and `canary step|promote` are refused until `llctl resume`. Serving is not touched: to
    change what users get, use `llctl fallback on` or `llctl rollback`. Safe to repeat.
    """
    from lifelong_cli.ops.stop_training import stop_training as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        ctx.say(r.message)
        if not r.dry_run:
            ctx.say(f"next: {r.next}")

    run(ctx, lambda: op(ctx, reason=reason, dry_run=dry_run), render)


def resume(
    tctx: typer.Context,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")] = None,
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

    run(ctx, lambda: op(ctx, reason=reason, dry_run=dry_run), render)
