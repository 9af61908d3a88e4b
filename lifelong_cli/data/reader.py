"""The one reader of ingested data: training, replay, drift references and validation all use it.

Examples are joined with labels that arrived later (labels batches override an example's own
label; each row's ``_trainable_seq`` is the ingest sequence at which it became trainable), and
every active purge rule is applied: a purged row never comes out of here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from lifelong_cli.data.predicate import parse
from lifelong_cli.data.schema import HOLDOUT_COL, TS_TYPE, DataSchema
from lifelong_cli.data.segments import DataStore
from lifelong_cli.store.schema import batches, purge_rules

BATCH = "_batch"
SOURCE = "_source"
LABEL_BATCH = "_label_batch"
TRAINABLE_SEQ = "_trainable_seq"
HOLDOUT = HOLDOUT_COL


@dataclass(frozen=True)
class BatchRef:
    id: int
    kind: str
    source: str
    segment_path: str


@dataclass(frozen=True)
class PurgeRule:
    id: int
    spec: dict[str, Any]

    def mask(self, table: pa.Table, schema: DataSchema) -> pa.Array:
        """True where this rule hides the row (all given conditions hold)."""
        n = table.num_rows
        m = pa.array(np.ones(n, dtype=bool))
        s = self.spec
        if s.get("from"):
            m = pc.and_(m, pc.greater_equal(table[schema.event_time], pa.scalar(_ts(s["from"]), TS_TYPE)))
        if s.get("to"):
            m = pc.and_(m, pc.less(table[schema.event_time], pa.scalar(_ts(s["to"]), TS_TYPE)))
        if s.get("source"):
            m = pc.and_(m, pc.equal(table[SOURCE], s["source"]))
        if s.get("batch") is not None:
            b = int(s["batch"])
            m = pc.and_(m, pc.or_(pc.equal(table[BATCH], b), pc.fill_null(pc.equal(table[LABEL_BATCH], b), False)))
        if s.get("where"):
            pred = parse(s["where"], schema.predicate_columns())
            m = pc.and_(m, pred.mask(table))
        return pc.fill_null(m, False)


def _ts(v: str) -> datetime:
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


def accepted_batches(conn, kinds: Iterable[str] | None = None) -> list[BatchRef]:
    q = select(batches.c.id, batches.c.kind, batches.c.source, batches.c.segment_path).where(
        batches.c.status == "accepted", batches.c.segment_path.is_not(None)).order_by(batches.c.id)
    if kinds:
        q = q.where(batches.c.kind.in_(list(kinds)))
    return [BatchRef(*r) for r in conn.execute(q)]


def active_rules(conn) -> list[PurgeRule]:
    rows = conn.execute(select(purge_rules.c.id, purge_rules.c.spec).where(purge_rules.c.active)
                        .order_by(purge_rules.c.id))
    return [PurgeRule(r[0], r[1]) for r in rows]


def load_examples(data: DataStore, refs: list[BatchRef], schema: DataSchema,
                  columns: list[str] | None = None) -> pa.Table:
    want = None if columns is None else sorted({*columns, schema.key, schema.label, schema.event_time, HOLDOUT})
    parts = []
    for r in refs:
        if r.kind != "examples":
            continue
        t = data.read(r.segment_path, columns=want)
        t = t.append_column(BATCH, pa.array([r.id] * t.num_rows, pa.int64()))
        t = t.append_column(SOURCE, pa.array([r.source] * t.num_rows, pa.string()))
        parts.append(t)
    if not parts:
        base = schema.arrow_schema("examples").append(pa.field(HOLDOUT, pa.bool_()))
        if want is not None:
            base = pa.schema([f for f in base if f.name in want])
        return base.append(pa.field(BATCH, pa.int64())).append(pa.field(SOURCE, pa.string())).empty_table()
    return pa.concat_tables(parts, promote_options="permissive")


def load_labels(data: DataStore, refs: list[BatchRef], schema: DataSchema) -> pa.Table:
    """Latest label per key from labels and feedback batches."""
    parts = []
    for r in refs:
        if r.kind not in ("labels", "feedback"):
            continue
        t = data.read(r.segment_path, columns=[schema.key, schema.label])
        parts.append(t.append_column(LABEL_BATCH, pa.array([r.id] * t.num_rows, pa.int64())))
    if not parts:
        return pa.table({schema.key: pa.array([], pa.string()), "_late_label": pa.array([], schema.label_arrow_type()),
                         LABEL_BATCH: pa.array([], pa.int64())})
    t = pa.concat_tables(parts).rename_columns([schema.key, "_late_label", LABEL_BATCH])
    latest = t.group_by(schema.key).aggregate([(LABEL_BATCH, "max")]).rename_columns([schema.key, LABEL_BATCH])
    return latest.join(t, keys=[schema.key, LABEL_BATCH], join_type="inner")


def read_rows(conn, data: DataStore, schema: DataSchema, *, trainable_only: bool = True,
              seq_from: int | None = None, seq_to: int | None = None, holdout: str = "exclude",
              apply_purge: bool = True, rules: list[PurgeRule] | None = None,
              columns: list[str] | None = None, batch_ids: Iterable[int] | None = None) -> pa.Table:
    """Rows of accepted example batches, labels joined, purge rules applied.

    seq_from/seq_to bound ``_trainable_seq`` (inclusive); holdout is exclude | only | include."""
    refs = accepted_batches(conn)
    rules = active_rules(conn) if (apply_purge and rules is None) else (rules or [])
    ex_refs = [r for r in refs if r.kind == "examples" and (batch_ids is None or r.id in set(batch_ids))]
    t = load_examples(data, ex_refs, schema, columns)
    labels = load_labels(data, refs, schema)
    if labels.num_rows:
        t = t.join(labels, keys=schema.key, join_type="left outer", use_threads=True)
        late = t["_late_label"]
        merged = pc.coalesce(late, t[schema.label])
        seq = pc.if_else(pc.is_valid(late), pc.max_element_wise(t[BATCH], t[LABEL_BATCH]),
                         pc.if_else(pc.is_valid(t[schema.label]), t[BATCH], pa.scalar(None, pa.int64())))
        t = t.set_column(t.schema.get_field_index(schema.label), schema.label, merged).drop_columns(["_late_label"])
    else:
        t = t.append_column(LABEL_BATCH, pa.nulls(t.num_rows, pa.int64()))
        seq = pc.if_else(pc.is_valid(t[schema.label]), t[BATCH], pa.scalar(None, pa.int64()))
    t = t.append_column(TRAINABLE_SEQ, seq)
    keep = pa.array(np.ones(t.num_rows, dtype=bool))  # every condition into one mask, then one filter
    if trainable_only:
        keep = pc.and_(keep, pc.is_valid(t[schema.label]))
    if seq_from is not None:
        keep = pc.and_(keep, pc.fill_null(pc.greater_equal(t[TRAINABLE_SEQ], seq_from), False))
    if seq_to is not None:
        keep = pc.and_(keep, pc.fill_null(pc.less_equal(t[TRAINABLE_SEQ], seq_to), False))
    if holdout == "exclude":
        keep = pc.and_(keep, pc.invert(pc.fill_null(t[HOLDOUT], False)))
    elif holdout == "only":
        keep = pc.and_(keep, pc.fill_null(t[HOLDOUT], False))
    if rules:
        keep = pc.and_(keep, pc.invert(purge_mask(t, rules, schema)))
    t = t.filter(keep)
    joined = labels.num_rows > 0
    return t.sort_by([(BATCH, "ascending")]) if joined and t.num_rows else t


def read_recent(conn, data: DataStore, schema: DataSchema, n: int, *, columns: list[str] | None = None) -> pa.Table:
    """The newest ``n`` trainable rows (purge rules applied), reading segments newest first and
    stopping once there are enough: the drift reference window without loading all history."""
    refs = [r for r in accepted_batches(conn, kinds=["examples"])]
    rules = active_rules(conn)
    parts, have = [], 0
    for r in reversed(refs):
        t = read_rows(conn, data, schema, holdout="include", rules=rules, columns=columns, batch_ids=[r.id])
        if t.num_rows:
            parts.append(t)
            have += t.num_rows
        if have >= n:
            break
    if not parts:
        return read_rows(conn, data, schema, holdout="include", rules=rules, columns=columns, batch_ids=[])
    out = pa.concat_tables(list(reversed(parts)), promote_options="permissive")
    return out.slice(max(0, out.num_rows - n))


def purge_mask(t: pa.Table, rules: list[PurgeRule], schema: DataSchema) -> pa.Array:
    m = pa.array(np.zeros(t.num_rows, dtype=bool))
    for r in rules:
        m = pc.or_(m, r.mask(t, schema))
    return m


def existing_keys(data: DataStore, refs: list[BatchRef], schema: DataSchema) -> pa.Array:
    keys = [data.read(r.segment_path, columns=[schema.key])[schema.key] for r in refs if r.kind == "examples"]
    if not keys:
        return pa.array([], pa.string())
    return pa.chunked_array([c for k in keys for c in k.chunks], pa.string()).combine_chunks()


SLICE = "_slice"


def read_golden(conn, data: DataStore, schema: DataSchema, *, rules: list[PurgeRule] | None = None,
                seq_to: int | None = None) -> pa.Table:
    """The golden set: imported golden rows (their slice from --slice-by) and the automatic hold-out
    (sliced by ingest batch, so forgetting of old data shows per batch); purged rows excluded."""
    rules = active_rules(conn) if rules is None else rules
    held = read_rows(conn, data, schema, holdout="only", rules=rules, seq_to=seq_to)
    held = held.append_column(SLICE, pc.binary_join_element_wise("batch ", pc.cast(held[BATCH], pa.string()), ""))
    parts = [held.select([*schema.columns("examples"), BATCH, SOURCE, SLICE])]
    for r in accepted_batches(conn, kinds=["golden"]):
        t = data.read(r.segment_path)
        t = t.append_column(BATCH, pa.array([r.id] * t.num_rows, pa.int64()))
        t = t.append_column(SOURCE, pa.array([r.source] * t.num_rows, pa.string()))
        if rules:
            probe = t.append_column(LABEL_BATCH, pa.nulls(t.num_rows, pa.int64()))
            t = t.filter(pc.invert(purge_mask(probe, rules, schema)))
        parts.append(t.select([*schema.columns("examples"), BATCH, SOURCE, SLICE]).cast(parts[0].schema))
    return pa.concat_tables(parts)
