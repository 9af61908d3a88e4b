"""train and versions."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, app_ctx, run, version_number, when, whole

versions_app = typer.Typer(help="Model versions: list, or show one with its lineage.", invoke_without_command=True)


def train(
    tctx: typer.Context,
    strategy: Annotated[str | None, typer.Option("--strategy", help="naive | replay | ewc | ewc+replay (default: training.strategy).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", parser=whole, help="Exactly this many passes over the new data (default: "
                                               "training.epochs; null there adapts to the increment).")] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows", parser=whole, help="Train on at most this many new rows (whole batches).")] = None,
    if_due: Annotated[bool, typer.Option("--if-due", help="Train only when due: training.min_new_rows new rows, or "
                                         "training.max_wait since the last train; else exit 0 saying why not.")] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the model's next version from its training head on the rows that became trainable since
    its watermark (purged and quarantined rows never included). Refused while the model's training
    is stopped or another trainer of it runs (exit 5); a stop-training mid-run ends it without a
    version. Other models in the store are not touched (--model picks the one). With --if-due (for a
    job run every few minutes) it trains only when enough new rows arrived or the model is getting
    stale, and otherwise exits 0 with "not due" and the figures."""
    from lifelong_cli.ops.train import train as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        ctx.say(r.message)
        if r.next:
            ctx.say(f"next: {r.next}")

    run(ctx, lambda: op(ctx, strategy=strategy, epochs=epochs, max_rows=max_rows, dry_run=dry_run,
                          if_due=if_due), render)


@versions_app.callback()
def versions(tctx: typer.Context, json_out: JsonOpt = False,
             limit: Annotated[int, typer.Option("--limit", "-n", parser=whole, help="At most this many (newest first).")] = 50) -> None:
    """The model's versions, newest first, with their parent, data range, verdict and role."""
    if tctx.invoked_subcommand:
        return
    from lifelong_cli.ops.versions import versions as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        if not r.versions:
            ctx.say(f"model '{r.model}' has no versions yet: `llctl train`")
            return
        t = Table("version", "created", "parent", "strategy", "sequences", "rows", "hold-out acc", "verdict", "role",
                  title=f"versions of model '{r.model}'", title_justify="left")
        for v in r.versions:
            acc = v.get("holdout_accuracy")
            t.add_row(f"v{v['id']}", when(v["created_at"]), f"v{v['parent_id']}" if v["parent_id"] else "-",
                      v["strategy"] or "-", f"{v['seq_from']}–{v['seq_to']}", str(v["rows_trained"]),
                      "-" if acc is None else f"{acc:.3f}", v["verdict"] or "not validated", ", ".join(v["roles"]))
        ctx.out().print(t)

    run(ctx, lambda: op(ctx, limit=limit), render)


@versions_app.command("show")
def versions_show(tctx: typer.Context, version: Annotated[int, typer.Argument(parser=version_number, help="Version number.")],
                  json_out: JsonOpt = False) -> None:
    """One version: lineage (parent, data range, purge rules in force, config hash, libraries),
    metrics, artifacts with their sha256, validation verdict."""
    from lifelong_cli.ops.versions import version_show as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        import yaml

        v = r.version
        ctx.say(f"v{v['id']} of {v['model']} · created {when(v['created_at'])} by {v['created_by']}"
                + (f" · {', '.join(r.roles)}" if r.roles else ""))
        ctx.say(f"verdict: {r.validation['verdict'] if r.validation else 'not validated'}")
        ctx.say(yaml.safe_dump({"lineage": v["lineage"], "metrics": v["metrics"],
                                "artifacts": {k: a["sha256"] for k, a in v["artifacts"].items()}},
                               sort_keys=False).rstrip())

    run(ctx, lambda: op(ctx, version=version), render)


golden_app = typer.Typer(help="Golden sets: labelled rows never trained on, for validation.", no_args_is_help=True)


@golden_app.command("import")
def golden_import(
    tctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A CSV / JSON Lines / Parquet file (or - for stdin).")],
    slice_by: Annotated[str | None, typer.Option("--slice-by", help="Column whose values name the slices (e.g. task).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="csv | jsonl | parquet.")] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Import a labelled golden set (validated like examples). Validation measures every version on
    it, per slice, besides the automatic hold-out taken at ingest."""
    from lifelong_cli.ops.golden import golden_import as op

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: op(ctx, path=path, slice_by=slice_by, fmt=fmt, dry_run=dry_run), lambda c, r: c.say(r.message))


def validate(
    tctx: typer.Context,
    version: Annotated[int | None, typer.Argument(parser=version_number, help="Version (default: the training head).")] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the release gates on a version — integrity, sanity, ONNX parity and signature, golden
    metrics, no regression against stable, per-slice retention (forgetting), latency — and store the
    verdict. Exit 3 when rejected."""
    from lifelong_cli.ops.validate import validate as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        t = Table("gate", "figure", "threshold", "result", title=f"validation of model '{r.model}' v{r.version}"
                  + (f" against v{r.compared_with}" if r.compared_with else ""), title_justify="left")
        for gt in r.gates:
            res = "[green]pass[/green]" if gt["passed"] else ("[red]FAIL[/red]" if gt["passed"] is False else "n/a")
            t.add_row(gt["name"], str(gt["figure"]), str(gt["threshold"]), res)
        ctx.out().print(t)
        for gt in r.gates:
            if gt["passed"] is False and gt["detail"]:
                ctx.say(f"{gt['name']}: {gt['detail']}")
        ctx.say(r.message)
        ctx.say(f"next: {r.next}")

    run(ctx, lambda: op(ctx, version=version, dry_run=dry_run), render,
        exit_code=lambda r: 3 if r.verdict == "rejected" else 0)
