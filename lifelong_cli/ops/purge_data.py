"""purge-data: hide bad rows from training, replay, drift references and golden sets.

Soft by default (a rule applied at read time; ``undo_purge`` restores), ``hard`` rewrites the
segments without the rows (irreversible)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import (
    BatchNotFoundError,
    ConfigError,
    ExpressionError,
    NotFoundError,
    PreconditionError,
    PurgeRuleNotFoundError,
    UsageError,
)
from lifelong_cli.ops._base import Result, audited, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class PurgeResult(Result):
    model: str
    rule: int | None
    spec: dict[str, Any]
    rows_affected: int
    rows_already_hidden: int
    batches_affected: list[int]
    blast_radius: dict[str, Any]
    hard: bool
    dry_run: bool
    message: str
    next: str
    segments_rewritten: list[int] = field(default_factory=list)
    rows_relabelled: int = 0  # of rows_affected: those that keep their example and fall back to an earlier label


@dataclass(frozen=True)
class PurgeAllModelsResult(Result):
    models: list[PurgeResult]
    spec: dict[str, Any]
    rows_affected: int
    dry_run: bool
    message: str
    next: str


@dataclass(frozen=True)
class UndoPurgeResult(Result):
    model: str
    rule: int
    changed: bool
    rows_restored: int
    message: str
    next: str


def _spec(ctx: AppContext, *, from_, to, source, batch, where) -> dict[str, Any]:
    from lifelong_cli.data.predicate import parse
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.timeparse import parse_time

    now = ctx.now()
    spec: dict[str, Any] = {}
    if from_:
        spec["from"] = parse_time(from_, now=now, flag="--from").isoformat().replace("+00:00", "Z")
    if to:
        spec["to"] = parse_time(to, now=now, flag="--to").isoformat().replace("+00:00", "Z")
    if from_ and to and spec["from"] >= spec["to"]:
        raise UsageError(f"--from {from_} is not before --to {to}", hint="the window is [from, to)")
    if source:
        spec["source"] = source
    if batch is not None:
        spec["batch"] = int(batch)
    if where:
        schema = DataSchema.from_settings(ctx.config.settings.data)
        spec["where"] = str(parse(where, schema.predicate_columns()))
    if not spec:
        raise UsageError("purge-data needs at least one of --from/--to, --source, --batch, --where",
                         hint='e.g. llctl purge-data --batch 12 --reason "labels flipped upstream"')
    return spec


def purge_data(ctx: AppContext, *, reason: str, from_: str | None = None, to: str | None = None,
               source: str | None = None, batch: int | None = None, where: str | None = None,
               dry_run: bool = False, hard: bool = False) -> PurgeResult:
    """Add a purge rule to the model (or, with ``hard``, rewrite its segments) and report the blast
    radius. The rule hides only this model's rows; other models in the store are not touched."""
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches, purge_rules

    reason = _require_reason(reason)
    spec = _spec(ctx, from_=from_, to=to, source=source, batch=batch, where=where)
    schema = DataSchema.from_settings(ctx.config.settings.data)
    model = ctx.model
    data = DataStore(ctx.data_root)
    with ctx.store.tx(write=False) as t:
        if batch is not None and batches.get(t, model, batch) is None:
            raise BatchNotFoundError(f"model '{model}' has no batch {batch}",
                                     hint="`llctl status` / `llctl quarantine list` show batch ids")
        inputs = _inputs(t, model)
    plan = _plan(model, data, schema, spec, inputs)
    if dry_run:
        return _result(plan, spec, hard=hard, dry_run=True, rule_id=None)
    rewritten: list[int] = []
    old_paths: list[str] = []
    new_paths: dict[int, str] = {}
    if hard:
        import pyarrow.compute as pc

        try:
            for ref, drop_keys in _hard_cuts(data, schema, spec, plan, inputs["refs"]):
                seg = data.read(ref.segment_path)
                keep = seg.filter(pc.invert(pc.is_in(seg[schema.key], value_set=drop_keys)))
                w = data.writer(data.new_path(f"segments/{ref.kind}"), seg.schema)
                w.write(keep)
                new_paths[ref.id] = w.commit()
                old_paths.append(ref.segment_path)
                rewritten.append(ref.id)
        except BaseException:
            for p in new_paths.values():
                data.remove(p)
            raise
    args = {**spec, "hard": hard}
    try:
        with audited(ctx, "purge-data", args=args, reason=reason) as (t, entry):
            rule_id = purge_rules.add(t, model, now=ctx.now(), actor=ctx.actor, reason=reason, spec=spec, hard=hard,
                                      rows_affected=plan["rows_affected"], blast_radius=_stored_radius(plan))
            for bid, path in new_paths.items():
                batches.set_segment_path(t, model, bid, path)
            entry.detail = {"rule": rule_id, "rows_affected": plan["rows_affected"],
                            "batches": plan["batches_affected"], "hard": hard, "segments_rewritten": rewritten}
    except BaseException:  # the batches still name their old segments: the rewritten ones must go
        for p in new_paths.values():
            data.remove(p)
        raise
    for p in old_paths:  # after the commit: the old segments are no longer referenced
        data.remove(p)
    if hard:  # no training snapshot may keep a copy of what was removed
        from lifelong_cli.data import snapshots

        snapshots.drop(data)
    return _result(plan, spec, hard=hard, dry_run=False, rule_id=rule_id, rewritten=rewritten)


def purge_data_all_models(ctx: AppContext, *, reason: str, source: str | None, from_: str | None = None,
                          to: str | None = None, where: str | None = None, dry_run: bool = False
                          ) -> PurgeAllModelsResult:
    """A shared upstream gone bad: one purge rule for each model in the store, in one transaction,
    with one audit entry per model. ``source`` is required (the upstream's name, as given to
    ``ingest --source``); --from/--to/--where, if given, are read with this workspace's data schema
    for every model. Soft only: each model undoes its own rule with ``purge-data --undo``."""
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import audit, models, purge_rules

    reason = _require_reason(reason)
    if not (source or "").strip():
        raise UsageError("--all-models needs --source: the shared upstream whose rows to hide",
                         hint='llctl purge-data --all-models --source crm-export --reason "..."')
    spec = _spec(ctx, from_=from_, to=to, source=source.strip(), batch=None, where=where)
    schema = DataSchema.from_settings(ctx.config.settings.data)
    data = DataStore(ctx.config.data_root)  # segment paths are stored in full: any model's are readable
    with ctx.store.tx(write=False) as t:
        names = models.names(t)
        inputs = {name: _inputs(t, name) for name in names}
    if not names:
        raise NotFoundError("the state store holds no model yet", hint="`llctl init` adds one")
    plans = {}
    for name in names:
        try:
            plans[name] = _plan(name, data, schema, spec, inputs[name])
        except (KeyError, ValueError, ExpressionError) as exc:  # its data does not have this workspace's columns
            raise ConfigError(f"model '{name}': its data does not fit this workspace's data schema ({exc}); "
                              "nothing was purged",
                              hint=f"run `llctl --model {name} purge-data --source ...` from its own workspace") from None
    rule_ids: dict[str, int | None] = dict.fromkeys(names)
    if not dry_run:
        now = ctx.now()
        args = {**spec, "hard": False, "all_models": True}
        with ctx.store.tx() as t:
            for name in names:
                plan = plans[name]
                rule_ids[name] = purge_rules.add(t, name, now=now, actor=ctx.actor, reason=reason, spec=spec,
                                                 hard=False, rows_affected=plan["rows_affected"],
                                                 blast_radius=_stored_radius(plan))
                audit.append(t, model=name, ts=now, actor=ctx.actor, verb="purge-data", args=args, reason=reason,
                             outcome="ok", detail={"rule": rule_ids[name], "rows_affected": plan["rows_affected"],
                                                   "batches": plan["batches_affected"], "hard": False,
                                                   "all_models": True})
    results = [_result(plans[n], spec, hard=False, dry_run=dry_run, rule_id=rule_ids[n]) for n in names]
    total = sum(r.rows_affected for r in results)
    hit = [r.model for r in results if r.rows_affected]
    verb = "would hide" if dry_run else "hid"
    message = (f"{'dry run: ' if dry_run else ''}source '{spec['source']}': {verb} {total} row(s) in "
               f"{len(hit)} of {len(results)} model(s)" + (f" ({', '.join(hit)})" if hit else "")
               + ("" if dry_run else f"; one purge rule per model ({', '.join(f'{r.model}: rule {r.rule}' for r in results)})"))
    nxt = ("run again without --dry-run to apply" if dry_run else
           "each model undoes its own rule: `llctl --model NAME purge-data --undo RULE`; roll back the models whose "
           "versions trained on the rows (see each model's blast radius)")
    return PurgeAllModelsResult(models=results, spec=spec, rows_affected=total, dry_run=dry_run, message=message,
                                next=nxt)


def _require_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise UsageError("--reason is required", hint='llctl purge-data ... --reason "why"')
    return reason


def _inputs(t, model: str) -> dict[str, Any]:
    """What a purge of ``model`` reads from the store: its batches, rules in force and version lineage."""
    from lifelong_cli.store import batches, purge_rules, versions

    return {"refs": batches.for_reading(t, model), "rules": purge_rules.active(t, model),
            "versions": versions.lineage_graph(t, model),
            "eligible": [c["id"] for c in versions.last_good(t, model)],
            # without a last-good candidate (e.g. nothing validated yet): any version not known to be bad
            "not_bad": versions.not_known_bad(t, model)}


def _plan(model: str, data, schema, spec: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Which of the model's rows the rule hits — the example rows it hides, and the rows whose
    current label delivery it drops (they fall back to the earlier label) — which other rules
    already hide, and its blast radius."""
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd

    refs, rules = inputs["refs"], inputs["rules"]
    sources = {r.id: r.source for r in refs}
    everything = rd.read_rows(data, schema, refs, [], trainable_only=False, holdout="include")
    rule = rd.PurgeRule(0, spec)
    hides = rule.mask(everything, schema)
    drops = pc.and_(rule.drops(everything, schema, sources), pc.invert(hides))
    hit = pc.or_(hides, drops)
    already = (pc.or_(rd.purge_mask(everything, rules, schema), rd.delivery_mask(everything, rules, schema, sources))
               if rules else pc.and_(hit, False))
    affected = everything.filter(hit)
    seqs = {s for s in affected[rd.TRAINABLE_SEQ].to_pylist() if s is not None}
    radius = blast_radius(inputs["versions"], seqs, eligible=inputs["eligible"])
    if radius["last_clean_version"] is None:
        radius = blast_radius(inputs["versions"], seqs, eligible=inputs["not_bad"])
    batches_hit = set(everything.filter(hides)[rd.BATCH].to_pylist()) | set(everything.filter(drops)[rd.LABEL_BATCH].to_pylist())
    fresh = pc.invert(already)
    return {"model": model, "everything": everything, "hides": hides,
            "rows_affected": int(pc.sum(pc.and_(hit, fresh)).as_py() or 0),
            "rows_relabelled": int(pc.sum(pc.and_(drops, fresh)).as_py() or 0),
            "rows_already": int(pc.sum(pc.and_(hit, already)).as_py() or 0),
            "batches_affected": sorted(b for b in batches_hit if b is not None), "radius": radius}


def _hard_cuts(data, schema, spec: dict[str, Any], plan: dict[str, Any], refs):
    """What ``purge-data --hard`` removes, segment by segment: (batch ref, keys to drop) — the example
    rows the rule hides, and the label rows it drops from the labels and feedback batches it names
    (every delivery of theirs it matches, not only the ones in use)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd

    everything, hides = plan["everything"], plan["hides"]
    hidden = everything.filter(hides)
    for ref in refs:
        if ref.kind == "examples":
            keys = hidden.filter(pc.equal(hidden[rd.BATCH], ref.id))[schema.key]
            if len(keys):
                yield ref, keys
        elif ref.kind in rd.LABEL_KINDS:
            if (spec.get("batch") is None and not spec.get("source")) or \
                    (spec.get("batch") is not None and int(spec["batch"]) != ref.id) or \
                    (spec.get("source") and spec["source"] != ref.source):
                continue
            rows = data.read(ref.segment_path, columns=[schema.key, schema.label])
            if not any(spec.get(c) for c in ("from", "to", "where")):
                keys = rows[schema.key]
            else:  # the row conditions are the example's (its event time, features): join each delivery to it
                ex = rd.examples_for(data, schema, refs, rows[schema.key])
                at = pc.index_in(ex[schema.key], value_set=rows[schema.key])
                ex = ex.set_column(ex.schema.get_field_index(schema.label), schema.label,
                                   rows[schema.label].take(at).cast(ex.schema.field(schema.label).type))
                ex = ex.append_column(rd.LABEL_BATCH, pa.array([ref.id] * ex.num_rows, pa.int64()))
                keys = ex.filter(rd.PurgeRule(0, spec).drops(ex, schema, {r.id: r.source for r in refs}))[schema.key]
            if len(keys):
                yield ref, keys


def _stored_radius(plan: dict[str, Any]) -> dict[str, Any]:
    return jsonable({**plan["radius"], "batches": plan["batches_affected"]})


def _result(plan: dict[str, Any], spec: dict[str, Any], *, hard: bool, dry_run: bool, rule_id: int | None,
            rewritten: list[int] | None = None) -> PurgeResult:
    model, radius, n = plan["model"], plan["radius"], plan["rows_affected"]
    relabelled = plan["rows_relabelled"]
    where = f"{n - relabelled} row(s)" + (f" and the labels of {relabelled} more" if relabelled else "") \
        + f" in batch(es) {_ids(plan['batches_affected'])}"
    if relabelled:
        where += " (those examples fall back to their earlier label)"
    if dry_run:
        return PurgeResult(model=model, rule=None, spec=spec, rows_affected=n, rows_already_hidden=plan["rows_already"],
                           batches_affected=plan["batches_affected"], blast_radius=radius, hard=hard, dry_run=True,
                           rows_relabelled=plan["rows_relabelled"],
                           message=f"dry run: model '{model}': would hide {where}"
                           + (f" ({plan['rows_already']} already hidden by other rules)" if plan["rows_already"] else ""),
                           next="run again without --dry-run to apply")
    msg = f"model '{model}': purge rule {rule_id}: {'removed' if hard else 'hid'} {where}"
    if radius["affected_versions"]:
        msg += (f"; versions trained on them: {_ids(radius['affected_versions'])}; "
                f"last clean version: {radius['last_clean_version'] or 'none'}")
    nxt = ("this cannot be undone" if hard else f"`llctl purge-data --undo {rule_id}` restores the rows")
    if radius["affected_versions"] and radius["last_clean_version"]:
        nxt += f"; roll back with `llctl rollback --to {radius['last_clean_version']}`"
    return PurgeResult(model=model, rule=rule_id, spec=spec, rows_affected=n, rows_already_hidden=plan["rows_already"],
                       batches_affected=plan["batches_affected"], blast_radius=radius, hard=hard, dry_run=False,
                       rows_relabelled=plan["rows_relabelled"], message=msg, next=nxt, segments_rewritten=list(rewritten or []))


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids) if ids else "none"


def blast_radius(versions: list[dict[str, Any]], seqs: set[int], eligible: list[int] | None = None) -> dict[str, Any]:
    """Versions whose lineage (their own data range and their ancestors') includes an affected row,
    and the newest version whose lineage does not — among ``eligible`` when given (purge-data passes
    the "last good" candidates, else the versions not known to be bad: not rejected, not demoted, not
    tainted by other purges), so that it is a version it is safe to roll back to."""
    by_id = {v["id"]: v for v in versions}
    own = {v["id"]: (v["seq_from"] is not None and v["seq_to"] is not None
                     and any(v["seq_from"] <= s <= v["seq_to"] for s in seqs)) for v in versions}
    affected: list[int] = []
    for v in versions:
        cur, hit, guard = v, False, 0
        while cur is not None and guard < 100_000:
            if own[cur["id"]]:
                hit = True
                break
            cur = by_id.get(cur["parent_id"]) if cur["parent_id"] is not None else None
            guard += 1
        if hit:
            affected.append(v["id"])
    hit = set(affected)
    clean = [v["id"] for v in versions if v["id"] not in hit]
    if eligible is not None:
        ok = set(eligible)
        clean = [v for v in clean if v in ok]
    return {"affected_versions": affected, "last_clean_version": max(clean) if clean else None}


def undo_purge(ctx: AppContext, *, rule_id: int, reason: str | None = None, dry_run: bool = False) -> UndoPurgeResult:
    """Deactivate one of the model's soft purge rules: its rows become visible again."""
    from lifelong_cli.store import purge_rules

    model = ctx.model
    with ctx.store.tx(write=False) as t:
        row = purge_rules.get(t, model, rule_id)
    if row is None:
        raise PurgeRuleNotFoundError(f"model '{model}' has no purge rule {rule_id}",
                                     hint="`llctl audit --verb purge-data` lists them")
    if row["hard"]:
        raise PreconditionError(f"purge rule {rule_id} was a --hard purge: its rows were removed and cannot be restored",
                                hint="re-ingest the original data if you still have it")
    n = row["rows_affected"]
    if not row["active"]:
        return UndoPurgeResult(model, rule_id, False, 0,
                               f"model '{model}': purge rule {rule_id} was already undone by {row['undone_by']}; "
                               "nothing changed", "")
    if dry_run:
        return UndoPurgeResult(model, rule_id, False, n, f"dry run: would restore purge rule {rule_id} of model "
                                                         f"'{model}' ({n} row(s))", "")
    with audited(ctx, "purge-data", args={"undo": rule_id}, reason=reason) as (t, entry):
        changed = purge_rules.undo(t, model, rule_id, now=ctx.now(), actor=ctx.actor, reason=reason)
        entry.outcome = "ok" if changed else "noop"
        entry.detail = {"undo": rule_id}
    if not changed:  # a concurrent undo got there first
        return UndoPurgeResult(model, rule_id, False, 0,
                               f"model '{model}': purge rule {rule_id} was already undone; nothing changed", "")
    return UndoPurgeResult(model, rule_id, True, n,
                           f"model '{model}': purge rule {rule_id} undone: its {n} row(s) are visible to training again",
                           "the next `llctl train` may use them")
