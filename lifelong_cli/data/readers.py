"""Input readers: a file, a directory of files, or stdin, streamed in chunks.

``open_input`` fixes what will be read and its content hash (stdin is spooled to a temp file
while hashing). ``iter_chunks`` yields ``(table, malformed)`` pairs: a table of raw columns (with
each row's input row number in ``_row`` for CSV and JSON Lines) and the rows that could not be
parsed at all, each with its row number, text and reason."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from lifelong_cli.data.schema import LINE
from lifelong_cli.errors import InvalidInputError, NotFoundError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
HASH_BLOCK = 1 << 20
CSV_BLOCK = 1 << 21  # pyarrow's read block: a row longer than this cannot be parsed; the reader
# queues up to 32 blocks ahead, so this also bounds its read-ahead memory (64 MiB)


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


class _Utf8Check:
    """Fed every block of a CSV input while it is hashed: text that is not UTF-8 is refused up front
    (pyarrow would otherwise fail mid-file, or print a traceback for a malformed non-UTF-8 row).
    An ASCII block with nothing pending is UTF-8 by definition (``bytes.isascii``: no decoding)."""

    def __init__(self, label: str, path: Path | None = None) -> None:
        self.label, self.path, self.offset = label, path, 0
        self.lines = 0  # without a file to read again (stdin): the newlines before the current block
        self.dec = codecs.getincrementaldecoder("utf-8")()

    def feed(self, block: bytes, final: bool = False) -> None:
        if block and block.isascii() and not self.dec.getstate()[0]:
            self._advance(block)
            return
        try:
            self.dec.decode(block, final)
        except UnicodeDecodeError as exc:
            pos = max(0, exc.start)
            at = self.offset + pos
            raise InvalidInputError(f"{self.label}: not valid UTF-8 text (byte {at}, line {self._line(block, pos)})",
                                    hint="re-export the file as UTF-8; nothing was ingested") from None
        self._advance(block)

    def _advance(self, block: bytes) -> None:
        if self.path is None:
            self.lines += block.count(b"\n")
        self.offset += len(block)

    def _line(self, block: bytes, pos: int) -> int:
        """The line of byte ``pos`` of ``block`` (counted only when there is an error to report)."""
        if self.path is None:
            before = self.lines
        else:
            before = 0
            with self.path.open("rb") as f:
                left = self.offset
                while left > 0 and (chunk := f.read(min(HASH_BLOCK, left))):
                    before += chunk.count(b"\n")
                    left -= len(chunk)
        return 1 + before + block.count(b"\n", 0, pos)


def _digest(src, h, check: _Utf8Check | None, copy_to=None) -> int:
    """Hash (and optionally copy) a byte stream block by block, checking UTF-8 on the way; its size."""
    size = 0
    while block := src.read(HASH_BLOCK):
        h.update(block)
        if copy_to is not None:
            copy_to.write(block)
        size += len(block)
        if check:
            check.feed(block)
    if check:
        check.feed(b"", final=True)
    return size


def open_input(path: str, *, fmt: str | None, spool_dir: Path) -> InputSource:
    h = hashlib.sha256()
    if path == "-":
        spool_dir.mkdir(parents=True, exist_ok=True)
        the_fmt = fmt or "csv"
        check = _Utf8Check("stdin") if the_fmt == "csv" else None
        with tempfile.NamedTemporaryFile(dir=spool_dir, prefix=".stdin.", suffix=".llctl-tmp", delete=False) as tmp:
            try:
                size = _digest(sys.stdin.buffer, h, check, copy_to=tmp)
            except BaseException:
                tmp.close()
                Path(tmp.name).unlink(missing_ok=True)
                raise
        return InputSource("-", [Path(tmp.name)], the_fmt, h.hexdigest(), size, spooled=Path(tmp.name))
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
            size += _digest(fh, h, _Utf8Check(str(f), f) if the_fmt == "csv" else None)
    return InputSource(str(p), files, the_fmt, h.hexdigest(), size)


def iter_chunks(src: InputSource, *, wanted: list[str], chunk_rows: int,
                on_bytes: Callable[[int], None] | None = None,
                max_field_bytes: int = 1_000_000) -> Iterator[tuple[pa.Table, list[Malformed]]]:
    """``max_field_bytes`` bounds what one record may cost: a JSON line longer than a few times it
    (``max_line_bytes``) is quarantined unparsed, read in pieces (a CSV row is bounded by the read block)."""
    if src.size == 0:
        raise InvalidInputError(f"{src.label}: empty input", hint="nothing to ingest; check the upstream export")
    reader = {"csv": _csv_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks}[src.format]
    for f in src.files:
        yield from reader(f, src, wanted, chunk_rows, on_bytes, max_field_bytes)


def max_line_bytes(wanted: list[str], max_field_bytes: int) -> int:
    """The longest JSON line parsed: every wanted field at its limit, plus room for names and quoting."""
    return (len(wanted) + 2) * max_field_bytes


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


def _no_duplicates(columns: list[str], label: str) -> None:
    """A column named twice: which of the two is the value? Refused rather than guessed."""
    seen: set[str] = set()
    dup = sorted({c for c in columns if c in seen or seen.add(c)})
    if dup:
        raise InvalidInputError(f"{label}: column(s) {', '.join(dup)[:200]} appear more than once in the header",
                                hint="rename or drop the duplicate columns in the export; nothing was ingested")


def _csv_chunks(path, src, wanted, chunk_rows, on_bytes, max_field_bytes):
    import numpy as np
    import pyarrow.csv as pcsv

    header = [c.strip() for c in _csv_header(path, src.label)]
    _no_duplicates(header, src.label)
    src.columns = header
    include = [c for c in wanted if c in header]
    malformed: list[Malformed] = []
    skipped: set[int] = set()  # data rows (1 = the first after the header) that could not be parsed
    next_row = 1
    lock = threading.Lock()  # the parser runs ahead in its own thread (see _ahead)

    def on_invalid(row) -> str:
        # row.number counts non-blank lines with the header as 1 (known only when parsing serially)
        n = row.number - 1 if row.number else -1
        with lock:
            skipped.add(n)
            malformed.append(Malformed(n, (row.text or "")[:2000], f"malformed CSV row: expected "
                                       f"{row.expected_columns} fields, got {row.actual_columns}"))
        return "skip"

    def numbers(k: int) -> np.ndarray:
        """The data-row numbers of the next k parsed rows: the rows not skipped as malformed (those of
        this batch are known: the parser reports a row before it returns the batch past it)."""
        nonlocal next_row
        with lock:
            skip = [n for n in skipped if n >= next_row]
        cand = np.arange(next_row, next_row + k + len(skip), dtype=np.int64)
        if skip:
            cand = cand[~np.isin(cand, skip)]
        nums = cand[:k]
        if k:
            next_row = int(nums[-1]) + 1
            with lock:
                skipped.difference_update([n for n in skipped if n < next_row])
        return nums

    def take_malformed() -> list[Malformed]:
        with lock:
            return _take(malformed)

    # use_threads=False: only a serial parse reports the row number of a malformed row
    read_opts = pcsv.ReadOptions(block_size=CSV_BLOCK, use_threads=False)
    parse_opts = pcsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=False)
    conv = pcsv.ConvertOptions(column_types={c: pa.string() for c in header}, include_columns=include,
                               strings_can_be_null=True, null_values=["", "null", "NULL", "None"],
                               quoted_strings_can_be_null=False)

    def table(batches: list[pa.RecordBatch], lines: list[np.ndarray]) -> pa.Table:
        tbl = (pa.Table.from_batches(batches) if batches
               else pa.table({c: pa.array([], pa.string()) for c in include}))
        return tbl.append_column(LINE, pa.array(np.concatenate(lines) if lines else [], pa.int64()))

    try:
        rdr = pcsv.open_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=conv)
        pending: list[pa.RecordBatch] = []
        pending_lines: list[np.ndarray] = []
        rows = 0
        for batch in _ahead(rdr):  # parse the next blocks while this one is checked and written
            pending.append(batch)
            pending_lines.append(numbers(batch.num_rows))
            rows += batch.num_rows
            if rows >= chunk_rows:
                yield table(pending, pending_lines), take_malformed()
                pending, pending_lines, rows = [], [], 0
            if on_bytes:
                on_bytes(batch.nbytes)
        if pending or malformed:
            yield table(pending, pending_lines), take_malformed()
    except pa.ArrowInvalid as exc:
        msg = str(exc).splitlines()[0]
        if "UTF8" in msg or "utf8" in msg.lower():
            raise InvalidInputError(f"{src.label}: not valid UTF-8 text ({msg})", hint="re-export the file as UTF-8; nothing was ingested") from None
        if "straddl" in msg:  # one row does not fit in a read block
            raise InvalidInputError(
                f"{src.label}: a row is longer than {CSV_BLOCK >> 20} MB, so the file cannot be read (a runaway field or quote?)",
                hint="fields longer than data.max_field_bytes are quarantined when their row fits; fix the export; nothing was ingested") from None
        raise InvalidInputError(f"{src.label}: unreadable CSV ({msg})", hint="fix the file; nothing was ingested") from None


def _ahead(items, depth: int = 2):
    """Iterate ``items`` in a thread of its own, up to ``depth`` ahead of the consumer: pyarrow's
    serial CSV parser releases the GIL, so parsing overlaps the checks and the Parquet writes (two
    cores: a 1M-row ingest 0.8 s faster). Errors reach the consumer; closing the generator stops it."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))

    t = threading.Thread(target=run, name="llctl-read-ahead", daemon=True)
    t.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def _take(items: list) -> list:
    out = list(items)
    items.clear()
    return out


class _DuplicateField(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refusing a name given twice (json keeps the last one silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateField(f"field {dup[:100]!r} appears more than once")
    return obj


def _json_int(text: str) -> object:
    """A JSON integer; one too long for Python's int conversion limit stays text (the column's type
    check then judges it, as it would the same digits in a CSV)."""
    return int(text) if len(text) <= 4000 else text


def _lines(fh, limit: int) -> Iterator[tuple[bytes, int]]:
    """(line, its length) of a binary file, each line cut at ``limit`` bytes: the rest of a longer
    line is read in pieces and dropped, so one line never costs more than ``limit`` of memory."""
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        size = len(line)
        if size > limit and not line.endswith(b"\n"):
            while (more := fh.readline(HASH_BLOCK)) and not more.endswith(b"\n"):
                size += len(more)
            size += len(more)
        yield line, size


def _jsonl_chunks(path, src, wanted, chunk_rows, on_bytes, max_field_bytes):
    rows: list[dict] = []
    lines: list[int] = []
    bad: list[Malformed] = []
    seen: set[str] = set()
    limit = max_line_bytes(wanted, max_field_bytes)
    with path.open("rb") as fh:
        for n, (line, size) in enumerate(_lines(io.BufferedReader(fh), limit), start=1):
            if on_bytes:
                on_bytes(size)
            if size > limit:
                bad.append(Malformed(n, line[:2000].decode("utf-8", "replace"),
                                     f"line longer than {limit} bytes (data.max_field_bytes is {max_field_bytes} "
                                     "a field): not parsed"))
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line, object_pairs_hook=_object, parse_int=_json_int)
            except RecursionError:
                bad.append(Malformed(n, line[:2000].decode("utf-8", "replace"), "invalid JSON: nested too deeply"))
                continue
            except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, _DuplicateField are ValueErrors
                bad.append(Malformed(n, line[:2000].decode("utf-8", "replace"), f"invalid JSON: {exc}"[:200]))
                continue
            if not isinstance(obj, dict):
                bad.append(Malformed(n, line[:2000].decode("utf-8", "replace"), "not a JSON object"))
                continue
            seen.update(obj)
            rows.append({k: (None if obj.get(k) is None else (v if isinstance(v := obj.get(k), str) else json.dumps(v)))
                         for k in wanted})
            lines.append(n)
            if len(rows) >= chunk_rows:
                src.columns = sorted(seen)
                yield _rows_table(rows, wanted, seen, lines), _take(bad)
                rows = []
                lines = []
    src.columns = sorted(seen)
    if rows or bad:
        yield _rows_table(rows, wanted, seen, lines), _take(bad)


def _rows_table(rows: list[dict], wanted: list[str], seen: set[str], lines: list[int]) -> pa.Table:
    cols = [c for c in wanted if c in seen]
    return pa.table({**{c: pa.array([r[c] for r in rows], pa.string()) for c in cols},
                     LINE: pa.array(lines, pa.int64())})


def _parquet_chunks(path, src, wanted, chunk_rows, on_bytes, max_field_bytes):
    import pyarrow.parquet as pq

    def unreadable(exc: BaseException, what: str) -> InvalidInputError:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return InvalidInputError(f"{src.label}: {what} ({text})",
                                 hint="check the file (re-export it) and --format; nothing was ingested")

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable(exc, "not a readable Parquet file") from None
    _no_duplicates(list(names), src.label)
    src.columns = list(names)
    include = [c for c in wanted if c in names]
    batches = pf.iter_batches(batch_size=chunk_rows, columns=include)
    while True:
        try:  # a corrupt data page surfaces only when its row group is decoded
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
            raise unreadable(exc, "unreadable Parquet data") from None
        if on_bytes:
            on_bytes(batch.nbytes)
        yield pa.Table.from_batches([batch]), []


