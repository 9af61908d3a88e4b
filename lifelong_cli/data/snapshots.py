"""Snapshots of a model's rows kept beside its segments, so that a training or validation step reads
what it needs in one file instead of scanning the history:

* the hold-out as of a watermark (the golden set's automatic part): ``holdout``;
* the rows of a version's replay reservoir: ``reservoir`` / ``save_reservoir``.

Under ``<data root>/snapshots/``. Both are caches that answer exactly what a full read would:

* a snapshot holds rows before purge rules (the caller applies the rules in force now: a rule
  added or undone later is honoured);
* it names the batches it was built from with their segment paths; if one of them changed (a
  ``purge-data --hard`` rewrites segments) or a batch it should hold is not among them, it is not
  used (the rows are read from the segments, and the snapshot built again);
* rows relabelled after the snapshot's watermark are left out when it is read (their trainable
  sequence moved past it);
* files are written to a temp name and renamed; only the newest few of each kind are kept.

A hard purge should also remove the whole directory (``drop``): until then a superseded snapshot may
still hold the rows it removed on disk (never in a read: its segment paths no longer match)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lifelong_cli.data import reader as rd
from lifelong_cli.data.schema import DataSchema
from lifelong_cli.data.segments import DataStore
from lifelong_cli.store.batches import BatchRef

AREA = "snapshots"
KEEP = 8  # snapshots of each kind kept (the newest)
ROW_KINDS = ("examples", *rd.LABEL_KINDS)


class Snapshots:
    def __init__(self, data: DataStore, schema: DataSchema) -> None:
        self.data, self.schema = data, schema

    # -- the hold-out ----------------------------------------------------------------------------
    def holdout(self, refs: Sequence[BatchRef], upto: int, *, new: rd.NewRows | None = None,
                base: int | None = None) -> pa.Table:
        """Hold-out rows whose trainable sequence is ≤ ``upto``, before purge rules, in batch order:
        from the snapshot for ``upto``; else from ``new`` (``read_new(after=base, rules=[])``, the
        rows that became trainable after ``base``) and the snapshot for ``base`` (``base`` None:
        ``new`` holds every row); else from every segment. A snapshot built here is kept."""
        got = self._load(self._holdout_name(refs, upto), refs)
        if got is not None:
            return self._without(got, self._relabelled_after(refs, upto))
        rows = None
        if new is not None and (base is None or base <= upto):
            old = None if base is None else self._load(self._holdout_name(refs, base), refs)
            if base is None or old is not None:
                fresh = new.rows.filter(pc.and_(pc.fill_null(new.rows[rd.HOLDOUT], False),
                                                pc.fill_null(pc.less_equal(new.rows[rd.TRAINABLE_SEQ], upto), False)))
                if old is not None:
                    old = self._without(old, new.relabelled)
                    fresh = pa.concat_tables([old, fresh.select(old.column_names).cast(old.schema)])
                rows = fresh.take(pc.sort_indices(fresh[rd.BATCH]))  # batch order, as a full read gives
        if rows is None:
            rows = rd.read_rows(self.data, self.schema, refs, [], holdout="only", seq_to=upto)
        self._save(self._holdout_name(refs, upto), rows, refs, upto)
        return rows

    def _holdout_name(self, refs: Sequence[BatchRef], upto: int) -> str:
        return f"holdout-{upto}-{_digest(r for r in refs if r.kind in ROW_KINDS and r.id <= upto)}.parquet"

    def _relabelled_after(self, refs: Sequence[BatchRef], upto: int) -> pa.Array:
        later = [r for r in refs if r.kind in rd.LABEL_KINDS and r.id > upto]
        if not later:
            return pa.array([], pa.string())
        return pa.chunked_array([self.data.read(r.segment_path, columns=[self.schema.key])[self.schema.key]
                                 for r in later], pa.string()).combine_chunks()

    def _without(self, rows: pa.Table, keys: pa.Array) -> pa.Table:
        if len(keys) == 0 or rows.num_rows == 0:
            return rows
        return rows.filter(pc.invert(pc.is_in(rows[self.schema.key], value_set=keys)))

    # -- the replay reservoir --------------------------------------------------------------------
    def reservoir(self, refs: Sequence[BatchRef], sha256: str, keys: pa.Array) -> pa.Table | None:
        """The rows of the reservoir whose replay artifact has this sha256, before purge rules and as
        they were when it was kept; None when there is no usable snapshot of exactly these keys."""
        rows = self._load(f"reservoir-{sha256}.parquet", refs)
        if rows is None or rows.num_rows != len(keys):
            return None
        if not pc.all(pc.is_in(rows[self.schema.key], value_set=keys)).as_py():
            return None
        return rows

    def save_reservoir(self, refs: Sequence[BatchRef], sha256: str, rows: pa.Table) -> None:
        self._save(f"reservoir-{sha256}.parquet", rows, refs, None)

    # -- files -----------------------------------------------------------------------------------
    def _load(self, name: str, refs: Sequence[BatchRef]) -> pa.Table | None:
        path = self.data.path(AREA, name)
        raw = self.data.read_bytes(path)
        if raw is None:
            return None
        try:
            pf = pq.ParquetFile(io.BytesIO(raw))
            meta = json.loads((pf.schema_arrow.metadata or {}).get(b"llctl", b"{}"))
            table = pf.read()
        except (pa.ArrowException, ValueError, OSError):
            return None
        current = {r.id: r.segment_path for r in refs}
        built = {int(b): p for b, p in (meta.get("batches") or {}).items()}
        if any(current.get(b) != p for b, p in built.items()):  # a segment was rewritten (or is gone):
            self.data.remove(path)  # not the rows a read gives now, and maybe rows a hard purge removed
            return None
        return table.replace_schema_metadata(None)

    def _save(self, name: str, rows: pa.Table, refs: Sequence[BatchRef], upto: int | None) -> None:
        """Write a snapshot naming the batches of its rows (or, for a hold-out, every batch up to
        its watermark) with their segment paths; best effort: a cache that cannot be written is
        read from the segments next time."""
        ids = set(pc.unique(rows[rd.BATCH]).to_pylist()) if rows.num_rows else set()
        if rd.LABEL_BATCH in rows.column_names and rows.num_rows:
            ids |= set(x for x in pc.unique(rows[rd.LABEL_BATCH]).to_pylist() if x is not None)
        if upto is not None:
            ids |= {r.id for r in refs if r.kind in ROW_KINDS and r.id <= upto}
        paths = {r.id: r.segment_path for r in refs}
        meta = {"batches": {str(b): paths[b] for b in sorted(ids) if b in paths}}
        buf = io.BytesIO()
        pq.write_table(rows.replace_schema_metadata({"llctl": json.dumps(meta)}), buf, compression="zstd")
        try:
            self.data.write_bytes(self.data.path(AREA, name), buf.getvalue())
            self._prune(name.split("-", 1)[0])
        except OSError:
            pass

    def _prune(self, kind: str) -> None:
        if self.data.remote:
            return
        from pathlib import Path

        d = Path(self.data.path(AREA))
        files = sorted((p for p in d.glob(f"{kind}-*.parquet")), key=lambda p: p.stat().st_mtime, reverse=True)
        for p in files[KEEP:]:
            p.unlink(missing_ok=True)


def drop(data: DataStore) -> None:
    """Remove every snapshot (after ``purge-data --hard``: none may keep a copy of what it removed)."""
    for name in data.list_names(data.path(AREA)):
        data.remove(data.path(AREA, name))


def _digest(refs: Iterable[BatchRef]) -> str:
    h = hashlib.sha256()
    for r in sorted(refs, key=lambda r: r.id):
        h.update(f"{r.id}\t{r.segment_path}\n".encode())
    return h.hexdigest()[:16]


def visible(data: DataStore, schema: DataSchema, refs: Sequence[BatchRef], rows: pa.Table,
            rules: Iterable[rd.PurgeRule | Mapping[str, Any]]) -> pa.Table:
    """Snapshot rows (read before purge rules) as the rules in force make them (``rd.apply_rules``)."""
    return rd.apply_rules(data, schema, refs, rows, rules)
