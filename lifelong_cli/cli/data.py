"""Data verbs: ingest, quarantine, drift, purge-data."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong_cli.cli._common import DryRunOpt, JsonOpt, YesOpt, app_ctx, confirm, run, when, whole
from lifelong_cli.errors import UsageError

quarantine_app = typer.Typer(help="Rows that failed validation, with their reasons.", no_args_is_help=True)
labels_app = typer.Typer(help="An example's labels: every delivery, and the one training uses.", no_args_is_help=True)


def ingest(
    tctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A file, a directory of files, or - for stdin.")],
    source: Annotated[str, typer.Option("--source", "-s", help="Name of the upstream (purge-data --source matches it).")] = "default",
    kind: Annotated[str, typer.Option("--kind", help="examples | labels | feedback.")] = "examples",
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="csv | jsonl | parquet (default: from the extension; csv for stdin).")] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Validate and ingest one batch: bad rows are quarantined with a reason, duplicates dropped,
    labels joined to their examples, and the batch checked for drift. Exit 3 when the batch is
    rejected (too many bad rows) or held (labels that contradict the labels in use: stored, not
    trainable until `llctl data release`). Re-ingesting the same content changes nothing."""
    from lifelong_cli.ops.ingest import ingest as op

    ctx = app_ctx(tctx, json_out=json_out)
    with _progress(ctx) as progress:
        run(ctx, lambda: op(ctx, path=path, source=source, kind=kind, fmt=fmt, dry_run=dry_run, progress=progress),
            _render_ingest, exit_code=lambda r: 3 if r.status in ("rejected", "held") else 0)


class _progress:
    """A progress bar on stderr for inputs over 8 MB (never on stdout, never under --json output)."""

    def __init__(self, ctx) -> None:
        self.ctx, self.bar, self.task = ctx, None, None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        if total < (8 << 20):
            return
        if self.bar is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            self.bar = Progress("ingesting", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                                console=self.ctx.err(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("ingest", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _render_ingest(ctx, r) -> None:
    from rich.table import Table

    ctx.say(r.message)
    if r.status == "duplicate":
        return
    t = Table(show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("rows read / accepted", f"{r.rows_read} / {r.rows_accepted}")
    t.add_row("quarantined / duplicate", f"{r.rows_quarantined} ({r.bad_fraction:.1%}, limit {r.max_bad_fraction:.0%}) / {r.rows_duplicate}")
    t.add_row("trainable now / hold-out" if r.kind == "examples" else "labels in use: trainable / hold-out / waiting",
              f"{r.rows_trainable} / {r.rows_holdout}" if r.kind == "examples"
              else f"{r.rows_trainable} / {r.rows_holdout} / {r.labels_waiting}")
    t.add_row("event time", f"{when(r.event_time_min)} … {when(r.event_time_max)}")
    if r.top_reasons:
        t.add_row("top reasons", "; ".join(f"{k} ×{v}" for k, v in r.top_reasons.items()))
    if r.ignored_columns:
        t.add_row("ignored columns", ", ".join(r.ignored_columns))
    if r.drift is not None:
        t.add_row("drift", ("DRIFT: " + ", ".join(r.drift["drifted_features"])) if r.drift["drifted"]
                  else f"none ({r.drift['backend']}, {r.drift['n_current']} vs {r.drift['n_reference']} rows)")
    ctx.out().print(t)
    if r.next:
        ctx.say(f"next: {r.next}")


@quarantine_app.command("list")
def quarantine_list(tctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Batches with quarantined rows, newest first, with their top reasons."""
    from lifelong_cli.ops.quarantine import quarantine_list as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        if not r.batches:
            ctx.say(f"model '{r.model}': no quarantined rows")
            return
        t = Table("batch", "status", "source", "input", "quarantined", "of rows", "top reasons")
        for b in r.batches:
            t.add_row(str(b["batch"]), b["status"], b["source"], b["input"] or "-", str(b["rows_quarantined"]),
                      str(b["rows_read"]), "; ".join(f"{k} ×{v}" for k, v in b["top_reasons"].items()))
        ctx.out().print(t)
        if r.orphan_labels:
            ctx.say(f"{r.orphan_labels} label(s) waited longer than data.orphan_label_window_hours for their example (orphans)")

    run(ctx, lambda: op(ctx), render)


@quarantine_app.command("show")
def quarantine_show(
    tctx: typer.Context,
    batch: Annotated[int, typer.Argument(parser=whole, help="Batch id (see `llctl quarantine list`).")],
    limit: Annotated[int, typer.Option("--limit", "-n", parser=whole, help="At most this many rows.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """The quarantined rows of one batch: row number, reason and raw values."""
    from lifelong_cli.ops.quarantine import quarantine_show as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        ctx.say(f"model '{r.model}', batch {r.batch}: {r.total} quarantined row(s); showing {len(r.rows)}")
        if r.rows:
            cols = list(r.rows[0].keys())
            t = Table(*cols)
            for row in r.rows:
                t.add_row(*["" if row[c] is None else str(row[c])[:60] for c in cols])
            ctx.out().print(t)

    run(ctx, lambda: op(ctx, batch=batch, limit=limit), render)


def drift(
    tctx: typer.Context,
    batch: Annotated[int | None, typer.Option("--batch", "-b", parser=whole, help="The drift report stored with this batch.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Window start (ISO time or a duration like 2h).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Window end (exclusive).")] = None,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit 3 when drift is found (for CI).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Per-feature drift for a batch (default: the newest checked one) or an event-time window against
    the rows before it: reference vs batch p1/p50/p99, null rates, the ratio of medians, category
    shares, the tests' verdicts, and the likely cause of a drift where the evidence is strong (a unit
    change, a stuck value, swapped columns, a null burst, remapped categories). --json carries the
    whole report (every test's statistic, p-value and threshold)."""
    from lifelong_cli.ops.drift import drift as op

    ctx = app_ctx(tctx, json_out=json_out)
    run(ctx, lambda: op(ctx, batch=batch, from_=from_, to=to), _render_drift,
        exit_code=lambda r: 3 if (fail_on_drift and r.drifted) else 0)


def _render_drift(ctx, r) -> None:
    rep = r.report
    scope = f"model '{r.model}', " + (f"batch {r.batch}" if r.batch is not None else "window")
    ctx.say(f"{scope}: {'DRIFT' if r.drifted else 'no drift'} ({rep['backend']} backend, {rep['correction']} "
            f"correction, alpha {rep['alpha']}; {rep['n_current']} rows vs {rep['n_reference']} reference rows)")
    columns = rep.get("columns") or {}
    if columns:
        _drift_columns(ctx, rep, columns)
    else:  # a report stored before the per-column summaries: its tests only
        _drift_tests(ctx, rep)
    if r.hint:
        ctx.say(f"hint: {r.hint}")


def _drift_tests(ctx, rep) -> None:
    from rich.table import Table

    t = Table("feature", "test", "statistic", "p-value", "threshold", "drift")
    for f in rep["features"]:
        p = f.get("p_value")
        t.add_row(f["name"], f["test"], f"{f['statistic']:.4g}" if f["statistic"] is not None else "-",
                  "-" if p is None else f"{p:.3g}", f"{f['threshold']:.3g}",
                  "[red]yes[/red]" if f["drifted"] else ("skipped" if f.get("detail", {}).get("skipped") else "no"))
    ctx.out().print(t)


def _drift_verdicts(rep) -> dict[str, str]:
    """Per column: its drifted tests in a few words, "skipped", or "no"."""
    from lifelong_cli.drift.base import FeatureDrift

    out: dict[str, str] = {}
    for f in rep["features"]:
        name = f["name"]
        if f["drifted"]:
            try:
                why = FeatureDrift.from_dict(f).reason()
            except (KeyError, TypeError, ValueError):  # an odd stored document: the test's name will do
                why = f["test"]
            out[name] = f"{out[name]}; {why}" if out.get(name, "no") not in ("no", "skipped") else f"[red]yes[/red]: {why}"
        elif f.get("detail", {}).get("skipped") and out.get(name, "no") == "no":
            out[name] = "skipped (too few samples)"
        else:
            out.setdefault(name, "no")
    return out


def _drift_columns(ctx, rep, columns) -> None:
    from rich import box
    from rich.table import Table

    from lifelong_cli.drift.causes import fmt

    console = ctx.out()
    wide = console.width >= 90  # below that, p1 and p99 go (the JSON keeps them)
    verdicts = _drift_verdicts(rep)

    def pct(side) -> str:
        rate = (side or {}).get("null_rate")
        return "-" if rate is None else f"{rate:.1%}"

    numeric = {n: c for n, c in columns.items() if c.get("kind") == "numeric"}
    if numeric:
        near_zero = any(c.get("median_near_zero") for c in numeric.values())
        t = Table(box=box.SIMPLE_HEAD, title="numeric features: reference vs batch", title_justify="left",
                  caption="(≈0): the reference median is near 0, its ratio means nothing" if near_zero else None,
                  caption_justify="left")
        t.add_column("feature", overflow="fold")
        t.add_column("side")
        quantiles = ("p1", "p50", "p99") if wide else ("p50",)
        for q in quantiles:
            t.add_column(q, justify="right")
        t.add_column("null", justify="right")
        t.add_column("×median", justify="right")
        t.add_column("drift", overflow="fold")
        for name, c in numeric.items():
            ref, cur = c.get("reference") or {}, c.get("batch") or {}
            ratio = c.get("median_ratio")
            shown = "-" if ratio is None else ("(≈0)" if c.get("median_near_zero") else f"×{fmt(ratio)}")
            t.add_row(name, "reference", *(fmt(ref.get(q)) for q in quantiles), pct(ref), "", "")
            t.add_row("", "batch", *(fmt(cur.get(q)) for q in quantiles), pct(cur), shown, verdicts.get(name, "-"),
                      end_section=True)
        console.print(t)
    categorical = {n: c for n, c in columns.items() if c.get("kind") in ("categorical", "label")}
    if categorical:
        t = Table(box=box.SIMPLE_HEAD, title="categorical features and label: reference vs batch",
                  title_justify="left")
        t.add_column("feature", overflow="fold")
        t.add_column("side")
        t.add_column("top categories", overflow="fold")
        t.add_column("unseen", justify="right")
        t.add_column("null", justify="right")
        t.add_column("drift", overflow="fold")
        for name, c in categorical.items():
            top = (c.get("top") or [])[:4 if wide else 3]
            shares = [", ".join(f"{x['category']} {x[side]:.0%}" for x in top) or "-" for side in ("reference", "batch")]
            t.add_row(name, "reference", shares[0], "", pct(c.get("reference")), "")
            t.add_row("", "batch", shares[1], f"{c.get('unseen_share', 0.0):.1%}", pct(c.get("batch")),
                      verdicts.get(name, "-"), end_section=True)
        console.print(t)
    causes = {}
    for cause in rep.get("likely_causes") or []:
        causes.setdefault(cause["feature"], cause)
    drifted = rep.get("drifted_features") or []
    if drifted:
        ctx.say("likely cause:")
        for name in drifted:
            cause = causes.get(name)
            ctx.say(f"  {cause['evidence']}" if cause else
                    f"  {name}: none named (the distribution moved, but not as a unit change, a stuck value, swapped "
                    "columns, a null burst or remapped categories: compare the quantiles above)")


def purge_data(
    tctx: typer.Context,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the audit log; required).")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Event time from (inclusive; ISO or a duration like 6h).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Event time to (exclusive).")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only rows ingested with this --source.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", parser=whole, help="Only rows of this batch (examples or labels batch).")] = None,
    where: Annotated[str | None, typer.Option("--where", help="A condition on schema columns: x1 > 100 and segment in ('a','b'), x3 is null, not (...).")] = None,
    undo: Annotated[int | None, typer.Option("--undo", parser=whole, help="Restore the rows of this purge rule.")] = None,
    hard: Annotated[bool, typer.Option("--hard", help="Rewrite the segments without the rows: IRREVERSIBLE (needs --yes).")] = False,
    all_models: Annotated[bool, typer.Option("--all-models", help="A shared upstream gone bad: one rule per model in the store for --source (one transaction, one audit entry per model).")] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Hide the model's rows from training, replay, drift references and golden sets (soft: a rule
    applied at read time, undone with --undo RULE). All given conditions must hold. Prints the rows
    affected and the blast radius: the versions trained on them and the last clean version to roll
    back to. Other models in the store are not touched, unless --all-models --source X: then every
    model gets its own rule for that upstream (each undoes its own). --where is llctl's own small
    expression language, never SQL."""
    from lifelong_cli.ops.purge_data import purge_data as op
    from lifelong_cli.ops.purge_data import purge_data_all_models, undo_purge

    ctx = app_ctx(tctx, json_out=json_out)

    def go():
        if undo is not None:
            if any(v is not None for v in (from_, to, source, batch, where)) or hard or all_models:
                raise UsageError("--undo takes no other conditions", hint="llctl purge-data --undo 3 --reason ...")
            return undo_purge(ctx, rule_id=undo, reason=reason, dry_run=dry_run)
        if all_models:
            if batch is not None or hard:
                raise UsageError("--all-models takes --source (and --from/--to/--where), not --batch or --hard",
                                 hint='llctl purge-data --all-models --source crm-export --reason "..."')
            return purge_data_all_models(ctx, reason=reason or "", source=source, from_=from_, to=to, where=where,
                                         dry_run=dry_run)
        if hard and not dry_run:
            confirm(ctx, "permanently remove the matching rows from the segments (this cannot be undone)?", yes=yes)
        return op(ctx, reason=reason or "", from_=from_, to=to, source=source, batch=batch, where=where,
                  dry_run=dry_run, hard=hard)

    def render(ctx, r) -> None:
        for m in getattr(r, "models", []):
            ctx.say(f"  {m.message}")
        ctx.say(r.message)
        if r.next:
            ctx.say(f"next: {r.next}")

    run(ctx, go, render)


@labels_app.command("show")
def labels_show(
    tctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The example's key (the data.key column).")],
    json_out: JsonOpt = False,
) -> None:
    """Every delivery of an example's label — its own, then each labels or feedback batch naming it —
    with when and from which source, and which one training uses (the newest not dropped by a purge
    rule). Exit 4 when the model has never seen the key.

    Example: llctl labels show user-000123"""
    from lifelong_cli.ops.labels import labels_show as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        ctx.say(r.message)
        t = Table("batch", "kind", "source")
        t.add_column("ingested", no_wrap=True)
        t.add_column("label")
        t.add_column("status")
        for d in r.deliveries:
            t.add_row(str(d["batch"]), d["kind"], d["source"], when(d["ingested_at"]),
                      "-" if d["label"] is None else str(d["label"]), d["status"])
        ctx.out().print(t)
        if r.next:
            ctx.say(f"next: {r.next}")

    run(ctx, lambda: op(ctx, key=key), render)


HeldBatchArg = Annotated[int, typer.Argument(parser=whole, help="The held batch (see `llctl data holds`).")]
DecisionReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why (audited); required unless --dry-run.")]

data_app = typer.Typer(help="Batches on hold (labels that contradict the labels in use): list, release, reject.",
                       no_args_is_help=True)


@data_app.command("holds")
def data_holds(tctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The batches on hold, oldest first: why (with figures) and for how long. A held batch is
    stored and never lost, but nothing of it is trainable until it is released.

    Example: llctl data holds --json"""
    from lifelong_cli.ops.holds import data_holds as op

    ctx = app_ctx(tctx, json_out=json_out)

    def render(ctx, r) -> None:
        from rich.table import Table

        ctx.say(r.message)
        if r.holds:
            t = Table("batch", "kind", "source", "held since", "rows", "why")
            for h in r.holds:
                t.add_row(str(h["batch"]), h["kind"], h["source"], when(h["held_since"]), str(h["rows"]),
                          h.get("reason", "-"))
            ctx.out().print(t)
        if r.next:
            ctx.say(f"next: {r.next}")

    run(ctx, lambda: op(ctx), render)


def _decide(tctx, batch: int, reason: str | None, dry_run: bool, json_out: bool, release: bool, **more) -> None:
    from lifelong_cli.ops.holds import data_reject, data_release

    ctx = app_ctx(tctx, json_out=json_out)
    op = data_release if release else data_reject
    run(ctx, lambda: op(ctx, batch=batch, reason=reason, dry_run=dry_run, **more), _render_decision)


def _render_decision(ctx, r) -> None:
    ctx.say(r.message)
    if r.next:
        ctx.say(f"next: {r.next}")


@data_app.command("release")
def data_release(
    tctx: typer.Context,
    batch: HeldBatchArg,
    reason: DecisionReasonOpt = None,
    roll_through: Annotated[bool, typer.Option("--roll-through", help="The drift is a real shift: also relax the "
                                               "drift SLO, and hold no batch for drift, for --hours.")] = False,
    hours: Annotated[float, typer.Option("--hours", min=0.1, max=336, help="With --roll-through: for how long.")] = 24.0,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Accept a held batch: its rows become trainable under a new batch id, and its labels become the
    newest delivery of their examples (they win over the labels they contradicted).

    Examples: llctl data release 12 --reason "upstream confirmed the relabel\"
              llctl data release 14 --roll-through --hours 48 --reason "prices moved after the launch\""""
    _decide(tctx, batch, reason, dry_run, json_out, release=True, roll_through=roll_through, hours=hours)


@data_app.command("reject")
def data_reject(
    tctx: typer.Context,
    batch: HeldBatchArg,
    reason: DecisionReasonOpt = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Keep a held batch out for good: it stays on disk (nothing is deleted) and is never trained on.

    Example: llctl data reject 12 --reason "labeller bug, ticket 4411\""""
    _decide(tctx, batch, reason, dry_run, json_out, release=False)
