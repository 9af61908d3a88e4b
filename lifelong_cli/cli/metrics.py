"""metrics: the Prometheus exporter for machines that do not serve."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lifelong_cli.cli._common import app_ctx, run


def metrics(
    tctx: typer.Context,
    listen: Annotated[str | None, typer.Option("--listen", help="Serve /metrics over HTTP on HOST:PORT (or :PORT for every interface) until Ctrl-C.")] = None,
    textfile: Annotated[str | None, typer.Option("--textfile", help="Write a node-exporter textfile (*.prom) atomically, every --interval seconds.")] = None,
    once: Annotated[bool, typer.Option("--once", help="With --textfile: write once and exit (for cron).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between textfile writes.")] = 15.0,
    models: Annotated[list[str] | None, typer.Option("--model", "-m", help="Only these models (comma-separated, repeatable); default: every model in the store.")] = None,
) -> None:
    """Export every model's state as Prometheus metrics: stable/canary version and weight, fallback
    and since when, training stopped and since when, last training and staleness, golden figures,
    SLO thresholds, and counters of versions, batches, rows, rollbacks, fallbacks and incidents.
    Changes nothing.

    Without --listen or --textfile the metrics are printed once. `llctl serve`'s /metrics shows the
    same metrics for the models it serves. Alert rules: deploy/prometheus/alerts.yaml.

    Examples: `llctl metrics --listen :9108`;
    `llctl metrics --textfile /var/lib/prometheus/node-exporter/llctl.prom --once` (cron)."""
    from lifelong_cli.ops.metrics import metrics as op

    ctx = app_ctx(tctx)

    def render(ctx, r) -> None:
        if r.text is not None:
            sys.stdout.write(r.text)
        else:
            ctx.warn(r.message)

    run(ctx, lambda: op(ctx, listen=listen, textfile=textfile, once=once, interval=interval, models=models), render)
