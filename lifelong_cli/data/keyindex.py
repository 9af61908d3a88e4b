"""The key index of a model's data: which stored rows hold a key, found in time proportional to the
keys looked up, not to the history (ingest's de-duplication, late labels, rows by key).

One index per group of batches — ``examples``, and ``labels`` (labels and feedback batches) — under
``<data root>/keyindex/<group>/``: runs of (64-bit key hash, batch id, row position in the segment)
— 16 bytes an entry — sorted by hash, each covering the batches that ``manifest.json`` lists for it, with the segment
path it was built from. The index is a cache, never the truth:

* a run's entries are a superset of the keys of the segments it covers (a hard purge only removes
  rows), and every hit is checked against the segment's own key;
* a batch that no run covers — a store from before the index, a crash between the batch's commit
  and its run, a segment rewritten by ``purge-data --hard`` — is indexed from its segment on first use;
* files are written to a temp name and renamed; a run is visible only once the manifest names it,
  and two writers racing on the manifest at worst leave a batch uncovered (indexed again later).

Runs are merged as they accumulate (the newest two whenever the newest is at least half the size of
the one before), so a model keeps about log2(history / batch) of them."""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lifelong_cli.data.schema import key_hash
from lifelong_cli.data.segments import DataStore
from lifelong_cli.store.batches import BatchRef

GROUPS = {"examples": ("examples",), "labels": ("labels", "feedback")}
FORMAT = 2
SHIFT = np.uint64(32)  # an entry's second word: batch id << 32 | row position
LOW = np.uint64(0xFFFFFFFF)
BATCH = "_batch"
POS = "_pos"
QUERY = "_query"
ORPHAN_AGE_SECONDS = 3600  # run files no manifest names (a lost race, a crash) are removed after this


def hashes(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The index's 64-bit hash of each key."""
    return key_hash(keys, bits=64)


@dataclass
class _Run:
    name: str
    rows: int
    batches: dict[int, str]  # batch id -> the segment path the run was built from
    table: np.ndarray  # shape (2, rows), uint64: hash (sorted); batch id << 32 | row position
    live: set[int]  # the batches whose entries hold: still referenced, by the same segment


class KeyIndex:
    """The index of one group of one model's batches (``refs`` always every accepted batch of the
    model, as ``store.batches.for_reading`` gives them: batches not among them are never returned)."""

    def __init__(self, data: DataStore, key: str, group: str) -> None:
        if group not in GROUPS:
            raise ValueError(f"unknown key index group {group!r}")
        self.data, self.key, self.group = data, key, group
        self.dir = data.path("keyindex", group)

    # -- reading -------------------------------------------------------------------------------
    def find(self, refs: Sequence[BatchRef], keys: pa.Array | pa.ChunkedArray,
             columns: Iterable[str] = (), *, key_hashes: np.ndarray | None = None) -> pa.Table:
        """The stored rows of this group whose key is one of ``keys``: ``columns`` (the key always),
        with ``_batch`` (the batch id), ``_pos`` (row position in its segment) and ``_query`` (the
        index in ``keys`` it matched). Only the row groups holding a hit are read."""
        keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        keys = keys.cast(pa.string())
        h = hashes(keys) if key_hashes is None else key_hashes
        q, b, pos = self.hits(refs, h)
        cols = [self.key, *[c for c in columns if c != self.key]]
        if len(q) == 0:
            return self._empty(refs, cols)
        by_id = {r.id: r for r in refs}
        parts = []
        order = np.lexsort((pos, b))
        q, b, pos = q[order], b[order], pos[order]
        for bid in np.unique(b):
            sel = b == bid
            t = self.data.read_at(by_id[int(bid)].segment_path, pos[sel], columns=cols)
            t = t.append_column(BATCH, pa.array(np.full(t.num_rows, bid, np.int64)))
            t = t.append_column(POS, pa.array(pos[sel].astype(np.int64)))
            t = t.append_column(QUERY, pa.array(q[sel].astype(np.int64)))
            parts.append(t)
        t = pa.concat_tables(parts, promote_options="permissive")
        same = pc.equal(t[self.key], keys.take(t[QUERY]))  # the hash hit is a real match
        return t.filter(pc.fill_null(same, False))

    def hits(self, refs: Sequence[BatchRef], h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query index, batch id, row position) of every entry whose hash is in ``h`` (unverified)."""
        h = np.asarray(h, dtype=np.uint64)
        qs, bs, ps = [], [], []
        if len(h):
            for run in self._runs(refs):
                hs = run.table[0]
                left = np.searchsorted(hs, h, side="left")
                right = np.searchsorted(hs, h, side="right")
                n = right - left
                found = np.flatnonzero(n)
                if len(found) == 0:
                    continue
                counts = n[found]
                q = np.repeat(found, counts)
                starts = np.repeat(left[found], counts)
                within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
                idx = starts + within
                where = run.table[1][idx]
                b = (where >> SHIFT).astype(np.int64)
                live = np.isin(b, np.fromiter(run.live, np.int64, len(run.live)))
                qs.append(q[live])
                bs.append(b[live])
                ps.append((where[live] & LOW).astype(np.int64))
        if not qs:
            empty = np.array([], np.int64)
            return empty, empty, empty
        q, b, pos = np.concatenate(qs), np.concatenate(bs), np.concatenate(ps)
        if len(qs) > 1:  # two runs naming one row (writers that raced): once
            _, first = np.unique(np.stack([q, b, pos]), axis=1, return_index=True)
            q, b, pos = q[first], b[first], pos[first]
        return q, b, pos

    # -- writing -------------------------------------------------------------------------------
    def add(self, batch_id: int, segment_path: str, key_hashes: np.ndarray) -> None:
        """Index a batch just committed (its segment's rows in order, their hashes given): best
        effort — if this fails the batch is indexed from its segment on first use."""
        with contextlib.suppress(OSError):
            self._add_run({int(batch_id): segment_path}, self._table(key_hashes, batch_id), [])

    def _table(self, key_hashes: np.ndarray, batch_id: int) -> np.ndarray:
        h = np.asarray(key_hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")  # the row positions, in hash order
        t = np.empty((2, len(h)), np.uint64)
        np.take(h, order, out=t[0])
        np.bitwise_or(order.astype(np.uint64), np.uint64(batch_id) << SHIFT, out=t[1])
        return t

    def _refs(self, refs: Sequence[BatchRef]) -> list[BatchRef]:
        kinds = GROUPS[self.group]
        return [r for r in refs if r.kind in kinds and r.segment_path]

    def _runs(self, refs: Sequence[BatchRef]) -> list[_Run]:
        """The runs covering every batch of ``refs`` in this group (indexing the uncovered ones)."""
        mine = self._refs(refs)
        current = {r.id: r.segment_path for r in mine}
        runs = []
        covered: set[int] = set()
        for entry in self._manifest():
            table = self._open(entry["file"])
            if table is None:
                continue
            batches = {int(b): p for b, p in entry["batches"].items()}
            live = {b for b, p in batches.items() if current.get(b) == p}
            covered |= live
            runs.append(_Run(entry["file"], int(entry["rows"]), batches, table, live))
        missing = [r for r in mine if r.id not in covered]
        if missing:
            parts = []
            for r in missing:
                keys = self.data.read(r.segment_path, columns=[self.key])[self.key]
                parts.append(self._table(hashes(keys), r.id))
            table = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            table = table[:, np.argsort(table[0], kind="stable")]
            batches = {r.id: r.segment_path for r in missing}
            with contextlib.suppress(OSError):  # a read-only data root: use the run, do not keep it
                self._add_run(batches, table, runs)
            runs.append(_Run("", table.shape[1], batches, table, set(batches)))
        return runs

    def _add_run(self, batches: dict[int, str], table: np.ndarray, loaded: list[_Run]) -> None:
        """Write a run for ``batches`` and a manifest naming it, first merging into it the newest
        runs while it is at least half their size (a batch in both keeps only the newer entries:
        its segment was rewritten)."""
        entries = self._manifest()
        tables = {r.name: r.table for r in loaded if r.name}
        merged_away: list[str] = []
        while entries and table.shape[1] * 2 >= int(entries[-1]["rows"]):
            prev = entries.pop()
            older = tables.get(prev["file"])
            if older is None:
                older = self._open(prev["file"])
            merged_away.append(prev["file"])
            if older is None:  # gone (another writer merged it): its batches are indexed again on use
                continue
            newer_ids = np.fromiter(batches, np.uint64, len(batches))
            older = older[:, ~np.isin(older[1] >> SHIFT, newer_ids)]
            both = np.concatenate([older, table], axis=1)
            table = both[:, np.argsort(both[0], kind="stable")]
            batches = {**{int(b): p for b, p in prev["batches"].items()}, **batches}
        name = self._write_run(table)
        entries.append({"file": name, "rows": int(table.shape[1]), "batches": {str(b): p for b, p in batches.items()}})
        self.data.write_bytes(self.data.path("keyindex", self.group, "manifest.json"),
                              json.dumps({"format": FORMAT, "runs": entries}).encode())
        for f in merged_away:
            self.data.remove(self.data.path("keyindex", self.group, f))
        self._sweep({e["file"] for e in entries})

    def _sweep(self, named: set[str]) -> None:
        """Remove run files no manifest names once they are old (a lost race, a crash)."""
        if self.data.remote:
            return
        now = time.time()
        for n in self.data.list_names(self.dir):
            if n.startswith("run-") and n not in named:
                p = Path(self.dir) / n
                try:
                    if now - p.stat().st_mtime > ORPHAN_AGE_SECONDS:
                        p.unlink()
                except OSError:
                    pass

    def _write_run(self, table: np.ndarray) -> str:
        name = f"run-{uuid.uuid4().hex}.npy"
        table = np.ascontiguousarray(table, dtype=np.uint64)
        self.data.write_with(self.data.path("keyindex", self.group, name), lambda f: np.save(f, table))
        return name

    def _manifest(self) -> list[dict]:
        raw = self.data.read_bytes(self.data.path("keyindex", self.group, "manifest.json"))
        if not raw:
            return []
        try:
            doc = json.loads(raw)
        except ValueError:  # a torn file cannot be (writes are atomic), but a cache never fails a read
            return []
        return doc.get("runs", []) if isinstance(doc, dict) and doc.get("format") == FORMAT else []

    def _open(self, name: str) -> np.ndarray | None:
        path = self.data.path("keyindex", self.group, name)
        try:
            if self.data.remote:
                raw = self.data.read_bytes(path)
                table = None if raw is None else np.load(io.BytesIO(raw))
            else:
                table = np.load(path, mmap_mode="r")  # a lookup touches a few pages, not the whole run
        except (OSError, ValueError):
            return None
        if table is None or table.ndim != 2 or table.shape[0] != 2 or table.dtype != np.uint64:
            return None
        return table

    def _empty(self, refs: Sequence[BatchRef], cols: list[str]) -> pa.Table:
        fields = [pa.field(self.key, pa.string())]
        mine = self._refs(refs)
        if mine and len(cols) > 1:  # the other columns' types, from a segment's schema (no rows read)
            import pyarrow.parquet as pq

            if self.data.remote:
                import fsspec

                with fsspec.open(mine[-1].segment_path, "rb") as f:
                    schema = pq.read_schema(f)
            else:
                schema = pq.read_schema(mine[-1].segment_path)
            fields = [schema.field(c) if c in schema.names else pa.field(c, pa.string()) for c in cols]
        elif len(cols) > 1:
            fields += [pa.field(c, pa.string()) for c in cols[1:]]
        return pa.schema([*fields, pa.field(BATCH, pa.int64()), pa.field(POS, pa.int64()),
                          pa.field(QUERY, pa.int64())]).empty_table()
