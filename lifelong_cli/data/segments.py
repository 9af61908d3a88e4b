"""Immutable Parquet segments under the data root (a local path or an fsspec URL).

A segment is written to a temp name beside its final one, fsynced, then renamed; on an object
store (where a PUT is atomic) it is written locally and uploaded in one PUT. A segment becomes
visible to readers only when the batch row naming it is committed, so a crash mid-write leaves
at most an unreferenced file, which `doctor` reports."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lifelong_cli.ops.fsutil import TMP_SUFFIX, fsync_dir


class DataStore:
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.remote = "://" in root and not root.startswith("file://")
        self.local_root = Path(root[len("file://"):] if root.startswith("file://") else root)

    def new_path(self, area: str) -> str:
        name = f"{uuid.uuid4().hex}.parquet"
        return f"{self.root}/{area}/{name}" if self.remote else str(self.local_root / area / name)

    def writer(self, path: str, schema: pa.Schema) -> SegmentWriter:
        return SegmentWriter(self, path, schema)

    def read(self, path: str, columns: list[str] | None = None) -> pa.Table:
        if self.remote:
            import fsspec

            with fsspec.open(path, "rb") as f:
                return pq.read_table(f, columns=columns)
        return pq.read_table(path, columns=columns)

    def exists(self, path: str) -> bool:
        if self.remote:
            import fsspec

            fs, p = fsspec.core.url_to_fs(path)
            return fs.exists(p)
        return Path(path).exists()

    def replace(self, path: str, table: pa.Table) -> None:
        """Atomically rewrite a segment in place (purge-data --hard)."""
        w = self.writer(path, table.schema)
        w.write(table)
        w.commit()

    def remove(self, path: str) -> None:
        if self.remote:
            import fsspec

            fs, p = fsspec.core.url_to_fs(path)
            if fs.exists(p):
                fs.rm(p)
        else:
            Path(path).unlink(missing_ok=True)


class SegmentWriter:
    """Streams record batches into one Parquet file; nothing is visible until ``commit``."""

    def __init__(self, store: DataStore, path: str, schema: pa.Schema) -> None:
        self.store, self.path, self.schema = store, path, schema
        self.rows = 0
        if store.remote:
            fd, tmp = tempfile.mkstemp(suffix=TMP_SUFFIX)
        else:
            final = Path(path)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=TMP_SUFFIX)
        os.close(fd)
        self.tmp = Path(tmp)
        self._w: pq.ParquetWriter | None = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.committed = False

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._w.write_table(table.select(self.schema.names).cast(self.schema))
            self.rows += table.num_rows

    def finish(self) -> None:
        """Complete the file (still under its temp name, invisible to readers)."""
        if self._w is not None:
            self._w.close()
            self._w = None

    def read_back(self, columns: list[str] | None = None) -> pa.Table:
        self.finish()
        return pq.read_table(self.tmp, columns=columns)

    def filter_rows(self, keep: pa.Array) -> None:
        """Keep only the rows where ``keep`` is true (all rows written so far, in order)."""
        table = self.read_back().filter(keep)
        with pq.ParquetWriter(self.tmp, self.schema, compression="zstd") as w:
            w.write_table(table)
        self.rows = table.num_rows

    def commit(self) -> str:
        self.finish()
        with self.tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(self.tmp, 0o644)  # mkstemp makes 0600; serving replicas and other users read segments
        if self.store.remote:
            import fsspec

            fs, p = fsspec.core.url_to_fs(self.path)
            fs.put_file(str(self.tmp), p)
            self.tmp.unlink(missing_ok=True)
        else:
            os.replace(self.tmp, self.path)
            fsync_dir(Path(self.path).parent)
        self.committed = True
        return self.path

    def abort(self) -> None:
        """Drop the temp file (safe to call twice, a no-op after commit)."""
        if self.committed:
            return
        try:
            self.finish()
        finally:
            self.tmp.unlink(missing_ok=True)
