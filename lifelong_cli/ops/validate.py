"""validate: staged gates on a version; the verdict is stored with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import CheckFailedError, NotFoundError, PreconditionError
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class ValidateResult(Result):
    model: str
    version: int
    verdict: str
    compared_with: int | None
    golden_rows: int
    gates: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    message: str = ""
    next: str = ""


def validate(ctx: AppContext, *, version: int | None = None, dry_run: bool = False) -> ValidateResult:
    """Run the gates on the model's ``version`` (default: its training head) against its stable
    version (or, without one, the version's parent). Every gate runs and is reported; the verdict
    is ``passed`` only if none failed."""
    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.registry.base import open_registry
    from lifelong_cli.release import gates as g
    from lifelong_cli.store import deployment, versions

    settings = ctx.config.settings
    vs = settings.validation
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, model)
        version = version if version is not None else dep["training_head"]
        if version is None:
            raise PreconditionError(f"model '{model}' has no version to validate yet", hint="`llctl train` first")
        cand_row = versions.require(t, model, version)
        stable_id = dep["stable_version"] if dep["stable_version"] != version else None
        base_id = stable_id if stable_id is not None else cand_row["parent_id"]
        base_row = versions.require(t, model, base_id) if base_id is not None else None
    registry = open_registry(ctx)
    schema = DataSchema.from_settings(settings.data)
    gates: list[g.Gate] = []

    def finish(golden_rows: int, metrics: dict[str, float] | None = None) -> ValidateResult:
        return _finish(ctx, version, base_id, golden_rows, gates, metrics=metrics, dry_run=dry_run)

    try:
        cand = g.load(registry, cand_row, settings)
        gates.append(g.Gate("integrity", True, f"{len(cand_row['artifacts'])} artifacts", "sha256 match, loads",
                            "checksums verified; state dict and ONNX load"))
    except (CheckFailedError, NotFoundError) as exc:
        gates.append(g.Gate("integrity", False, "artifact check failed", "sha256 match, loads", exc.message))
        return finish(0)

    base = None
    if base_row is not None:
        try:
            base = g.load(registry, base_row, settings)
        except (CheckFailedError, NotFoundError) as exc:
            gates.append(g.Gate("baseline", None, f"v{base_id} unusable", "", f"cannot compare: {exc.message}"))

    # Candidate and baseline are measured on the same rows: the golden set as the baseline knew it.
    # The hold-out of the data new since (the batches the candidate is the first to learn) is measured
    # apart — a batch must never vouch for the version trained on it (its labels may be the fault).
    golden_to = cand_row["watermark"]
    if base_row is not None and base_row["watermark"] is not None and cand_row["watermark"] is not None:
        golden_to = min(base_row["watermark"], cand_row["watermark"])
    golden = _golden(ctx, schema, seq_to=golden_to)
    gates.append(_snapshot_gate(golden, schema, golden_to, vs.golden_min_age))
    if golden.num_rows == 0:
        weights_ok = g.finite_weights(cand)
        gates.append(g.Gate("sanity", weights_ok, "weights finite" if weights_ok else "non-finite weights", "finite"))
        return finish(0)

    cs = g.scores_onnx(cand, golden)
    gates.append(g.sanity(cand, cs, golden, schema.label, vs))
    diff = float(abs(cs - g.scores_state_dict(cand, golden)).max())
    gates.append(g.Gate("onnx parity", diff <= vs.parity_tolerance, f"max |onnx - state dict| {diff:.2e}",
                        f"≤ {vs.parity_tolerance:g}"))
    if base is not None:
        same = g.signature(cand) == g.signature(base)
        gates.append(g.Gate("signature", same, "same inputs and outputs" if same else "differs", f"as v{base_id}",
                            "" if same else f"v{version} {g.signature(cand)} vs v{base_id} {g.signature(base)}"))
    m = g.metrics(cand, cs, golden, schema.label)
    gates.extend(g.metric_floors(m, vs.min_metrics))
    gates.append(g.slice_floor(cand, cs, golden, schema.label, rd.SLICE, vs))
    if base is not None:
        gates.extend(g.against_baseline(cand, cs, m, base, base_id, golden, schema.label, rd.SLICE, vs))
    else:
        gates.append(g.Gate("no regression", None, "no baseline", "", "first version: nothing to compare with"))
    gates.append(g.latency(cand, golden, vs.max_latency_ms))
    if golden_to != cand_row["watermark"]:
        gates.append(_new_data_holdout(ctx, schema, cand, golden_to, cand_row["watermark"], m))
    return finish(golden.num_rows, m)


def _new_data_holdout(ctx: AppContext, schema, cand, after: int, upto: int, golden_metrics: dict[str, float]):
    """The candidate on the hold-out of the data new since the baseline, next to its golden figure:
    for classification, an accuracy more than ``validation.max_new_data_drop`` below the golden one
    (on at least ``min_slice_rows`` rows) fails — the new labels contradict what the model knew
    (a relabelled or inverted upstream); otherwise a figure only."""
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.release import gates as g

    rows = _golden(ctx, schema, seq_to=upto, imported=False)
    rows = rows.filter(pc.greater(rows[rd.BATCH], after)) if rows.num_rows else rows
    if rows.num_rows == 0:
        return g.Gate("new data hold-out", None, "0 rows", "", "no hold-out rows in the data new since the baseline")
    m = g.metrics(cand, g.scores_onnx(cand, rows), rows, schema.label)
    vs = ctx.config.settings.validation
    figure = f"{next(iter(m))} {m[next(iter(m))]:.4f} on {rows.num_rows} rows"
    if "accuracy" not in m or "accuracy" not in golden_metrics or rows.num_rows < vs.min_slice_rows:
        return g.Gate("new data hold-out", None, figure, "", "a figure only (regression, or too few rows to judge)")
    drop = golden_metrics["accuracy"] - m["accuracy"]
    ok = drop <= vs.max_new_data_drop
    return g.Gate("new data hold-out", ok, f"accuracy {m['accuracy']:.4f} on {rows.num_rows} rows "
                  f"vs golden {golden_metrics['accuracy']:.4f}", f"drop ≤ {vs.max_new_data_drop:g}",
                  "" if ok else "the new batches' labels disagree with what the model knew: possible label trouble "
                  "upstream (`llctl drift`, `llctl labels show KEY`; purge the batch if its labels are wrong)",
                  {"rows": rows.num_rows, "accuracy": m["accuracy"], "golden_accuracy": golden_metrics["accuracy"]})


def _snapshot_gate(golden, schema, seq_to: int | None, min_age: str):
    """The golden snapshot this validation measured on, named: rows up to batch sequence ``seq_to``
    (the baseline's watermark: candidate and baseline on the same rows), at least ``min_age`` old,
    and a hash of its keys and labels — two validations with the same name used the same rows."""
    import hashlib

    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.release import gates as g

    h = hashlib.sha256()
    if golden.num_rows:
        t = pa.table({"k": golden[schema.key], "y": pc.cast(golden[schema.label], pa.string())}).sort_by("k")
        for col in ("k", "y"):
            h.update("\x1f".join(str(v) for v in t[col].to_pylist()).encode())
    name = f"golden@{seq_to if seq_to is not None else 'all'}:{h.hexdigest()[:12]}"
    if not golden.num_rows:
        return g.Gate("golden set", False, "0 rows", "> 0 rows",
                      f"no golden rows (hold-out up to batch sequence {seq_to}, batches at least {min_age} old): "
                      "`llctl golden import FILE`, or keep data.holdout_fraction > 0", {"snapshot": name, "rows": 0})
    return g.Gate("golden set", None, f"{golden.num_rows} rows, snapshot {name}",
                  "> 0 rows", f"hold-out up to batch sequence {seq_to} (the baseline's), batches at least {min_age} old, "
                  "plus imported sets; the new data's hold-out is measured apart",
                  {"snapshot": name, "rows": golden.num_rows, "seq_to": seq_to})


def _golden(ctx: AppContext, schema, *, seq_to: int | None, imported: bool = True):
    """The model's golden rows as of ``seq_to`` (imported golden sets and the hold-out), purged rows
    left out; the hold-out from the snapshot the version's train kept (not a scan of the history).
    Hold-out rows of batches younger than ``validation.golden_min_age`` are not in it yet."""
    from datetime import timedelta

    from lifelong_cli.config import duration_seconds
    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.data.snapshots import Snapshots
    from lifelong_cli.store import batches, purge_rules

    age = duration_seconds(ctx.config.settings.validation.golden_min_age)
    with ctx.store.tx(write=False) as t:
        refs = batches.for_reading(t, ctx.model)
        rules = purge_rules.active(t, ctx.model)
        if age > 0:
            old = {r.id for r in batches.for_reading(t, ctx.model, created_before=ctx.now() - timedelta(seconds=age))}
            refs = [r for r in refs if r.id in old or r.kind == "golden"]
    data = DataStore(ctx.data_root)
    held = Snapshots(data, schema).holdout(refs, seq_to) if seq_to is not None else None
    if not imported:
        refs = [r for r in refs if r.kind != "golden"]
    return rd.read_golden(data, schema, refs, rules, seq_to=seq_to, holdout=held)


def _finish(ctx, version, base_id, golden_rows, gates, metrics=None, dry_run=False) -> ValidateResult:
    model = ctx.model
    failed = [x.name for x in gates if x.passed is False]
    verdict = "rejected" if failed else "passed"
    docs = [x.to_dict() for x in gates]
    if dry_run:
        return ValidateResult(model=model, version=version, verdict=verdict, compared_with=base_id,
                              golden_rows=golden_rows, gates=docs, failed=failed,
                              message=f"dry run: model '{model}': v{version} would be {verdict} (verdict not stored)",
                              next="run again without --dry-run")
    from lifelong_cli.store import versions

    with audited(ctx, "validate", args={"version": version}) as (t, entry):
        versions.record_verdict(t, model, version, now=ctx.now(), actor=ctx.actor, verdict=verdict, gates=docs)
        entry.outcome = verdict
        entry.detail = {"version": version, "failed": failed, "metrics": metrics or {}}
    if ctx.config.settings.registry.kind != "local":
        from lifelong_cli.ops.registry_sync import sync_quietly

        sync_quietly(ctx)
    msg = (f"model '{model}': v{version} passed validation" if not failed
           else f"model '{model}': v{version} REJECTED: failed {', '.join(failed)}")
    nxt = (f"`llctl push {version}` to make it available to serving" if not failed
           else "fix the cause (data? `llctl drift`) and train again; a rejected version cannot be pushed without --force")
    return ValidateResult(model=model, version=version, verdict=verdict, compared_with=base_id, golden_rows=golden_rows,
                          gates=docs, failed=failed, message=msg, next=nxt)
