"""The data schema from the config, and vectorised row validation.

A chunk arrives as an Arrow table whose columns are strings (CSV, JSON Lines) or typed
(Parquet). ``validate_chunk`` returns the good rows, typed as the segment schema says, and the
bad rows as strings with one reason each — never dropping a row silently."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lifelong_cli.config import DataSettings, FeatureSpec

REASON = "_reason"
LINE = "_row"  # 1 = the first data row of the input
EXAMPLE_KINDS = ("examples", "golden")  # rows with features (golden rows must also carry a label)
HOLDOUT_COL = "_holdout"  # deterministic per key: held out for the golden set, never trained on
RAW = "_raw"  # the raw text of a row that could not be parsed at all
TS_TYPE = pa.timestamp("us", tz="UTC")

_FLOAT_RE = r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)\s*$"
_INT_RE = r"^\s*[+-]?\d{1,18}\s*$"
_BOOL_TRUE = ["true", "1", "yes", "t", "y"]
_BOOL_FALSE = ["false", "0", "no", "f", "n"]
_ISO_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$"
_EPOCH_RE = r"^\s*\d{1,11}(\.\d+)?\s*$"


@dataclass(frozen=True)
class DataSchema:
    key: str
    event_time: str
    label: str
    label_type: str
    label_categories: tuple[str, ...] | None
    features: tuple[FeatureSpec, ...]
    max_field_bytes: int

    @classmethod
    def from_settings(cls, d: DataSettings) -> DataSchema:
        return cls(d.key, d.event_time, d.label, d.label_type,
                   tuple(d.label_categories) if d.label_categories else None, tuple(d.features), d.max_field_bytes)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.type in ("float", "int")]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type in ("category", "string", "bool")]

    def columns(self, kind: str = "examples") -> list[str]:
        if kind in EXAMPLE_KINDS:
            return [self.key, self.event_time, self.label, *self.feature_names]
        return [self.key, self.label, self.event_time]

    def label_arrow_type(self) -> pa.DataType:
        return pa.string() if self.label_type == "category" else pa.float64()

    def arrow_schema(self, kind: str = "examples") -> pa.Schema:
        fields = [pa.field(self.key, pa.string(), nullable=False), pa.field(self.event_time, TS_TYPE),
                  pa.field(self.label, self.label_arrow_type())]
        if kind in EXAMPLE_KINDS:
            fields += [pa.field(f.name, _arrow_type(f)) for f in self.features]
        return pa.schema(fields)

    def predicate_columns(self) -> dict[str, str]:
        """Columns a --where expression may name, with their predicate types."""
        out = {self.key: "string", self.event_time: "timestamp",
               self.label: "string" if self.label_type == "category" else "float"}
        for f in self.features:
            out[f.name] = {"float": "float", "int": "int", "bool": "bool"}.get(f.type, "string")
        return out

    def required_columns(self, kind: str) -> list[str]:
        if kind in EXAMPLE_KINDS:
            return [self.key, self.event_time] + [f.name for f in self.features if not f.nullable]
        return [self.key, self.label]


def _arrow_type(f: FeatureSpec) -> pa.DataType:
    return {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}.get(f.type, pa.string())


class _Checker:
    """Accumulates per-row reasons: every failing check of a row, joined by "; " in the order they
    ran — but one per column (its first: a 2 MB field is not also "not one of the categories")."""

    def __init__(self, n: int) -> None:
        self.reason = pa.nulls(n, pa.string())

    def fail(self, mask: pa.Array, text: str) -> None:
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():
            return
        first = pc.and_(mask, pc.is_null(self.reason))
        column = re.escape(text.split(":", 1)[0])
        named = pc.fill_null(pc.match_substring_regex(self.reason, f"(^|; ){column}:"), True)
        more = pc.and_(mask, pc.invert(named))
        if pc.any(more).as_py():
            self.reason = pc.if_else(more, pc.binary_join_element_wise(self.reason, pa.scalar(text), "; "),
                                     self.reason)
        self.reason = pc.if_else(first, pa.scalar(text), self.reason)

    @property
    def bad(self) -> pa.Array:
        return pc.is_valid(self.reason)


def _as_string(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if pa.types.is_string(arr.type):
        return arr
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())


def _strict_cast(s: pa.Array, typ: pa.DataType) -> pa.Array | None:
    """Arrow's strict cast, or None when some value is not in canonical form (the caller then
    checks row by row, so each bad value gets its own reason)."""
    try:
        return pc.cast(s, typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _text(arr: pa.Array) -> pa.Array:
    """As strings, with blank ones as null (CSV writes a missing value as an empty field)."""
    s = _as_string(arr)
    return pc.if_else(pc.equal(pc.utf8_trim_whitespace(s), ""), pa.scalar(None, pa.string()), s)


def _parse_float(arr: pa.Array, chk: _Checker, name: str) -> pa.Array:
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        # unsafe: an int64 beyond 2^53 (2^62) becomes the nearest float, as it would from text
        return pc.cast(arr, pa.float64(), safe=False)
    if pa.types.is_string(arr.type):  # a clean column (no blank text either): Arrow's parser on it as it is
        fast = _strict_cast(arr, pa.float64())
        if fast is not None:
            return fast
    s = _text(arr)
    fast = _strict_cast(s, pa.float64())  # Arrow's parser, 5x faster than the regex below
    if fast is not None:
        return fast
    ok = pc.match_substring_regex(s, _FLOAT_RE, ignore_case=True)
    chk.fail(pc.and_(pc.is_valid(s), pc.invert(ok)), f"{name}: not a number")
    clean = pc.if_else(pc.fill_null(ok, False), pc.utf8_trim_whitespace(s), pa.scalar(None, pa.string()))
    return pc.cast(clean, pa.float64())


def _parse_int(arr: pa.Array, chk: _Checker, name: str) -> pa.Array:
    if pa.types.is_integer(arr.type):
        return pc.cast(arr, pa.int64())
    if pa.types.is_floating(arr.type):
        whole = pc.equal(pc.floor(arr), arr)
        chk.fail(pc.invert(pc.fill_null(whole, True)), f"{name}: not a whole number")
        return pc.cast(pc.if_else(pc.fill_null(whole, False), arr, pa.scalar(None, arr.type)), pa.int64(), safe=False)
    s = _text(arr)
    ok = pc.match_substring_regex(s, _INT_RE)
    chk.fail(pc.and_(pc.is_valid(s), pc.invert(ok)), f"{name}: not a whole number")
    return pc.cast(pc.if_else(pc.fill_null(ok, False), pc.utf8_trim_whitespace(s), pa.scalar(None, pa.string())), pa.int64())


def _parse_bool(arr: pa.Array, chk: _Checker, name: str) -> pa.Array:
    if pa.types.is_boolean(arr.type):
        return arr
    s = pc.utf8_lower(pc.utf8_trim_whitespace(_text(arr)))
    t = pc.is_in(s, value_set=pa.array(_BOOL_TRUE))
    f = pc.is_in(s, value_set=pa.array(_BOOL_FALSE))
    chk.fail(pc.and_(pc.is_valid(s), pc.invert(pc.or_(t, f))), f"{name}: not true/false")
    return pc.if_else(t, True, pc.if_else(f, pa.scalar(False), pa.scalar(None, pa.bool_())))


def parse_time(arr: pa.Array, chk: _Checker, name: str) -> pa.Array:
    """ISO-8601 (a missing zone means UTC; a date alone means midnight) or epoch seconds."""
    if pa.types.is_timestamp(arr.type):
        return arr.cast(TS_TYPE) if arr.type.tz else pc.assume_timezone(arr, "UTC").cast(TS_TYPE)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return pc.cast(pc.cast(pc.multiply(pc.cast(arr, pa.float64()), 1e6), pa.int64(), safe=False), TS_TYPE)
    if pa.types.is_string(arr.type):  # the common case: every value a full ISO-8601 time with a zone
        fast = _strict_cast(arr, TS_TYPE)
        if fast is not None:
            return fast
    s = pc.utf8_trim_whitespace(_text(arr))
    fast = _strict_cast(s, TS_TYPE)
    if fast is not None:
        return fast
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2})$", r"\1T00:00:00Z")
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2}) ", r"\1T")
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2}T[0-9:.]+)$", r"\1Z")
    iso = pc.fill_null(pc.match_substring_regex(s, _ISO_RE), False)
    epoch = pc.fill_null(pc.match_substring_regex(s, _EPOCH_RE), False)
    chk.fail(pc.and_(pc.is_valid(s), pc.invert(pc.or_(iso, epoch))), f"{name}: not a time (ISO-8601 or epoch seconds)")
    iso_vals = pc.if_else(iso, s, pa.scalar(None, pa.string()))
    try:
        ts = pc.cast(iso_vals, TS_TYPE)
    except pa.ArrowInvalid:  # regex-valid but impossible, e.g. month 13: fall back row by row
        ts = _times_one_by_one(iso_vals, chk, name)
    if pc.any(epoch).as_py():
        secs = pc.cast(pc.if_else(epoch, s, pa.scalar(None, pa.string())), pa.float64())
        ep = pc.cast(pc.cast(pc.multiply(secs, 1e6), pa.int64(), safe=False), TS_TYPE)
        ts = pc.if_else(epoch, ep, ts)
    return ts


def _times_one_by_one(s: pa.Array, chk: _Checker, name: str) -> pa.Array:
    out, bad = [], []
    for v in s.to_pylist():
        if v is None:
            out.append(None)
            bad.append(False)
            continue
        try:
            out.append(pc.cast(pa.array([v]), TS_TYPE)[0].as_py())
            bad.append(False)
        except pa.ArrowInvalid:
            out.append(None)
            bad.append(True)
    chk.fail(pa.array(bad), f"{name}: not a valid date/time")
    return pa.array(out, TS_TYPE)


def validate_chunk(table: pa.Table, schema: DataSchema, kind: str = "examples",
                   first_line: int = 1) -> tuple[pa.Table, pa.Table]:
    """Split a chunk into (good rows typed as the segment schema, bad rows as strings + reason + line)."""
    n = table.num_rows
    chk = _Checker(n)
    present = set(table.column_names)
    table = table.combine_chunks()  # once: every column is read several times below

    def col(name: str) -> pa.Array:
        if name in present:
            c = table.column(name)
            return c.chunk(0) if c.num_chunks == 1 else c.combine_chunks()
        return pa.nulls(n, pa.string())

    for name in table.column_names:  # oversized fields first: they are the likeliest garbage
        if name in schema.columns(kind):
            s = _as_string(col(name))
            chk.fail(pc.greater(pc.binary_length(s), schema.max_field_bytes),
                     f"{name}: field longer than {schema.max_field_bytes} bytes")

    key = pc.utf8_trim_whitespace(_as_string(col(schema.key)))
    if kind == "examples" and schema.label not in present:
        present.discard(schema.label)  # examples may arrive unlabelled (labels come later)
    chk.fail(pc.or_kleene(pc.is_null(key), pc.equal(key, "")), f"{schema.key}: missing key")
    # a null key is a bad row (quarantined above); the good table's key column is non-nullable, so
    # the cast below must not see the null before those rows are filtered out
    out: dict[str, pa.Array] = {schema.key: pc.fill_null(key, "") if key.null_count else key}

    et = col(schema.event_time) if schema.event_time in present else pa.nulls(n, pa.string())
    ts = parse_time(et, chk, schema.event_time)
    if kind in EXAMPLE_KINDS:
        chk.fail(pc.is_null(et), f"{schema.event_time}: missing event time")
    out[schema.event_time] = ts

    out[schema.label] = _label(col(schema.label), schema, chk, required=(kind != "examples"))

    if kind in EXAMPLE_KINDS:
        for f in schema.features:
            raw = col(f.name)
            if f.type == "float":
                v = _parse_float(raw, chk, f.name)
                finite = pc.is_finite(v)
                chk.fail(pc.and_(pc.is_valid(v), pc.invert(finite)), f"{f.name}: non-finite value (NaN or Inf)")
            elif f.type == "int":
                v = _parse_int(raw, chk, f.name)
            elif f.type == "bool":
                v = _parse_bool(raw, chk, f.name)
            else:
                v = _text(raw)
                if f.type == "category" and f.categories:
                    chk.fail(pc.and_(pc.is_valid(v), pc.invert(pc.is_in(v, value_set=pa.array(f.categories)))),
                             f"{f.name}: not one of the allowed categories")
            if f.min is not None and f.type in ("float", "int"):
                chk.fail(pc.less(v, f.min), f"{f.name}: below min {f.min:g}")
            if f.max is not None and f.type in ("float", "int"):
                chk.fail(pc.greater(v, f.max), f"{f.name}: above max {f.max:g}")
            if not f.nullable:
                chk.fail(pc.is_null(raw) if f.type in ("float", "int", "bool") else pc.is_null(v), f"{f.name}: missing value")
            out[f.name] = v

    bad = chk.bad
    good_tbl = pa.table(out).cast(schema.arrow_schema(kind)) if n else schema.arrow_schema(kind).empty_table()
    good_tbl = good_tbl.filter(pc.invert(bad))
    raw_cols = {c: _as_string(col(c)) for c in schema.columns(kind)}
    raw_cols[REASON] = chk.reason
    # the reader's row numbers when it has them (they skip rows it could not parse), else consecutive
    raw_cols[LINE] = (col(LINE).cast(pa.int64()) if LINE in present
                      else pa.array(range(first_line, first_line + n), pa.int64()))
    raw_cols[RAW] = pa.nulls(n, pa.string())
    bad_tbl = pa.table(raw_cols).filter(bad)
    return good_tbl, bad_tbl


def _label(raw: pa.Array, schema: DataSchema, chk: _Checker, *, required: bool) -> pa.Array:
    name = schema.label
    if required:
        chk.fail(pc.is_null(raw), f"{name}: missing label")
    if schema.label_type == "category":
        v = _text(raw)
        if pa.types.is_floating(raw.type):  # 1.0 -> "1" for integer-like class labels in Parquet/JSON
            v = _as_string(pc.cast(raw, pa.int64(), safe=False))
        if schema.label_categories:
            chk.fail(pc.and_(pc.is_valid(v), pc.invert(pc.is_in(v, value_set=pa.array(schema.label_categories)))),
                     f"{name}: not one of the allowed labels")
        return v
    v = _parse_float(raw, chk, name)
    chk.fail(pc.and_(pc.is_valid(v), pc.invert(pc.is_finite(v))), f"{name}: non-finite value (NaN or Inf)")
    return v


def quarantine_schema(schema: DataSchema, kind: str) -> pa.Schema:
    return pa.schema([pa.field(c, pa.string()) for c in schema.columns(kind)]
                     + [pa.field(REASON, pa.string()), pa.field(LINE, pa.int64()), pa.field(RAW, pa.string())])


def missing_required(columns: Sequence[str], schema: DataSchema, kind: str) -> list[str]:
    have = set(columns)
    return [c for c in schema.required_columns(kind) if c not in have]


def mix64(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (MurmurHash3's fmix64): every input bit moves every output bit, so keys
    that differ only in their last characters spread over the whole range."""
    h = np.asarray(h, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return h


def sample_hash(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The well-mixed, stable 64-bit hash that decides hold-out membership (and any per-key sample):
    FNV-1a over the key's bytes, then ``mix64``. Uniform in its high bits for sequential,
    prefixed, zero-padded, numeric and random keys alike (FNV-1a alone is not: see
    tests/unit/test_holdout_hash.py)."""
    return mix64(key_hash(keys, bits=64))


def in_sample(keys: pa.Array | pa.ChunkedArray, fraction: float) -> np.ndarray:
    """Whether each key falls in a ``fraction`` sample (deterministic per key)."""
    if fraction <= 0:
        return np.zeros(len(keys), bool)
    if fraction >= 1:
        return np.ones(len(keys), bool)
    return sample_hash(keys) < np.uint64(int(fraction * 2.0**64))


def key_hash(keys: pa.Array | pa.ChunkedArray, bits: int = 32) -> np.ndarray:
    """FNV-1a of each key's UTF-8 bytes (32 or 64 bit), vectorised over the Arrow buffers: stable
    across runs and machines (unlike Python's hash), so a key is always in or out of the hold-out.

    Linear in the bytes of the keys: byte position ``j`` is one vectorised step over the keys longer
    than ``j`` only (sorted longest first, so they are a prefix), and once few keys are that long
    their remaining bytes are hashed key by key (one 900 KB key must not cost 900 K steps over
    every key of the batch)."""
    arr = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    arr = arr.cast(pa.string())
    n = len(arr)
    basis, prime = (2166136261, 16777619) if bits == 32 else (14695981039346656037, 1099511628211)
    out_type = np.uint32 if bits == 32 else np.uint64
    if n == 0:
        return np.empty(0, out_type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(1, np.uint8)
    lengths = offsets[1:] - offsets[:-1]
    order = np.argsort(-lengths, kind="stable")  # longest first: the keys longer than j are a prefix
    starts, lens = offsets[:-1][order], lengths[order]
    neg = -lens  # ascending, for searchsorted
    h = np.full(n, basis, dtype=np.uint64)
    p, low32 = np.uint64(prime), np.uint64(0xFFFFFFFF)
    longest, j = int(lens[0]), 0
    with np.errstate(over="ignore"):
        while j < longest:
            k = int(np.searchsorted(neg, -j, side="left"))  # keys longer than j
            if k <= _FNV_TAIL_KEYS:
                break
            until = int(lens[k - 1])  # every one of the k keys is at least this long
            hk, sk = h[:k], starts[:k]
            for jj in range(j, until):
                hk ^= data[sk + jj]
                hk *= p
                if bits == 32:
                    hk &= low32
            j = until
        if j < longest:
            mask = (1 << bits) - 1
            for i in range(int(np.searchsorted(neg, -j, side="left"))):
                h[i] = _fnv1a_tail(data[starts[i] + j: starts[i] + lens[i]], int(h[i]), prime) & mask
    out = np.empty(n, np.uint64)
    out[order] = h
    return out.astype(out_type)


_FNV_TAIL_KEYS = 48  # below this many keys still going, a numpy step costs more than a byte loop per key
_FNV_CACHE: dict[tuple[int, int, bytes], int] = {}  # long keys: one ingest hashes its keys several times
_FNV_CACHE_MIN_BYTES = 4096


def _fnv1a_tail(b: np.ndarray, h0: int, prime: int) -> int:
    """FNV-1a (mod 2^64) of the bytes ``b`` of one key from state ``h0``, in O(len(b)) numpy work.

    ``h ^ byte`` changes only the low byte of ``h``, so ``h ^ byte == h + d`` with ``d`` depending on
    that byte alone, and ``h_n = h0 * P^n + sum(d_i * P^(n-i))`` — a dot product. The low bytes form
    a chain, but bit ``k`` of the next one is bit ``k`` of the current one XOR bits known from the
    bits below ``k`` (P is odd): eight prefix-XOR passes give them all."""
    n = len(b)
    if n < 64:
        for v in b.tobytes():
            h0 = ((h0 ^ v) * prime) & 0xFFFFFFFFFFFFFFFF
        return h0
    import hashlib

    ck = (prime, h0, hashlib.sha256(b.tobytes()).digest()) if n >= _FNV_CACHE_MIN_BYTES else None
    if ck is not None and ck in _FNV_CACHE:
        return _FNV_CACHE[ck]
    p8 = np.uint8(prime & 0xFF)
    x = np.zeros(n, np.uint8)  # the low byte of h_i ^ b_i, built bit by bit
    s = np.zeros(n, np.uint8)  # the low byte of h_i
    sk = np.empty(n, np.uint8)
    for k in range(8):
        step = ((x * p8) ^ b) >> np.uint8(k)  # x holds bits < k: its product's bit k is their carry
        step &= np.uint8(1)
        sk[0] = (h0 >> k) & 1
        np.bitwise_xor.accumulate(step[:-1], out=sk[1:])
        sk[1:] ^= sk[0]
        sk <<= np.uint8(k)
        s |= sk
        x |= sk ^ (b & np.uint8(1 << k))
    d = x.astype(np.int64)
    d -= s  # (h_i ^ b_i) - h_i, two's complement: mod 2^64 once viewed unsigned
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(n, prime, np.uint64))  # P^1 … P^n, mod 2^64
        total = (d.view(np.uint64) * powers[::-1]).sum(dtype=np.uint64)
        out = int(np.uint64(h0) * powers[-1] + total)
    if ck is not None:
        if len(_FNV_CACHE) >= 64:
            _FNV_CACHE.clear()
        _FNV_CACHE[ck] = out
    return out
