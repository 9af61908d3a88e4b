"""Immutable Parquet segments under the data root (a local path or an fsspec URL).

A segment is written to a temp name beside its final one, fsynced, then renamed; on an object
store (where a PUT is atomic) it is written locally and uploaded in one PUT. A segment becomes
visible to readers only when the batch row naming it is committed, so a crash mid-write leaves
at most an unreferenced file, which `doctor` reports."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lifelong_cli.fsutil import TMP_SUFFIX, fsync_dir


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
        # ParquetFile, not read_table: read_table imports pyarrow.dataset (and pandas), 0.15 s a process
        if self.remote:
            import fsspec

            with fsspec.open(path, "rb") as f:
                return pq.ParquetFile(f).read(columns=columns)
        return pq.ParquetFile(path).read(columns=columns)

    def path(self, *parts: str) -> str:
        """A path under the data root (an fsspec URL when the root is one)."""
        return "/".join([self.root, *parts]) if self.remote else str(self.local_root.joinpath(*parts))

    @contextmanager
    def parquet(self, path: str) -> Iterator[pq.ParquetFile]:
        """A segment opened for reading row groups (``read_row_group``, ``metadata``)."""
        if self.remote:
            import fsspec

            with fsspec.open(path, "rb") as f:
                yield pq.ParquetFile(f)
        else:
            yield pq.ParquetFile(path)

    def read_at(self, path: str, positions, columns: list[str] | None = None) -> pa.Table:
        """Rows ``positions`` (0-based, in the segment's order) of a segment, reading only the row
        groups that hold them; the rows come out in the order of ``positions``."""
        import numpy as np

        pos = np.asarray(positions, dtype=np.int64)
        with self.parquet(path) as pf:
            sizes = np.array([pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)], np.int64)
            starts = np.concatenate([[0], np.cumsum(sizes)])
            if len(pos) and (pos.min() < 0 or pos.max() >= starts[-1]):
                raise IndexError(f"{path}: row position out of range (the segment has {starts[-1]} rows)")
            groups = np.unique(np.searchsorted(starts, pos, side="right") - 1)
            if len(groups) == 0:
                schema = pf.schema_arrow
                return schema.empty_table() if columns is None else pa.schema([schema.field(c) for c in columns]).empty_table()
            table = pf.read_row_groups(groups.tolist(), columns=columns)
        # positions within the concatenation of the row groups read
        base = np.concatenate([[0], np.cumsum(sizes[groups])])[:-1]
        g = np.searchsorted(starts, pos, side="right") - 1
        return table.take(pa.array(pos - starts[g] + base[np.searchsorted(groups, g)]))

    def read_bytes(self, path: str) -> bytes | None:
        """A small file's content, or None when it does not exist."""
        try:
            if self.remote:
                import fsspec

                with fsspec.open(path, "rb") as f:
                    return f.read()
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace a small file atomically (temp name, fsync, rename; one PUT on an object store)."""
        self.write_with(path, lambda f: f.write(data))

    def write_with(self, path: str, write) -> None:
        """Replace a file atomically with what ``write(file)`` writes to it."""
        if self.remote:
            import io

            import fsspec

            buf = io.BytesIO()
            write(buf)
            fs, p = fsspec.core.url_to_fs(path)
            fs.pipe_file(p, buf.getvalue())
            return
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=TMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list_names(self, directory: str) -> list[str]:
        """Names of the files in a directory under the data root ([] when it does not exist)."""
        if self.remote:
            import fsspec

            fs, p = fsspec.core.url_to_fs(directory)
            try:
                return sorted(Path(x).name for x in fs.ls(p, detail=False))
            except FileNotFoundError:
                return []
        d = Path(directory)
        return sorted(x.name for x in d.iterdir()) if d.is_dir() else []

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
    """Streams record batches into one Parquet file; nothing is visible until ``commit``. Batches are
    encoded and compressed in a thread of the writer's own, one behind the caller (Parquet's encoder
    releases the GIL: the next chunk is checked meanwhile); an error surfaces at the next call."""

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
        self._w: pq.ParquetWriter | None = pq.ParquetWriter(self.tmp, schema, compression="zstd",
                                                            use_dictionary=_dictionary_columns(schema))
        self._pool = None
        self._pending = None
        self.committed = False

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            table = table.select(self.schema.names).cast(self.schema)
            self._wait()
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llctl-segment")
            self._pending = self._pool.submit(self._w.write_table, table)
            self.rows += table.num_rows

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def finish(self) -> None:
        """Complete the file (still under its temp name, invisible to readers)."""
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._w is not None:
                self._w.close()
                self._w = None

    def read_back(self, columns: list[str] | None = None) -> pa.Table:
        self.finish()
        return pq.ParquetFile(self.tmp).read(columns=columns)

    def filter_rows(self, keep: pa.Array) -> None:
        """Keep only the rows where ``keep`` is true (all rows written so far, in order)."""
        table = self.read_back().filter(keep)
        with pq.ParquetWriter(self.tmp, self.schema, compression="zstd",
                              use_dictionary=_dictionary_columns(self.schema)) as w:
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


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: text and flags (labels, categories repeat). Numbers and
    times rarely repeat, and trying a dictionary on them in every row group costs more than the
    rest of the write (a 1M-row ingest: 1.6 s instead of 0.5 s)."""
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_boolean(f.type) or pa.types.is_dictionary(f.type)]
