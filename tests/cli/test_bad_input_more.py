"""More bad input through the real `llctl` entry point (issue 12, items 1 and 4/5's input side):
null keys, hostile JSON Lines and Parquet, duplicate columns, integers beyond what the store holds,
durations before year 1, and --where limits. Data-driven: every case asserts its exit code, one
clear error line (never a traceback) and, for a refused command, a store and data root unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_ingest_bad_input import (
    HEADER,
    T0,
    Store,
    good_rows,
    ingest_json,
    quarantine,
    row,
    write_csv,
)
from tests.helpers import CliResult, run_bin_peak, run_cli

BIG = str(2**70)
DIGITS = "9" * 5000


@pytest.fixture
def cli(workspace, cli_env):
    return lambda *args: run_cli([str(a) for a in args], cwd=workspace, env=cli_env)


@pytest.fixture
def store(workspace, cli_env) -> Store:
    return Store(workspace, cli_env)


def jsonl(path: Path, objs: list, raw: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(o) for o in objs]
    for i, text in (raw or {}).items():
        lines[i] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def example(i: int, **kw) -> dict:
    return {"example_id": f"j{i}", "event_time": T0, "label": str(i % 2), "x1": i % 50 + 0.5, "x2": -1.0,
            "x3": None, "segment": "a", **kw}


def parquet(path: Path, columns: dict, names: list[str] | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.Table.from_arrays([pa.array(v) if not isinstance(v, pa.Array) else v for v in columns.values()],
                             names=names or list(columns))
    pq.write_table(t, path)
    return path


def parquet_rows(n: int, **over) -> dict:
    import pyarrow as pa

    cols = {"example_id": [f"p{i}" for i in range(n)], "event_time": [1704067200 + i for i in range(n)],
            "label": ["1"] * n, "x1": [float(i % 50) for i in range(n)], "x2": [2.0] * n,
            "x3": pa.nulls(n, pa.float64()), "segment": ["a"] * n}
    cols.update(over)
    return cols


def snapshot_all(st: Store) -> dict:
    """What a refused command must leave as it was: batches, rows, audit entries, data files."""
    ctx = st._ctx()
    try:
        from lifelong_cli.store import audit

        with ctx.store.tx(write=False) as t:
            entries = len(audit.query(t, model=ctx.model))
    finally:
        ctx.close()
    files = sorted(str(p.relative_to(st.workspace)) for p in (st.workspace / ".llctl").rglob("*")
                   if p.is_file() and "state.db" not in p.name)
    return {**st.snapshot(), "audit": entries, "files": files}


def assert_one_clean_error(r: CliResult, code: int, *needles: str) -> dict:
    assert r.code == code, (r.code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    err = r.json()["error"]  # exactly one JSON document on stdout, naming the error
    assert err["exit_code"] == code, err
    lines = [ln for ln in r.stderr.splitlines() if ln.lower().startswith(("error:", "│ invalid value", "error"))]
    assert len(lines) >= 1, r.stderr
    for n in needles:
        assert n in err["message"], (n, err)
    return err


# --------------------------------------------------------------------------------------------- quarantined rows
# (name, write the input into tmp_path -> (path, extra args), expected rows read, expected top reasons)

QUARANTINED: list[tuple[str, Callable[[Path], tuple[Path, list[str]]], int, dict[str, int]]] = [
    ("csv empty key", lambda d: (write_csv(d / "a.csv", [*good_rows(9), row("")]), []), 10,
     {"example_id: missing key": 1}),
    ("csv 'null' key", lambda d: (write_csv(d / "a.csv", [*good_rows(9), row("null")]), []), 10,
     {"example_id: missing key": 1}),
    ("csv blank key", lambda d: (write_csv(d / "a.csv", [*good_rows(9), row("   ")]), []), 10,
     {"example_id: missing key": 1}),
    ("jsonl null key", lambda d: (jsonl(d / "a.jsonl", [*(example(i) for i in range(9)), example(9, example_id=None)]), []),
     10, {"example_id: missing key": 1}),
    ("jsonl empty key", lambda d: (jsonl(d / "a.jsonl", [*(example(i) for i in range(9)), example(9, example_id="")]), []),
     10, {"example_id: missing key": 1}),
    ("jsonl absent key", lambda d: (jsonl(d / "a.jsonl", [*(example(i) for i in range(9)),
                                                          {k: v for k, v in example(9).items() if k != "example_id"}]), []),
     10, {"example_id: missing key": 1}),
    ("labels csv empty key", lambda d: (_labels(d, ["k1,1", ",0", "k2,1", "k3,0", "k4,1", "k5,0"]), ["--kind", "labels"]),
     6, {"example_id: missing key": 1}),
    ("labels jsonl null key", lambda d: (jsonl(d / "l.jsonl", [{"example_id": f"k{i}", "label": "1", "event_time": T0}
                                                               for i in range(5)] + [{"example_id": None, "label": "0"}]),
                                         ["--kind", "labels"]), 6, {"example_id: missing key": 1}),
    ("parquet null key", lambda d: (parquet(d / "a.parquet", parquet_rows(10, example_id=[*(f"p{i}" for i in range(9)), None])),
                                    []), 10, {"example_id: missing key": 1}),
    ("jsonl nested 100,000 deep", lambda d: (jsonl(d / "a.jsonl", [example(i) for i in range(10)],
                                                   {4: '{"example_id": "j4", "x1": ' + "[" * 100_000 + "]" * 100_000 + "}"}), []),
     10, {"invalid JSON: nested too deeply": 1}),
    ("jsonl 5,000-digit number in a float", lambda d: (jsonl(d / "a.jsonl", [example(i) for i in range(10)],
                                                             {4: json.dumps(example(4))[:-1].replace(', "x3": null', "") + ', "x3": ' + DIGITS + "}"}), []),
     10, {"x3: non-finite value (NaN or Inf)": 1}),
    ("jsonl 5,000-digit number as a key", lambda d: (jsonl(d / "a.jsonl", [example(i) for i in range(10)],
                                                           {4: json.dumps(example(4, x1="zz"))[:-1].replace('"j4"', DIGITS) + "}"}), []),
     10, {"x1: not a number": 1}),
    ("jsonl field named twice", lambda d: (jsonl(d / "a.jsonl", [example(i) for i in range(10)],
                                                 {2: json.dumps(example(2))[:-1] + ', "x1": 7}'}), []),
     10, {"invalid JSON: field 'x1' appears more than once": 1}),
    ("jsonl line far over max_field_bytes", lambda d: (jsonl(d / "a.jsonl", [example(i) for i in range(10)],
                                                             {5: json.dumps(example(5, segment="b" * 200_000))}),
                                                       ["--set", "data.max_field_bytes=1000"]),
     10, {"line longer than 9000 bytes (data.max_field_bytes is 1000 a field): not parsed": 1}),
]


def _labels(d: Path, rows: list[str]) -> Path:
    p = d / "labels.csv"
    p.write_text("example_id,label\n" + "\n".join(rows) + "\n")
    return p


@pytest.mark.parametrize(("name", "make", "read", "reasons"), QUARANTINED, ids=[c[0] for c in QUARANTINED])
def test_bad_row_is_one_quarantined_row_not_a_failed_ingest(cli, store, tmp_path, name, make, read, reasons):
    path, extra = make(tmp_path)
    globals_ = "--set" in extra  # a global option: before the verb
    r = cli(*extra, "ingest", path, "--json") if globals_ else cli("ingest", path, *extra, "--json")
    assert r.code == 0, (r.code, r.stdout[-500:], r.stderr)
    doc = ingest_json(r)
    bad = sum(reasons.values())
    assert (doc["status"], doc["rows_read"], doc["rows_quarantined"], doc["rows_accepted"]) == \
        ("accepted", read, bad, read - bad), doc
    assert doc["top_reasons"] == reasons
    assert [x["_reason"] for x in quarantine(cli, doc["batch"])] == [k for k, v in reasons.items() for _ in range(v)]
    store.assert_consistent()


def test_a_row_with_several_failures_keeps_each_of_them(cli, tmp_path):
    rows = good_rows(10)
    rows[3] = row("e3", x1="abc", x2="2000", segment="zzz")
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "multi.csv", rows), "--json"))
    (q,) = quarantine(cli, doc["batch"])
    assert q["_reason"] == "x1: not a number; x2: above max 1000; segment: not one of the allowed categories"


def test_an_oversized_field_is_one_reason_not_also_a_bad_category(cli, tmp_path):
    rows = good_rows(10)
    rows[3] = row("e3", segment="b" * 1_100_000)
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "wide.csv", rows), "--json"))
    assert doc["top_reasons"] == {"segment: field longer than 1000000 bytes": 1}


def test_int64_2_pow_62_in_a_float_feature_of_parquet_is_accepted_as_a_float(cli, store, tmp_path):
    import pyarrow as pa

    n = 10
    path = parquet(tmp_path / "i62.parquet", parquet_rows(n, x3=pa.array([2**62 + 1] + [3] * (n - 1), pa.int64())))
    doc = ingest_json(cli("ingest", path, "--json"))
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", n, 0)
    x3 = dict(zip(store.rows()["example_id"].to_pylist(), store.rows()["x3"].to_pylist(), strict=True))
    assert x3["p0"] == float(2**62)


# --------------------------------------------------------------------------------------------- refused files


def _corrupt_parquet(d: Path) -> Path:
    p = parquet(d / "c.parquet", parquet_rows(5000))
    raw = bytearray(p.read_bytes())
    for i in range(2000, len(raw) - 3000, 7):  # data pages; the footer (schema) stays readable
        raw[i] ^= 0x5A
    p.write_bytes(bytes(raw))
    return p


REFUSED = [
    ("csv duplicate header column", lambda d: write_csv(d / "dup.csv", [r + ",9" for r in good_rows(5)], HEADER + ",x1"),
     "column(s) x1 appear more than once in the header"),
    ("parquet duplicate column", lambda d: parquet(d / "dup.parquet", {**parquet_rows(5), "x1b": [1.0] * 5},
                                                   names=[*parquet_rows(5), "x1"]),
     "column(s) x1 appear more than once in the header"),
    ("parquet corrupt data pages", _corrupt_parquet, "unreadable Parquet data"),
]


@pytest.mark.parametrize(("name", "make", "needle"), REFUSED, ids=[c[0] for c in REFUSED])
def test_unreadable_or_ambiguous_file_is_refused_and_nothing_is_ingested(cli, store, tmp_path, name, make, needle):
    ingest_json(cli("ingest", write_csv(tmp_path / "first.csv", good_rows(5, prefix="f")), "--json"))
    path = make(tmp_path)
    before = snapshot_all(store)
    err = assert_one_clean_error(cli("ingest", path, "--json"), 2, needle)
    assert "nothing was ingested" in err["hint"]
    after = snapshot_all(store)
    assert after["audit"] == before["audit"] and after["files"] == before["files"]
    store.assert_nothing_ingested(before)


# --------------------------------------------------------------------------------------------- numbers and times

# every integer option and argument (the value goes where {} is), against each integer the store
# cannot hold or that is no whole number
INT_SLOTS = [
    ["rollback", "--to", "{}", "--reason", "t"],
    ["purge-data", "--batch", "{}", "--reason", "t", "--yes"],
    ["purge-data", "--undo", "{}", "--reason", "t", "--yes"],
    ["versions", "show", "{}"],
    ["versions", "--limit", "{}"],
    ["validate", "{}"],
    ["push", "{}"],
    ["canary", "start", "{}"],
    ["quarantine", "show", "{}"],
    ["quarantine", "show", "1", "--limit", "{}"],
    ["audit", "--limit", "{}"],
    ["audit", "--incident", "{}"],
    ["drift", "--batch", "{}"],
    ["incident", "show", "{}"],
    ["incident", "close", "{}"],
    ["incident", "note", "{}", "a note"],
    ["incident", "report", "{}"],
    ["data", "release", "{}", "--reason", "t"],
    ["data", "reject", "{}", "--reason", "t"],
    ["train", "--max-rows", "{}"],
    ["train", "--epochs", "{}"],
    ["feedback", "export", "--out", "fb.csv", "--after-id", "{}"],
    ["fallback", "on", "--strategy", "version:{}", "--reason", "t"],
    ["playbook", "run", "bad-data", "--param", "batch={}", "--yes"],
]
BAD_INTS = [BIG, str(2**63), DIGITS, "-1", "1e3", "0x10", "٣"]  # the last a non-ASCII digit


def _int_case(slot: list[str], bad: str) -> list[str]:
    args = [a.replace("{}", bad) for a in slot]
    if bad.startswith("-") and "{}" in slot and slot.index("{}") > 0 and slot[slot.index("{}") - 1].startswith("--"):
        i = slot.index("{}")  # --limit=-1: a negative value is not taken for an option
        args[i - 1:i + 1] = [f"{slot[i - 1]}={bad}"]
    return args


INTEGER_CASES = [_int_case(slot, bad) for slot in INT_SLOTS for bad in BAD_INTS
                 # a playbook --param int is any Python int in range (negative, Unicode digits): its own rules
                 if not (slot[0] == "playbook" and (bad.startswith("-") or not bad.isascii()))]


@pytest.mark.parametrize("args", INTEGER_CASES, ids=[" ".join(a)[:70] for a in INTEGER_CASES])
def test_integer_the_store_cannot_hold_is_a_usage_error_and_changes_nothing(cli, store, tmp_path, args):
    before = snapshot_all(store)
    err = assert_one_clean_error(cli(*args, "--json"), 2)
    assert len(err["message"]) < 300, err
    assert any(w in err["message"] for w in ("too large", "negative", "not a whole number", "expected int",
                                             "needs a number", "No such option")), err
    assert snapshot_all(store) == before


DURATION_CASES = [
    (["rollback", "--before", "999999999999d", "--reason", "t"], "--before"),
    (["purge-data", "--from", "999999999999d", "--reason", "t", "--yes"], "--from"),
    (["purge-data", "--to", "9999999999999999999w", "--reason", "t", "--yes"], "--to"),
    (["audit", "--since", "999999999999d"], "--since"),
    (["drift", "--from", "999999999999h"], "--from"),
    (["audit", "--since", "0001-01-01T00:00:00+14:00"], "--since"),
    (["audit", "--since", "1" * 5000 + "s"], "--since"),
    (["audit", "--since", "yesterday"], "--since"),
]


@pytest.mark.parametrize(("args", "flag"), DURATION_CASES, ids=[" ".join(a[:3])[:60] for a, _ in DURATION_CASES])
def test_time_out_of_range_is_a_usage_error_naming_the_flag(cli, store, args, flag):
    before = snapshot_all(store)
    err = assert_one_clean_error(cli(*args, "--json"), 2, flag)
    assert len(err["message"]) < 200, err
    assert snapshot_all(store) == before


@pytest.mark.parametrize("strategy", [f"version:{BIG}", f"version:{DIGITS}", "version:x", "version:-1"])
def test_fallback_strategy_version_beyond_the_store_is_a_usage_error(cli, store, strategy):
    before = snapshot_all(store)
    err = assert_one_clean_error(cli("fallback", "on", "--strategy", strategy, "--reason", "t", "--json"), 2, "--strategy")
    assert len(err["message"]) < 200
    assert snapshot_all(store) == before


def test_integer_at_the_store_limit_is_accepted_and_simply_not_found(cli):
    r = cli("versions", "show", str(2**63 - 1), "--json")
    assert r.code == 4, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------------------------- --where


def _long_in_list(n: int) -> str:
    return "x1 in (" + ",".join(str(i) for i in range(n)) + ")"


def test_where_limit_counts_what_was_typed_not_its_canonical_form(cli, store, tmp_path):
    ingest_json(cli("ingest", write_csv(tmp_path / "a.csv", good_rows(30)), "--json"))
    where = _long_in_list(999).replace("(", "(0.5,")  # 3,897 characters typed; 6,894 once 1 is written 1.0
    assert len(where) < 4096
    r = cli("purge-data", "--where", where, "--reason", "t", "--yes", "--json")
    assert r.code == 0, (r.stdout[-400:], r.stderr)
    doc = r.json()
    assert len(doc["spec"]["where"]) > 4096
    assert store.rows().num_rows == 29  # e0 (x1 = 0.5) hidden
    assert cli("status", "--json").code == 0  # reading the rule back does not refuse it


def test_where_longer_than_the_limit_is_refused_with_the_typed_length(cli, store):
    where = "x1 > 1 and " * 400 + "x1 > 1"  # 4,406 characters
    before = snapshot_all(store)
    err = assert_one_clean_error(cli("purge-data", "--where", where, "--reason", "t", "--yes", "--json"), 2)
    assert f"expression too long ({len(where)} characters, at most 4096)" in err["message"]
    assert snapshot_all(store) == before


# --------------------------------------------------------------------------------------------- memory


def test_a_60_mb_jsonl_line_is_quarantined_in_bounded_memory(workspace, cli_env, store, tmp_path):
    """Peak RSS of the real binary: a 60 MB line used to cost 12 times itself (720 MB); now ~150 MB,
    the interpreter and its libraries (about 7 s)."""
    path = tmp_path / "huge.jsonl"
    with path.open("w") as f:
        for i in range(10):
            f.write(json.dumps(example(i)) + "\n")
        f.write('{"example_id": "huge", "segment": "' + "b" * (60 << 20) + '"}\n')
    p, peak_kb = run_bin_peak(["ingest", str(path), "--json"], cwd=workspace, env=cli_env)
    assert p.code == 0, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["rows_read"], doc["rows_quarantined"]) == (11, 1)
    assert next(iter(doc["top_reasons"])).startswith("line longer than 9000000 bytes")
    assert peak_kb < 450_000, f"peak RSS {peak_kb / 1024:.0f} MB for a 60 MB line"
