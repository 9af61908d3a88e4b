"""init, config show, db upgrade."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, YesOpt, app_ctx, confirm, run

config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="State store maintenance.", no_args_is_help=True)
registry_app = typer.Typer(help="The model registry.", no_args_is_help=True)


@registry_app.command("sync")
def registry_sync(tctx: typer.Context, dry_run: DryRunOpt = False, json_out: JsonOpt = False) -> None:
    """Mirror the store's pointers (stable, canary, head, fallback) as registry aliases. The store is
    the source of truth: emergency verbs never wait on the registry; this catches the aliases up."""
    from lifelong_cli.ops.registry_sync import registry_sync as op

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: op(ctx, dry_run=dry_run), lambda c, r: c.say(r.message))


def init(
    tctx: typer.Context,
    directory: Annotated[str | None, typer.Argument(help="Workspace directory (default: here).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rewrite llctl.yaml (the old one is kept as a .bak).")] = False,
    store_url: Annotated[str | None, typer.Option("--store-url", help="Write this store URL (no password) into llctl.yaml.")] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace: llctl.yaml (every key documented), .llctl/ (state DB, data,
    artifacts), and the state store at the current schema. Re-running only upgrades the store."""
    from lifelong_cli.ops.init import init as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        ctx.say(r.message)
        if r.backup:
            ctx.say(f"previous config kept as {r.backup}")
        ctx.say(f"next: {r.next}")

    def go():
        if force and not dry_run:
            target = f"{directory}/llctl.yaml" if directory else "llctl.yaml"
            confirm(ctx, f"rewrite {target} from the example (the current one is kept as a .bak)?", yes=yes)
        return op(ctx, directory=directory, force=force, store_url=store_url, dry_run=dry_run)

    run(ctx, go, render)


@config_app.command("show")
def config_show(tctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The merged configuration (file < LLCTL_* env < flags), secrets masked."""
    from lifelong_cli.ops.config_show import config_show as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        import yaml

        ctx.say(f"# {r.path or 'defaults (no llctl.yaml)'}")
        for key, src in sorted(r.sources.items()):
            ctx.say(f"# {key} from {src}")
        ctx.say(yaml.safe_dump(r.config, sort_keys=False).rstrip())

    run(ctx, lambda: op(ctx), render)


@db_app.command("upgrade")
def db_upgrade(tctx: typer.Context, dry_run: DryRunOpt = False, json_out: JsonOpt = False) -> None:
    """Apply pending schema migrations to the state store (safe to re-run)."""
    from lifelong_cli.ops.db_upgrade import db_upgrade as op

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: op(ctx, dry_run=dry_run), lambda c, r: c.say(r.message))


def demo(
    tctx: typer.Context,
    workdir: Annotated[str | None, typer.Option("--workdir", help="Run in this new or empty directory (kept).")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary workspace afterwards.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The whole story in about two minutes: a stream with delayed labels, versions trained,
    validated and promoted through canaries under simulated traffic, then a broken upstream whose
    labels the label audit holds at ingest, the bad-labels playbook, recovery, and a postmortem draft."""
    from lifelong_cli.ops.demo import demo as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        def num(x, fmt="{:.3f}"):
            return "—" if x is None else fmt.format(x)

        t = Table(title="llctl demo", show_header=False)
        for k, v in [("time to detect", num(r.time_to_detect_s, "{:.1f} s")),
                     ("time to mitigate", num(r.time_to_mitigate_s, "{:.1f} s")),
                     ("golden accuracy before", num(r.golden_before)),
                     ("golden accuracy, worst served", num(r.golden_worst_served)),
                     ("golden accuracy after recovery", num(r.golden_after)),
                     ("requests served / failed", f"{r.requests} / {r.requests_failed}"),
                     *([("batches held at ingest", ", ".join(map(str, r.batches_held)))] if r.batches_held
                       else [("rows purged", str(r.rows_purged))]),
                     ("incident report", r.report or "—"),
                     ("workspace", r.workdir + ("" if r.kept else " (removed; --keep keeps it)")),
                     ("wall time", f"{r.seconds:.0f} s")]:
            t.add_row(k, v)
        ctx.out().print(t)
        ctx.say(r.message)

    run(ctx, lambda: op(workdir=workdir, keep=keep, progress=ctx.warn), render)


def models(tctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the models this state store holds, with what each serves and whether it trains.

    Each model has its own versions, deployment, stop flag, batches and purge rules; choose one with
    --model NAME (or LLCTL_MODEL, or model.name in llctl.yaml). `llctl init` in a new workspace
    pointed at the same store adds a model."""
    from lifelong_cli.ops.models import models as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        if not r.models:
            ctx.say(f"no models in the store at {r.store} yet: `llctl init` adds one")
            return
        table = Table(title=f"models in {r.store}", title_justify="left")
        for col in ("model", "stable", "canary", "fallback", "training", "head", "versions", "batches"):
            table.add_column(col)
        for m in r.models:
            canary = f"v{m['canary_version']} {m['canary_share']:.0%}" if m["canary_version"] else "-"
            training = f"STOPPED by {m['stopped_by']}" if m["stopped"] else "running"
            table.add_row(("* " if m["name"] == r.current else "  ") + m["name"],
                          f"v{m['stable_version']}" if m["stable_version"] else "-", canary,
                          m["fallback_strategy"] if m["fallback_mode"] else "off", training,
                          f"v{m['training_head']}" if m["training_head"] else "-", str(m["versions"]), str(m["batches"]))
        ctx.out().print(table)
        if r.current:
            ctx.say(f"* = the model this workspace acts on ({r.current}); others: --model NAME")

    run(ctx, lambda: op(ctx), render)
