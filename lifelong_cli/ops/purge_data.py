"""purge-data: hide bad rows from training, replay, drift references and golden sets.

Soft by default (a rule applied at read time; ``undo_purge`` restores), ``hard`` rewrites the
segments without the rows (irreversible)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import (
    BatchNotFoundError,
    PreconditionError,
    PurgeRuleNotFoundError,
    UsageError,
)
from lifelong_cli.ops._base import Result, audited, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class PurgeResult(Result):
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


@dataclass(frozen=True)
class UndoPurgeResult(Result):
    rule: int
    changed: bool
    rows_restored: int
    message: str
    next: str


def _spec(ctx: AppContext, *, from_, to, source, batch, where) -> dict[str, Any]:
    from lifelong_cli.data.predicate import parse
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.ops.audit import parse_time

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
    """Add a purge rule (or, with ``hard``, rewrite the segments) and report the blast radius."""
    import pyarrow.compute as pc
    from sqlalchemy import select

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store.schema import batches, purge_rules

    reason = (reason or "").strip()
    if not reason:
        raise UsageError("--reason is required", hint='llctl purge-data ... --reason "why"')
    spec = _spec(ctx, from_=from_, to=to, source=source, batch=batch, where=where)
    schema = DataSchema.from_settings(ctx.config.settings.data)
    data = DataStore(ctx.config.data_root)
    with ctx.store.read() as conn:
        if batch is not None and conn.execute(select(batches.c.id).where(batches.c.id == batch)).first() is None:
            raise BatchNotFoundError(f"no batch {batch}", hint="`llctl status` / `llctl quarantine list` show batch ids")
        everything = rd.read_rows(conn, data, schema, trainable_only=False, holdout="include", apply_purge=False)
        rules = rd.active_rules(conn)
        radius_versions = _versions(conn)
        from lifelong_cli.ops.rollback import _good_candidates, _tainted
        from lifelong_cli.store.sql import Tx

        t = Tx.from_sa(conn)
        eligible = [c["id"] for c in _good_candidates(t)]
        # Without a last-good candidate (e.g. nothing validated yet): any version not known to be bad.
        tainted = _tainted(t)
        not_bad = [r["id"] for r in t.rows(
            "SELECT v.id FROM model_versions v WHERE v.demoted_at IS NULL AND NOT EXISTS (SELECT 1 FROM validations x "
            "WHERE x.version_id = v.id AND x.verdict = 'rejected' AND x.id = "
            "(SELECT max(y.id) FROM validations y WHERE y.version_id = v.id))") if r["id"] not in tainted]
    rule = rd.PurgeRule(0, spec)
    hit = rule.mask(everything, schema)
    already = rd.purge_mask(everything, rules, schema) if rules else pc.and_(hit, False)
    new_hits = pc.and_(hit, pc.invert(already))
    rows_affected = int(pc.sum(new_hits).as_py() or 0)
    rows_already = int(pc.sum(pc.and_(hit, already)).as_py() or 0)
    affected_tbl = everything.filter(hit)
    batches_affected = sorted(set(affected_tbl[rd.BATCH].to_pylist()))
    seqs = {s for s in affected_tbl[rd.TRAINABLE_SEQ].to_pylist() if s is not None}
    radius = blast_radius(radius_versions, seqs, eligible=eligible)
    if radius["last_clean_version"] is None:
        radius = blast_radius(radius_versions, seqs, eligible=not_bad)
    what = "would hide" if dry_run else ("removed" if hard else "hid")
    if dry_run:
        return PurgeResult(None, spec, rows_affected, rows_already, batches_affected, radius, hard, True,
                           f"dry run: {what} {rows_affected} row(s) in batch(es) {_ids(batches_affected)}"
                           + (f" ({rows_already} already hidden by other rules)" if rows_already else ""),
                           "run again without --dry-run to apply")
    rewritten: list[int] = []
    old_paths: list[str] = []
    new_paths: dict[int, str] = {}
    if hard:
        with ctx.store.read() as conn:
            refs = {r.id: r for r in rd.accepted_batches(conn, kinds=["examples"])}
        for bid in batches_affected:
            ref = refs[bid]
            seg = data.read(ref.segment_path)
            labelled = everything.filter(pc.equal(everything[rd.BATCH], bid))
            drop_keys = labelled.filter(rule.mask(labelled, schema))[schema.key]
            keep = seg.filter(pc.invert(pc.is_in(seg[schema.key], value_set=drop_keys)))
            path = data.new_path("segments/examples")
            w = data.writer(path, seg.schema)
            w.write(keep)
            new_paths[bid] = w.commit()
            old_paths.append(ref.segment_path)
            rewritten.append(bid)
    args = {**spec, "hard": hard}
    with audited(ctx, "purge-data", args=args, reason=reason, sa=True) as (conn, entry):
        res = conn.execute(purge_rules.insert().values(
            created_at=ctx.now(), created_by=ctx.actor, reason=reason, spec=spec, active=not hard, hard=hard,
            rows_affected=rows_affected, blast_radius=jsonable({**radius, "batches": batches_affected})))
        rule_id = res.inserted_primary_key[0]
        for bid, path in new_paths.items():
            conn.execute(batches.update().where(batches.c.id == bid).values(segment_path=path))
        entry.detail = {"rule": rule_id, "rows_affected": rows_affected, "batches": batches_affected,
                        "hard": hard, "segments_rewritten": rewritten}
    for p in old_paths:  # after the commit: the old segments are no longer referenced
        data.remove(p)
    msg = f"purge rule {rule_id}: {what} {rows_affected} row(s) in batch(es) {_ids(batches_affected)}"
    if radius["affected_versions"]:
        msg += (f"; versions trained on them: {_ids(radius['affected_versions'])}; "
                f"last clean version: {radius['last_clean_version'] or 'none'}")
    nxt = ("this cannot be undone" if hard else f"`llctl purge-data --undo {rule_id}` restores the rows")
    if radius["affected_versions"] and radius["last_clean_version"]:
        nxt += f"; roll back with `llctl rollback --to {radius['last_clean_version']}`"
    return PurgeResult(rule_id, spec, rows_affected, rows_already, batches_affected, radius, hard, False, msg, nxt,
                       segments_rewritten=rewritten)


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids) if ids else "none"


def _versions(conn) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from lifelong_cli.store.schema import model_versions as mv

    return [dict(r) for r in conn.execute(select(mv.c.id, mv.c.parent_id, mv.c.seq_from, mv.c.seq_to)
                                         .order_by(mv.c.id)).mappings()]


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
    """Deactivate a soft purge rule: its rows become visible again."""
    from sqlalchemy import select

    from lifelong_cli.store.schema import purge_rules

    with ctx.store.read() as conn:
        row = conn.execute(select(purge_rules).where(purge_rules.c.id == rule_id)).mappings().first()
    if row is None:
        raise PurgeRuleNotFoundError(f"no purge rule {rule_id}", hint="`llctl audit --verb purge-data` lists them")
    if row["hard"]:
        raise PreconditionError(f"purge rule {rule_id} was a --hard purge: its rows were removed and cannot be restored",
                                hint="re-ingest the original data if you still have it")
    if not row["active"]:
        return UndoPurgeResult(rule_id, False, 0, f"purge rule {rule_id} was already undone by {row['undone_by']}; nothing changed", "")
    if dry_run:
        return UndoPurgeResult(rule_id, False, row["rows_affected"],
                               f"dry run: would restore purge rule {rule_id} ({row['rows_affected']} row(s))", "")
    with audited(ctx, "purge-data", args={"undo": rule_id}, reason=reason, sa=True) as (conn, entry):
        conn.execute(purge_rules.update().where(purge_rules.c.id == rule_id, purge_rules.c.active)
                     .values(active=False, undone_at=ctx.now(), undone_by=ctx.actor, undo_reason=reason))
        entry.detail = {"undo": rule_id}
    return UndoPurgeResult(rule_id, True, row["rows_affected"],
                           f"purge rule {rule_id} undone: its {row['rows_affected']} row(s) are visible to training again",
                           "the next `llctl train` may use them")
