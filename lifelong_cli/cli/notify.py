"""notify: the notification targets (webhooks, Slack, PagerDuty) — send a test event, see deliveries."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import JsonOpt, app_ctx, run, when, whole

notify_app = typer.Typer(help="Notification targets (webhook, Slack, PagerDuty): test them, see deliveries.",
                         no_args_is_help=True)


@notify_app.command("test")
def notify_test(
    tctx: typer.Context,
    target: Annotated[str | None, typer.Option("--target", help="Only this target (its name in notify.targets).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Send a test event to every notification target now (or to --target); say what each answered.

    Nothing in the state store changes; a PagerDuty test alert is resolved at once. Exit 7 when a target could not be reached (its URL or key
    variable unset, refused, timed out, or an HTTP error). The URLs and keys are never printed."""
    from lifelong_cli.notify import send_test

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        for d in r.deliveries:
            ctx.say(f"  {d['target']} ({d['kind']}): " + (f"ok, HTTP {d['status']} in {d['ms']:.0f} ms" if d["ok"]
                                                          else f"FAILED after {d['attempts']} attempt(s): {d['error']}"))
        ctx.say("test notification delivered to every target" if r.ok else
                "test notification failed for some target; `llctl notify status` shows the configuration")

    run(ctx, lambda: send_test(ctx, target=target), render, exit_code=lambda r: 0 if r.ok else 7)


@notify_app.command("status")
def notify_status(
    tctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", parser=whole, help="How many recent deliveries to show.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Show the notification targets, events waiting to be sent, and the latest deliveries.

    For each target: whether its environment variables are set in this shell. Deliveries come from
    the audit log (verb `notify`, outcome ok or failed). Changes nothing."""
    from lifelong_cli.notify import status

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        for t in r.targets:
            env = ", ".join(f"{k}={t[k]}" for k in ("url_env", "routing_key_env") if t.get(k))
            ctx.say(f"  target {t['name']} ({t['kind']}; {env}{'' if t['env_set'] else ' NOT SET here'}): "
                    f"events {', '.join(t['events'])}")
        for d in r.recent:
            ctx.say(f"  {when(d['at'])}  {d['outcome']:<6} {d['event']} -> {d['target']}"
                    + (f" (HTTP {d['status']})" if d.get("status") else "") + (f": {d['error']}" if d.get("error") else ""))
        ctx.say(r.message)

    run(ctx, lambda: status(ctx, limit=limit), render)


@notify_app.command("flush")
def notify_flush(tctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Send the events still waiting in the outbox now (normally a detached sender does it at once;
    `llctl doctor` reports events left waiting, e.g. after a reboot). Each delivery is audited."""
    from lifelong_cli.notify import flush

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: flush(ctx), lambda ctx, r: ctx.say(r.message))
