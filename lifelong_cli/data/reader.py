"""The one reader of ingested data: training, replay, drift references and validation all use it.

It runs no query: the caller reads the model's batch references and purge rules from the store
(``store.batches.for_reading``, ``store.purge_rules.active``) and passes them in. Examples are
joined with labels that arrived later, and every purge rule given is applied: a purged row never
comes out of here.

Labels. Every delivery of a label is kept: the example's own label (in its examples batch) and each
row of a labels or feedback batch naming its key. The **effective label** of an example is the one
of its newest delivery (the highest batch id, i.e. the latest ingested) that no purge rule drops,
else its own label; each row's ``_label_batch`` names that delivery and ``_trainable_seq`` is the
ingest sequence at which the row became trainable with it. A purge rule is read two ways:

* it **hides example rows** whose own batch, source, event time and ``where`` match it;
* it **drops deliveries** — a rule naming a batch or a source drops the label rows of the labels
  and feedback batches that match (the row's event time and ``where`` are checked too), and the
  example falls back to its previous delivery. Purging a relabel therefore restores the labels it
  replaced; undoing the purge brings the relabel back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lifelong_cli.data.predicate import parse_stored
from lifelong_cli.data.schema import HOLDOUT_COL, TS_TYPE, DataSchema
from lifelong_cli.data.segments import DataStore
from lifelong_cli.store.batches import BatchRef

BATCH = "_batch"
SOURCE = "_source"
LABEL_BATCH = "_label_batch"
TRAINABLE_SEQ = "_trainable_seq"
HOLDOUT = HOLDOUT_COL


@dataclass(frozen=True)
class PurgeRule:
    id: int
    spec: dict[str, Any]

    def mask(self, table: pa.Table, schema: DataSchema) -> pa.Array:
        """True where this rule hides the example row (all given conditions hold for the row's own
        batch and source)."""
        s = self.spec
        m = self._row_conditions(table, schema)
        if s.get("source"):
            m = pc.and_(m, pc.equal(table[SOURCE], s["source"]))
        if s.get("batch") is not None:
            m = pc.and_(m, pc.equal(table[BATCH], int(s["batch"])))
        return pc.fill_null(m, False)

    def drops(self, table: pa.Table, schema: DataSchema, sources: Mapping[int, str]) -> pa.Array:
        """True where this rule drops the row's current label delivery (``_label_batch``): it names
        a batch or a source, that batch (or that batch's source, from ``sources``: batch id -> source)
        is the delivery's, and the row's event time and ``where`` match."""
        s = self.spec
        n = table.num_rows
        if (s.get("batch") is None and not s.get("source")) or LABEL_BATCH not in table.column_names:
            return pa.array(np.zeros(n, dtype=bool))
        lb = table[LABEL_BATCH]
        m = pc.and_(self._row_conditions(table, schema), pc.is_valid(lb))
        if s.get("batch") is not None:
            m = pc.and_(m, pc.equal(lb, int(s["batch"])))
        if s.get("source"):
            ids = [b for b, src in sources.items() if src == s["source"]]
            m = pc.and_(m, pc.is_in(lb, value_set=pa.array(ids, pa.int64())))
        return pc.fill_null(m, False)

    def _row_conditions(self, table: pa.Table, schema: DataSchema) -> pa.Array:
        """The conditions on the row itself (event time, ``where``)."""
        m = pa.array(np.ones(table.num_rows, dtype=bool))
        s = self.spec
        if s.get("from"):
            m = pc.and_(m, pc.greater_equal(table[schema.event_time], pa.scalar(_ts(s["from"]), TS_TYPE)))
        if s.get("to"):
            m = pc.and_(m, pc.less(table[schema.event_time], pa.scalar(_ts(s["to"]), TS_TYPE)))
        if s.get("where"):
            pred = parse_stored(s["where"], schema.predicate_columns())
            m = pc.and_(m, pred.mask(table))
        return m


def _ts(v: str) -> datetime:
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


def rules_of(rules: Iterable[PurgeRule | Mapping[str, Any]] | None) -> list[PurgeRule]:
    """Purge rules as the reader applies them, from ``store.purge_rules.active`` rows (or rules)."""
    return [r if isinstance(r, PurgeRule) else PurgeRule(r["id"], r["spec"]) for r in (rules or [])]



def load_examples(data: DataStore, refs: Sequence[BatchRef], schema: DataSchema,
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


def load_labels(data: DataStore, refs: Sequence[BatchRef], schema: DataSchema) -> pa.Table:
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
    return _latest(pa.concat_tables(parts).rename_columns([schema.key, "_late_label", LABEL_BATCH]), schema)


def _latest(t: pa.Table, schema: DataSchema) -> pa.Table:
    """One row per key: the one of the newest batch (``t`` holds key, _late_label, _label_batch)."""
    if t.num_rows == 0:
        return t
    t = t.take(pc.sort_indices(t, [(LABEL_BATCH, "descending")]))
    first = pc.index_in(pc.unique(t[schema.key]), value_set=t[schema.key])
    return t.take(first)


def read_rows(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef],
              rules: Iterable[PurgeRule | Mapping[str, Any]], *, trainable_only: bool = True,
              seq_from: int | None = None, seq_to: int | None = None, holdout: str = "exclude",
              columns: list[str] | None = None, batch_ids: Iterable[int] | None = None) -> pa.Table:
    """Rows of the accepted example batches among ``refs`` (one model's, from
    ``store.batches.for_reading``), labels of its labels batches joined, ``rules`` applied (pass
    ``store.purge_rules.active``; an empty list reads every row).

    seq_from/seq_to bound ``_trainable_seq`` (inclusive); holdout is exclude | only | include;
    batch_ids limits the example batches read (labels still come from every labels batch)."""
    ids = None if batch_ids is None else set(batch_ids)
    ex_refs = [r for r in refs if r.kind == "examples" and (ids is None or r.id in ids)]
    return _joined(load_examples(data, ex_refs, schema, columns), load_labels(data, refs, schema), schema,
                   rules_of(rules), trainable_only=trainable_only, seq_from=seq_from, seq_to=seq_to, holdout=holdout,
                   data=data, refs=refs)


def _joined(t: pa.Table, labels: pa.Table, schema: DataSchema, rules: list[PurgeRule], *, trainable_only: bool,
            seq_from: int | None, seq_to: int | None, holdout: str, data: DataStore,
            refs: Sequence[BatchRef], upto: int | None = None) -> pa.Table:
    """Example rows ``t`` with their late labels joined (``labels``: the newest delivery of each
    key), the deliveries the rules drop replaced by the previous ones, filtered (see
    ``read_rows``); the rows keep their order (batch by batch, each in its segment's order)."""
    t = _with_labels(t, labels, schema)
    if rules:
        t = _redeliver(data, schema, refs, t, rules, upto=upto)
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
    return t.filter(keep)


def _with_labels(t: pa.Table, labels: pa.Table, schema: DataSchema, own: pa.Array | None = None) -> pa.Table:
    """``t`` with the delivery of ``labels`` (one per key: key, _late_label, _label_batch) joined:
    the label column becomes the delivered label, else the example's own (``own``, else the
    column as it is), ``_label_batch`` the delivery and ``_trainable_seq`` its sequence."""
    own = t[schema.label] if own is None else own
    if labels.num_rows:
        at = pc.index_in(t[schema.key], value_set=labels[schema.key])
        late = labels["_late_label"].take(at).cast(own.type)
        lb = labels[LABEL_BATCH].take(at)
        merged = pc.coalesce(late, own)
        seq = pc.if_else(pc.is_valid(late), pc.max_element_wise(t[BATCH], lb),
                         pc.if_else(pc.is_valid(own), t[BATCH], pa.scalar(None, pa.int64())))
    else:
        lb = pa.nulls(t.num_rows, pa.int64())
        merged = own
        seq = pc.if_else(pc.is_valid(own), t[BATCH], pa.scalar(None, pa.int64()))
    t = t.set_column(t.schema.get_field_index(schema.label), schema.label, merged)
    for name, col in ((LABEL_BATCH, lb), (TRAINABLE_SEQ, seq)):
        i = t.schema.get_field_index(name)
        t = t.set_column(i, name, col) if i >= 0 else t.append_column(name, col)
    return t


MAX_REDELIVERIES = 64


def _redeliver(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef], rows: pa.Table,
               rules: list[PurgeRule], *, upto: int | None = None) -> pa.Table:
    """``rows`` (labels joined) with every delivery the rules drop replaced by the newest one they
    keep (or the example's own label): the other deliveries and the own labels of just the rows hit
    are read through the key index, so this costs what the rules hit, not the history."""
    sources = {r.id: r.source for r in refs}
    hit = delivery_mask(rows, rules, schema, sources)
    idx = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
    if len(idx) == 0:
        return rows
    sub = rows.take(pa.array(idx))
    keys = sub[schema.key]
    every = all_labels_for(data, schema, refs, keys, upto=upto)
    mine = examples_for(data, schema, refs, keys, columns=[schema.key, schema.label])
    own = mine[schema.label].take(pc.index_in(keys, value_set=mine[schema.key])).cast(sub.schema.field(schema.label).type)
    dropped = pa.table({schema.key: pa.array([], pa.string()), LABEL_BATCH: pa.array([], pa.int64())})
    for _ in range(MAX_REDELIVERIES):
        gone = sub.filter(delivery_mask(sub, rules, schema, sources)).select([schema.key, LABEL_BATCH])
        if gone.num_rows == 0:
            break
        dropped = pa.concat_tables([dropped, gone.cast(dropped.schema)])
        alive = every.join(dropped, keys=[schema.key, LABEL_BATCH], join_type="left anti") if every.num_rows else every
        sub = _with_labels(sub, _latest(alive, schema), schema, own=own)
    # the rows back in their places: those not hit, then the re-delivered ones, in the original order
    pos = "_row"
    rest = rows.append_column(pos, pa.array(np.arange(rows.num_rows))).filter(pc.invert(hit))
    sub = sub.append_column(pos, pa.array(idx.astype(np.int64))).cast(rest.schema)
    out = pa.concat_tables([rest, sub])
    return out.take(pc.sort_indices(out[pos])).drop_columns([pos])


def delivery_mask(t: pa.Table, rules: Iterable[PurgeRule | Mapping[str, Any]], schema: DataSchema,
                  sources: Mapping[int, str]) -> pa.Array:
    """True where a rule drops the row's current label delivery (see ``PurgeRule.drops``)."""
    m = pa.array(np.zeros(t.num_rows, dtype=bool))
    for r in rules_of(rules):
        m = pc.or_(m, r.drops(t, schema, sources))
    return m


def batch_rows(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef],
               rules: Iterable[PurgeRule | Mapping[str, Any]], t: pa.Table, batch: BatchRef) -> pa.Table:
    """Rows ``t`` read from stored examples batch ``batch``'s segment as training reads them: late
    labels joined, rules applied, trainable only (hold-out included)."""
    t = t.append_column(BATCH, pa.array(np.full(t.num_rows, batch.id, np.int64)))
    t = t.append_column(SOURCE, pa.array([batch.source] * t.num_rows, pa.string()))
    return _joined(t, labels_for(data, schema, refs, t[schema.key]), schema, rules_of(rules), trainable_only=True,
                   seq_from=None, seq_to=None, holdout="include", data=data, refs=refs)


def apply_rules(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef], rows: pa.Table,
                rules: Iterable[PurgeRule | Mapping[str, Any]], *, upto: int | None = None,
                trainable_only: bool = True) -> pa.Table:
    """Rows read before purge rules (labels joined: a snapshot, ``read_new(rules=[])``) as the
    ``rules`` make them: dropped deliveries replaced by the previous ones, hidden rows removed (and,
    ``trainable_only``, rows left without a label)."""
    rules = rules_of(rules)
    if not rules or rows.num_rows == 0:
        return rows
    rows = _redeliver(data, schema, refs, rows, rules, upto=upto)
    keep = pc.invert(purge_mask(rows, rules, schema))
    if trainable_only:
        keep = pc.and_(keep, pc.is_valid(rows[schema.label]))
    return rows.filter(keep)


def read_recent(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef],
                rules: Iterable[PurgeRule | Mapping[str, Any]], n: int, *,
                columns: list[str] | None = None) -> pa.Table:
    """The newest ``n`` trainable rows (``rules`` applied), reading segments newest first, row group
    by row group, with the late labels of just those rows (the key index), and stopping once there
    are enough: the drift reference window without loading all history."""
    rules = rules_of(rules)
    want = None if columns is None else _example_columns(schema, columns)
    parts, have = [], 0
    for r in reversed([r for r in refs if r.kind == "examples"]):
        with data.parquet(r.segment_path) as pf:
            for g in reversed(range(pf.metadata.num_row_groups)):
                t = pf.read_row_group(g, columns=want)
                t = t.append_column(BATCH, pa.array(np.full(t.num_rows, r.id, np.int64)))
                t = t.append_column(SOURCE, pa.array([r.source] * t.num_rows, pa.string()))
                t = _joined(t, labels_for(data, schema, refs, t[schema.key]), schema, rules, trainable_only=True,
                            seq_from=None, seq_to=None, holdout="include", data=data, refs=refs)
                if t.num_rows:
                    parts.append(t)
                    have += t.num_rows
                if have >= n:
                    break
        if have >= n:
            break
    if not parts:
        return _joined(load_examples(data, [], schema, columns), load_labels(data, [], schema), schema, rules,
                       trainable_only=True, seq_from=None, seq_to=None, holdout="include", data=data, refs=refs)
    out = pa.concat_tables(list(reversed(parts)), promote_options="permissive")
    return out.slice(max(0, out.num_rows - n))


def purge_mask(t: pa.Table, rules: Iterable[PurgeRule | Mapping[str, Any]], schema: DataSchema) -> pa.Array:
    m = pa.array(np.zeros(t.num_rows, dtype=bool))
    for r in rules_of(rules):
        m = pc.or_(m, r.mask(t, schema))
    return m


def existing_keys(data: DataStore, refs: Sequence[BatchRef], schema: DataSchema) -> pa.Array:
    keys = [data.read(r.segment_path, columns=[schema.key])[schema.key] for r in refs if r.kind == "examples"]
    if not keys:
        return pa.array([], pa.string())
    return pa.chunked_array([c for k in keys for c in k.chunks], pa.string()).combine_chunks()


SLICE = "_slice"


def read_golden(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef],
                rules: Iterable[PurgeRule | Mapping[str, Any]], *, seq_to: int | None = None,
                holdout: pa.Table | None = None) -> pa.Table:
    """The golden set: imported golden rows (their slice from --slice-by) and the automatic hold-out
    (sliced by ingest batch, so forgetting of old data shows per batch); purged rows excluded.

    ``holdout``: the hold-out rows up to ``seq_to`` before purge rules, when the caller has them
    (``data.snapshots``); else they are read from every segment."""
    rules = rules_of(rules)
    if holdout is None:
        held = read_rows(data, schema, refs, rules, holdout="only", seq_to=seq_to)
    else:
        held = apply_rules(data, schema, refs, holdout, rules)
    held = held.append_column(SLICE, pc.binary_join_element_wise("batch ", pc.cast(held[BATCH], pa.string()), ""))
    parts = [held.select([*schema.columns("examples"), BATCH, SOURCE, SLICE])]
    for r in refs:
        if r.kind != "golden":
            continue
        t = data.read(r.segment_path)
        t = t.append_column(BATCH, pa.array([r.id] * t.num_rows, pa.int64()))
        t = t.append_column(SOURCE, pa.array([r.source] * t.num_rows, pa.string()))
        if rules:
            probe = t.append_column(LABEL_BATCH, pa.nulls(t.num_rows, pa.int64()))
            t = t.filter(pc.invert(purge_mask(probe, rules, schema)))
        parts.append(t.select([*schema.columns("examples"), BATCH, SOURCE, SLICE]).cast(parts[0].schema))
    return pa.concat_tables(parts)


# -- reads that cost what they return, not the history (through the key index) -----------------

LABEL_KINDS = ("labels", "feedback")


def _example_columns(schema: DataSchema, columns: list[str] | None) -> list[str]:
    names = [*schema.arrow_schema("examples").names, HOLDOUT]
    return names if columns is None else [c for c in names if c in {*columns, schema.key, schema.label,
                                                                        schema.event_time, HOLDOUT}]


def labels_for(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef], keys: pa.Array, *,
               upto: int | None = None) -> pa.Table:
    """``load_labels`` for these keys only: the latest label of each from the labels and feedback
    batches among ``refs`` (only those up to batch ``upto`` when given), found through the key index."""
    return _latest(all_labels_for(data, schema, refs, keys, upto=upto), schema)


def all_labels_for(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef], keys: pa.Array, *,
                   upto: int | None = None) -> pa.Table:
    """Every delivery of a label for these keys by the labels and feedback batches among ``refs``
    (up to batch ``upto`` when given): key, ``_late_label``, ``_label_batch``; through the key index."""
    from lifelong_cli.data.keyindex import BATCH as IX_BATCH
    from lifelong_cli.data.keyindex import KeyIndex

    found = KeyIndex(data, schema.key, "labels").find(refs, pc.unique(keys), [schema.label])
    if upto is not None:
        found = found.filter(pc.less_equal(found[IX_BATCH], upto))
    return pa.table({schema.key: found[schema.key], "_late_label": found[schema.label].cast(schema.label_arrow_type()),
                     LABEL_BATCH: found[IX_BATCH].cast(pa.int64())})


def examples_for(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef], keys: pa.Array,
                 columns: list[str] | None = None) -> pa.Table:
    """The stored example rows with these keys (as ``load_examples`` gives them: ``columns``, the
    batch and its source), found through the key index, in batch and segment order."""
    from lifelong_cli.data.keyindex import BATCH as IX_BATCH
    from lifelong_cli.data.keyindex import POS, KeyIndex

    want = _example_columns(schema, columns)
    found = KeyIndex(data, schema.key, "examples").find(refs, pc.unique(keys), want)
    source = {r.id: r.source for r in refs}
    found = found.sort_by([(IX_BATCH, "ascending"), (POS, "ascending")])
    t = found.select(want).cast(pa.schema([f for f in schema.arrow_schema("examples").append(
        pa.field(HOLDOUT, pa.bool_())) if f.name in want]))
    t = t.append_column(BATCH, found[IX_BATCH])
    t = t.append_column(SOURCE, pa.array([source[b] for b in found[IX_BATCH].to_pylist()], pa.string()))
    return t


def rows_for(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef],
             rules: Iterable[PurgeRule | Mapping[str, Any]], keys: pa.Array, *, seq_to: int | None = None,
             holdout: str = "include", columns: list[str] | None = None, as_of: int | None = None) -> pa.Table:
    """``read_rows`` restricted to the rows with these keys (trainable only, ``rules`` applied);
    ``as_of``: as they were when batch ``as_of`` was the newest (later labels not joined)."""
    ex = examples_for(data, schema, refs, keys, columns)
    if as_of is not None:
        ex = ex.filter(pc.less_equal(ex[BATCH], as_of))
    return _joined(ex, labels_for(data, schema, refs, ex[schema.key], upto=as_of), schema, rules_of(rules),
                   trainable_only=True, seq_from=None, seq_to=seq_to, holdout=holdout, data=data, refs=refs, upto=as_of)


@dataclass
class NewRows:
    """What became trainable after a watermark (see ``read_new``)."""

    rows: pa.Table  # rows whose _trainable_seq > after (hold-out included), rules applied
    relabelled: pa.Array  # keys of the labels and feedback batches after the watermark


def read_new(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef],
             rules: Iterable[PurgeRule | Mapping[str, Any]], *, after: int | None,
             columns: list[str] | None = None) -> NewRows:
    """The rows that became trainable after ``after`` (``read_rows(seq_from=after + 1,
    holdout="include")``) reading only the batches ingested since and the older rows their labels
    name: every example batch after the watermark, and the rows of older ones that a later labels
    batch labels (found through the key index)."""
    if after is None:
        rows = read_rows(data, schema, refs, rules, holdout="include", columns=columns)
        return NewRows(rows, pa.array([], pa.string()))
    ex_new = [r for r in refs if r.kind == "examples" and r.id > after]
    lab_new = [r for r in refs if r.kind in LABEL_KINDS and r.id > after]
    parts = [load_examples(data, ex_new, schema, columns)]
    relabelled = pa.chunked_array([data.read(r.segment_path, columns=[schema.key])[schema.key] for r in lab_new],
                                  pa.string()).combine_chunks() if lab_new else pa.array([], pa.string())
    if len(relabelled):
        old = examples_for(data, schema, refs, relabelled, columns)
        parts.append(old.filter(pc.less_equal(old[BATCH], after)).cast(parts[0].schema))
    ex = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        ex = ex.take(pc.sort_indices(ex[BATCH]))  # batch order (stable: each batch keeps its row order)
    rows = _joined(ex, labels_for(data, schema, refs, ex[schema.key]), schema, rules_of(rules), trainable_only=True,
                   seq_from=after + 1, seq_to=None, holdout="include", data=data, refs=refs)
    return NewRows(rows, relabelled)
