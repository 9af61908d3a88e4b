"""Input readers: a file, a directory of files, or stdin, streamed in chunks.

``open_input`` fixes what will be read and its content hash (stdin is spooled to a temp file
while hashing). ``iter_chunks`` yields ``(table, malformed)`` pairs: a table of raw columns and
the rows that could not be parsed at all, each with its row number, text and reason."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from lifelong_cli.errors import InvalidInputError, NotFoundError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
HASH_BLOCK = 1 << 20


@dataclass
class Malformed:
    row: int
    text: str
    reason: str


@dataclass
class InputSource:
    label: str  # what the user named: a path or "-"
    files: list[Path]
    format: str
    sha256: str
    size: int
    spooled: Path | None = None
    columns: list[str] = field(default_factory=list)

    def cleanup(self) -> None:
        if self.spooled:
            self.spooled.unlink(missing_ok=True)


def _format_of(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    fmt = FORMATS.get(path.suffix.lower())
    if not fmt:
        raise InvalidInputError(f"{path}: cannot tell the format from the extension '{path.suffix}'",
                                hint="pass --format csv|jsonl|parquet")
    return fmt


def open_input(path: str, *, fmt: str | None, spool_dir: Path) -> InputSource:
    h = hashlib.sha256()
    if path == "-":
        spool_dir.mkdir(parents=True, exist_ok=True)
        size = 0
        with tempfile.NamedTemporaryFile(dir=spool_dir, prefix=".stdin.", suffix=".llctl-tmp", delete=False) as tmp:
            while True:
                block = sys.stdin.buffer.read(HASH_BLOCK)
                if not block:
                    break
                h.update(block)
                tmp.write(block)
                size += len(block)
        return InputSource("-", [Path(tmp.name)], fmt or "csv", h.hexdigest(), size, spooled=Path(tmp.name))
    p = Path(path).expanduser()
    if not p.exists():
        raise NotFoundError(f"{p} does not exist", hint="check the path, or pass - to read stdin")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and (fmt or FORMATS.get(f.suffix.lower())))
        if not files:
            raise InvalidInputError(f"{p}: no .csv, .jsonl or .parquet files in the directory",
                                    hint="name a file, or pass --format to read files without an extension")
        formats = {_format_of(f, fmt) for f in files}
        if len(formats) > 1:
            raise InvalidInputError(f"{p}: mixes formats {sorted(formats)}", hint="ingest one format at a time")
        the_fmt = formats.pop()
    else:
        files = [p]
        the_fmt = _format_of(p, fmt)
    size = 0
    for f in files:
        if len(files) > 1:
            h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(HASH_BLOCK):
                h.update(block)
                size += len(block)
    return InputSource(str(p), files, the_fmt, h.hexdigest(), size)


def iter_chunks(src: InputSource, *, wanted: list[str], chunk_rows: int,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[pa.Table, list[Malformed]]]:
    if src.size == 0:
        raise InvalidInputError(f"{src.label}: empty input", hint="nothing to ingest; check the upstream export")
    reader = {"csv": _csv_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks}[src.format]
    for f in src.files:
        yield from reader(f, src, wanted, chunk_rows, on_bytes)


def _csv_header(path: Path, label: str) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{label}: the CSV header is not UTF-8", hint="re-export the file as UTF-8") from None
    if "\0" in text:
        raise InvalidInputError(f"{label}: not a CSV file (binary data in the header)", hint="check the file and --format")
    return next(csv.reader([text]), [])


def _csv_chunks(path, src, wanted, chunk_rows, on_bytes):
    import pyarrow.csv as pcsv

    header = [c.strip() for c in _csv_header(path, src.label)]
    src.columns = header
    include = [c for c in wanted if c in header]
    malformed: list[Malformed] = []

    def on_invalid(row) -> str:
        malformed.append(Malformed(row.number or -1, (row.text or "")[:2000],
                                   f"malformed CSV row: expected {row.expected_columns} fields, got {row.actual_columns}"))
        return "skip"

    read_opts = pcsv.ReadOptions(block_size=1 << 22, use_threads=True)
    parse_opts = pcsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=False)
    conv = pcsv.ConvertOptions(column_types={c: pa.string() for c in header}, include_columns=include,
                               strings_can_be_null=True, null_values=["", "null", "NULL", "None"],
                               quoted_strings_can_be_null=False)
    try:
        rdr = pcsv.open_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=conv)
        pending: list[pa.RecordBatch] = []
        rows = 0
        for batch in rdr:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= chunk_rows:
                yield pa.Table.from_batches(pending), _take(malformed)
                pending, rows = [], 0
            if on_bytes:
                on_bytes(batch.nbytes)
        if pending or malformed:
            tbl = pa.Table.from_batches(pending) if pending else pa.table({c: pa.array([], pa.string()) for c in include})
            yield tbl, _take(malformed)
    except pa.ArrowInvalid as exc:
        msg = str(exc).splitlines()[0]
        if "UTF8" in msg or "utf8" in msg.lower():
            raise InvalidInputError(f"{src.label}: not valid UTF-8 text ({msg})", hint="re-export the file as UTF-8; nothing was ingested") from None
        raise InvalidInputError(f"{src.label}: unreadable CSV ({msg})", hint="fix the file; nothing was ingested") from None


def _take(items: list) -> list:
    out = list(items)
    items.clear()
    return out


def _jsonl_chunks(path, src, wanted, chunk_rows, on_bytes):
    rows: list[dict] = []
    bad: list[Malformed] = []
    seen: set[str] = set()
    with path.open("rb") as fh:
        for n, line in enumerate(io.BufferedReader(fh), start=1):
            if on_bytes:
                on_bytes(len(line))
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                bad.append(Malformed(n, line[:2000].decode("utf-8", "replace"), f"invalid JSON: {exc}"[:200]))
                continue
            if not isinstance(obj, dict):
                bad.append(Malformed(n, line[:2000].decode("utf-8", "replace"), "not a JSON object"))
                continue
            seen.update(obj)
            rows.append({k: (None if obj.get(k) is None else (v if isinstance(v := obj.get(k), str) else json.dumps(v)))
                         for k in wanted})
            if len(rows) >= chunk_rows:
                src.columns = sorted(seen)
                yield _rows_table(rows, wanted, seen), _take(bad)
                rows = []
    src.columns = sorted(seen)
    if rows or bad:
        yield _rows_table(rows, wanted, seen), _take(bad)


def _rows_table(rows: list[dict], wanted: list[str], seen: set[str]) -> pa.Table:
    cols = [c for c in wanted if c in seen]
    return pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in cols})


def _parquet_chunks(path, src, wanted, chunk_rows, on_bytes):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(f"{src.label}: not a readable Parquet file ({str(exc).splitlines()[0]})",
                                hint="check the file and --format; nothing was ingested") from None
    names = pf.schema_arrow.names
    src.columns = list(names)
    include = [c for c in wanted if c in names]
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=include):
        if on_bytes:
            on_bytes(batch.nbytes)
        yield pa.Table.from_batches([batch]), []


