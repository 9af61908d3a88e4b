"""`llctl ingest` against a corpus of bad input, generated here in tmp_path (no binary fixtures).

For every case: the exact exit code, the one ``--json`` document, the quarantine reasons, a clean
one-line error on stderr (never a traceback), and — when an ingest fails or is rejected — no partial
batch: accepted rows unchanged, no new accepted batch, no temp files, no unreferenced segment."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from lifelong_cli.context import AppContext
from tests.helpers import CliResult, read_all_rows, run_bin, run_bin_peak, run_cli

HEADER = "example_id,event_time,label,x1,x2,x3,segment"
T0 = "2024-01-01T00:00:00Z"
MALFORMED = "malformed CSV row: expected 7 fields"
NON_FINITE = "non-finite value (NaN or Inf)"


# --------------------------------------------------------------------------------------------- helpers


def row(key: str, *, t: str = T0, label: str = "1", x1: str = "1.5", x2: str = "-2", x3: str = "",
        segment: str = "a") -> str:
    return ",".join([key, t, label, x1, x2, x3, segment])


def good_rows(n: int, prefix: str = "e", start: int = 0) -> list[str]:
    return [row(f"{prefix}{i}", label=str(i % 2), x1=f"{i}.5", x2=str(-i)) for i in range(start, start + n)]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def cli(workspace, cli_env):
    return lambda *args: run_cli([str(a) for a in args], cwd=workspace, env=cli_env)


class Store:
    """What the state store and the data root hold, read with the test's own context."""

    def __init__(self, workspace: Path, env: dict[str, str]) -> None:
        self.workspace, self.env = workspace, env

    def _ctx(self) -> AppContext:
        return AppContext(cwd=self.workspace, env=self.env, actor="tester")

    def batches(self) -> list[dict]:
        from lifelong_cli.store import batches

        ctx = self._ctx()
        try:
            with ctx.store.tx(write=False) as t:
                return batches.every(t, ctx.model)
        finally:
            ctx.close()

    def data_root(self) -> Path:
        """The model's data directory (the workspace's data root, below it the model's prefix)."""
        ctx = self._ctx()
        try:
            return Path(ctx.data_root)
        finally:
            ctx.close()

    def rows(self):
        """Every accepted example row, labelled or not, hold-out included (the one reader)."""
        return read_all_rows(self.workspace, self.env)

    def snapshot(self) -> dict:
        status = run_cli(["status", "--json"], cwd=self.workspace, env=self.env)
        assert status.code == 0, status.stderr
        bs = self.batches()
        return {"rows_accepted": status.json()["data"]["rows_accepted"],
                "accepted": [b["id"] for b in bs if b["status"] == "accepted"],
                "batches": [b["id"] for b in bs]}

    def assert_consistent(self) -> None:
        """No temp file anywhere under .llctl; every segment file belongs to a batch that names it."""
        llctl = self.workspace / ".llctl"
        assert not list(llctl.rglob("*.llctl-tmp")), list(llctl.rglob("*.llctl-tmp"))
        bs = self.batches()
        accepted_segments = {Path(b["segment_path"]).resolve() for b in bs if b["status"] == "accepted" and b["segment_path"]}
        quarantines = {Path(b["quarantine_path"]).resolve() for b in bs if b["quarantine_path"]}
        for f in (llctl / "data").rglob("segments/**/*.parquet"):
            assert f.resolve() in accepted_segments, f"orphan segment {f} (batches: {bs})"
        for f in (llctl / "data").rglob("quarantine/*.parquet"):
            assert f.resolve() in quarantines, f"orphan quarantine segment {f}"
        data = self.data_root().resolve()
        for b in bs:
            for p in (b["segment_path"], b["quarantine_path"]):
                assert p is None or Path(p).resolve().is_relative_to(data), f"{p} is not under the model's {data}"
            if b["status"] == "accepted":
                assert b["segment_path"] is None or Path(b["segment_path"]).is_file(), b
            else:
                assert b["segment_path"] is None, f"a {b['status']} batch names a segment: {b}"

    def assert_nothing_ingested(self, before: dict) -> None:
        after = self.snapshot()
        assert after["rows_accepted"] == before["rows_accepted"]
        assert after["accepted"] == before["accepted"], "a failed or rejected ingest left an accepted batch"
        self.assert_consistent()


@pytest.fixture
def store(workspace, cli_env) -> Store:
    return Store(workspace, cli_env)


def ingest_json(r: CliResult) -> dict:
    assert "Traceback" not in r.stderr, r.stderr
    assert "error:" not in r.stderr, r.stderr
    return r.json()  # exactly one JSON document on stdout


def assert_clean_error(r: CliResult, code: int, kind: str) -> dict:
    assert r.code == code, (r.code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    err = r.json()["error"]
    assert err["exit_code"] == code and err["kind"] == kind, err
    assert err["message"].isprintable(), f"control characters in the error message: {err['message']!r}"
    assert err["message"] in errors[0]
    return err


def quarantine(cli, batch: int) -> list[dict]:
    r = cli("quarantine", "show", batch, "--limit", 1000, "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["total"] == len(doc["rows"])
    return doc["rows"]


# --------------------------------------------------------------------------------------------- malformed CSV


def test_malformed_csv_rows_are_quarantined_with_the_field_counts(cli, store, tmp_path):
    rows = good_rows(20)
    rows[3] = row("e3") + ",EXTRA"  # too many fields
    rows[7] = "e7,2024-01-01T00:00:00Z,0"  # too few
    r = cli("ingest", write_csv(tmp_path / "mal.csv", rows), "--json")
    assert r.code == 0
    doc = ingest_json(r)
    assert (doc["status"], doc["rows_read"], doc["rows_accepted"], doc["rows_quarantined"], doc["rows_duplicate"]) == \
        ("accepted", 20, 18, 2, 0)
    assert doc["top_reasons"] == {f"{MALFORMED}, got 8": 1, f"{MALFORMED}, got 3": 1}
    q = quarantine(cli, doc["batch"])
    assert [(x["_reason"], x["_raw"]) for x in q] == [(f"{MALFORMED}, got 8", rows[3]), (f"{MALFORMED}, got 3", rows[7])]
    assert sorted(store.rows()["example_id"].to_pylist()) == sorted(f"e{i}" for i in range(20) if i not in (3, 7))
    store.assert_consistent()


def test_quarantined_rows_carry_their_input_row_number(cli, tmp_path):
    """`_row` is the data row of the input (1 = first data row), for unparseable rows and for rows
    that parsed but failed a check — also when an unparseable row came before them."""
    rows = good_rows(20)
    rows[3] = row("e3") + ",EXTRA"  # data row 4
    rows[9] = row("e9", x1="abc")  # data row 10
    rows[15] = row("e15", segment="zzz")  # data row 16
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "rows.csv", rows), "--json"))
    got = {x["_reason"].split(":")[0]: x["_row"] for x in quarantine(cli, doc["batch"])}
    assert got == {"malformed CSV row": 4, "x1": 10, "segment": 16}

    lines = [json.dumps({"example_id": f"j{i}", "event_time": T0, "label": "1", "x1": i, "x2": 1, "x3": None,
                         "segment": "b"}) for i in range(20)]
    lines[2] = "{not json"  # line 3
    lines[6] = json.dumps({"example_id": "j6", "event_time": T0, "label": "1", "x1": "abc", "x2": 1, "segment": "b"})
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    doc = ingest_json(cli("ingest", tmp_path / "rows.jsonl", "--json"))
    got = {x["_reason"].split(":")[0]: x["_row"] for x in quarantine(cli, doc["batch"])}
    assert got == {"invalid JSON": 3, "x1": 7}


def test_row_numbers_stay_right_across_read_blocks_and_chunks(cli, tmp_path):
    n = 250_000  # ~10 MB: several 4 MB read blocks, and several chunks of 1000+ rows
    rows = [f"e{i},{T0},0,1,2,,a" for i in range(n)]
    malformed, wrong = [5, 120_000, 200_001], [6, 119_999, 120_001, 240_000]
    for r in malformed:
        rows[r - 1] += ",EXTRA"
    for r in wrong:
        rows[r - 1] = f"e{r - 1},{T0},0,abc,2,,a"
    doc = ingest_json(cli("--set", "data.chunk_rows=1000", "ingest", write_csv(tmp_path / "long.csv", rows), "--json"))
    assert (doc["rows_read"], doc["rows_quarantined"]) == (n, 7)
    got = sorted((x["_row"], x["_reason"].split(":")[0]) for x in quarantine(cli, doc["batch"]))
    assert got == sorted([(r, "malformed CSV row") for r in malformed] + [(r, "x1") for r in wrong])


def test_too_many_malformed_csv_rows_reject_the_whole_batch(cli, store, tmp_path):
    rows = good_rows(10)
    for i in (1, 4, 8):
        rows[i] = rows[i] + ",1,2"
    before = store.snapshot()
    r = cli("ingest", write_csv(tmp_path / "broken.csv", rows), "--json")
    assert r.code == 3
    doc = ingest_json(r)
    assert doc["status"] == "rejected" and doc["rows_trainable"] == 0
    assert (doc["rows_read"], doc["rows_quarantined"]) == (10, 3)
    assert doc["bad_fraction"] == pytest.approx(0.3) and doc["max_bad_fraction"] == 0.2
    assert [x["_reason"] for x in quarantine(cli, doc["batch"])] == [f"{MALFORMED}, got 9"] * 3
    store.assert_nothing_ingested(before)
    (b,) = store.batches()
    assert b["status"] == "rejected" and b["segment_path"] is None
    assert store.rows().num_rows == 0
    status = cli("status", "--json").json()["data"]
    assert (status["batches"], status["batches_rejected"]) == (0, 1)


# --------------------------------------------------------------------------------------------- bad values


def test_text_in_a_float_column_is_quarantined_as_not_a_number(cli, store, tmp_path):
    rows = good_rows(10)
    rows[2] = row("e2", x1="abc")
    rows[5] = row("e5", x3="1;5")  # "1;5" in the nullable float
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "types.csv", rows), "--json"))
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 8, 2)
    q = quarantine(cli, doc["batch"])
    assert [(x["example_id"], x["_reason"], x["x1"], x["x3"]) for x in q] == [
        ("e2", "x1: not a number", "abc", None), ("e5", "x3: not a number", "1.5", "1;5")]
    store.assert_consistent()


def test_nan_and_infinities_are_quarantined_as_non_finite(cli, store, tmp_path):
    rows = good_rows(30)
    bad = {1: {"x1": "NaN"}, 2: {"x2": "+Inf"}, 3: {"x1": "-Inf"}, 4: {"x3": "nan"}, 5: {"x2": "-infinity"}}
    for i, kw in bad.items():
        rows[i] = row(f"e{i}", **kw)
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "nonfinite.csv", rows), "--json"))
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 25, 5)
    q = quarantine(cli, doc["batch"])
    assert {x["example_id"]: x["_reason"] for x in q} == {
        f"e{i}": f"{next(iter(kw))}: {NON_FINITE}" for i, kw in bad.items()}
    t = store.rows()
    assert t.num_rows == 25
    import pyarrow.compute as pc

    for c in ("x1", "x2"):
        assert pc.all(pc.is_finite(t[c])).as_py()


def test_values_out_of_range_are_quarantined_above_max_and_below_min(cli, store, tmp_path):
    rows = good_rows(20)
    rows[1] = row("e1", x1="1000.5")
    rows[2] = row("e2", x2="-1000.01")
    rows[3] = row("e3", x1="1e6")
    rows[4] = row("e4", x1="1000", x2="-1000")  # the bounds themselves are allowed
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "range.csv", rows), "--json"))
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 17, 3)
    assert {x["example_id"]: x["_reason"] for x in quarantine(cli, doc["batch"])} == {
        "e1": "x1: above max 1000", "e2": "x2: below min -1000", "e3": "x1: above max 1000"}
    assert "e4" in store.rows()["example_id"].to_pylist()


def test_value_not_in_the_allowed_categories_is_quarantined(cli, store, tmp_path):
    rows = good_rows(10)
    rows[6] = row("e6", segment="zzz")
    rows[7] = row("e7", segment="A")  # categories are case-sensitive
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "cat.csv", rows), "--json"))
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 8, 2)
    assert [(x["example_id"], x["segment"], x["_reason"]) for x in quarantine(cli, doc["batch"])] == [
        ("e6", "zzz", "segment: not one of the allowed categories"),
        ("e7", "A", "segment: not one of the allowed categories")]
    store.assert_consistent()


def test_unparseable_event_time_is_quarantined(cli, store, tmp_path):
    rows = good_rows(20)
    rows[1] = row("e1", t="yesterday")
    rows[2] = row("e2", t="2024-13-45T00:00:00Z")  # looks like ISO-8601, is no date
    rows[3] = row("e3", t="")
    rows[4] = row("e4", t="1704067200")  # epoch seconds are fine
    rows[5] = row("e5", t="2024-01-02")  # a date alone is midnight UTC
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "time.csv", rows), "--json"))
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 17, 3)
    assert {x["example_id"]: x["_reason"] for x in quarantine(cli, doc["batch"])} == {
        "e1": "event_time: not a time (ISO-8601 or epoch seconds)",
        "e2": "event_time: not a valid date/time",
        "e3": "event_time: missing event time"}
    assert doc["event_time_min"] == "2024-01-01T00:00:00Z" and doc["event_time_max"] == "2024-01-02T00:00:00Z"


# --------------------------------------------------------------------------------------------- columns


def test_missing_required_column_is_exit_2_naming_it(cli, store, tmp_path):
    header = "example_id,event_time,label,x1,x3,segment"
    rows = [",".join([f"e{i}", T0, "1", "1", "", "a"]) for i in range(5)]
    before = store.snapshot()
    r = cli("ingest", write_csv(tmp_path / "nox2.csv", rows, header=header), "--json")
    err = assert_clean_error(r, 2, "usage")
    assert "missing required column(s) x2" in err["message"] and "nothing was ingested" in err["hint"]
    store.assert_nothing_ingested(before)
    assert store.batches() == []


def test_extra_columns_are_ignored_and_reported(cli, store, tmp_path):
    rows = [r + ",whatever,42" for r in good_rows(5)]
    r = cli("ingest", write_csv(tmp_path / "extra.csv", rows, header=HEADER + ",comment,zz_score"), "--json")
    assert r.code == 0
    doc = ingest_json(r)
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 5, 0)
    assert doc["ignored_columns"] == ["comment", "zz_score"]
    t = store.rows()
    assert "comment" not in t.column_names and t.num_rows == 5
    store.assert_consistent()


# --------------------------------------------------------------------------------------------- not data at all


def test_empty_file_is_exit_2(cli, store, tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", tmp_path / "empty.csv", "--json"), 2, "usage")
    assert "empty input" in err["message"]
    store.assert_nothing_ingested(before)
    assert store.batches() == []


def test_header_only_file_is_exit_2_no_data_rows(cli, store, tmp_path):
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", write_csv(tmp_path / "header.csv", []), "--json"), 2, "usage")
    assert "no data rows" in err["message"]
    store.assert_nothing_ingested(before)
    assert store.batches() == []


def _garbage(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    return b"\x00\xff\xfe\x00" + bytes(rnd.randrange(256) for _ in range(n)) + b"\x00\n\x00\x81"


@pytest.mark.parametrize("where", ["whole-file", "after-a-valid-header", "after-good-rows"])
def test_binary_garbage_is_a_clean_exit_2(cli, store, tmp_path, where):
    head = {"whole-file": b"", "after-a-valid-header": (HEADER + "\n").encode(),
            "after-good-rows": ("\n".join([HEADER, *good_rows(5)]) + "\n").encode()}[where]
    (tmp_path / "garbage.csv").write_bytes(head + _garbage(20_000, seed=7))
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", tmp_path / "garbage.csv", "--json"), 2, "usage")
    assert "UTF-8" in err["message"] or "binary" in err["message"]
    store.assert_nothing_ingested(before)
    assert store.batches() == []


def test_nul_bytes_only_is_a_clean_exit_2(cli, store, tmp_path):
    (tmp_path / "zeros.csv").write_bytes(b"\x00" * 4096)
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", tmp_path / "zeros.csv", "--json"), 2, "usage")
    assert "binary" in err["message"]
    store.assert_nothing_ingested(before)


@pytest.mark.parametrize("where", ["in-a-good-row", "in-a-malformed-row", "in-the-header"])
def test_latin1_bytes_are_exit_2_not_utf8(cli, store, tmp_path, where):
    rows = good_rows(6)
    header = HEADER
    if where == "in-a-good-row":
        rows[3] = row("e3", label="caf\xe9")
    elif where == "in-a-malformed-row":
        rows[3] = row("e3", label="caf\xe9") + ",1"
    else:
        header = HEADER.replace("segment", "s\xe9gment") + ",segment"
        rows = [r + ",a" for r in rows]
    (tmp_path / "latin1.csv").write_bytes("\n".join([header, *rows]).encode("latin-1") + b"\n")
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", tmp_path / "latin1.csv", "--json"), 2, "usage")
    assert "UTF-8" in err["message"] and "UTF-8" in err["hint"]
    store.assert_nothing_ingested(before)
    assert store.batches() == []


# --------------------------------------------------------------------------------------------- huge fields


def test_two_megabyte_field_is_quarantined_as_too_long(cli, store, tmp_path):
    rows = good_rows(10)
    rows[4] = row("e4", segment="b" * (2 << 20))
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "wide.csv", rows), "--json"))
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 9, 1)
    assert doc["top_reasons"] == {"segment: field longer than 1000000 bytes": 1}
    store.assert_consistent()


def test_ten_megabyte_field_is_a_clean_error_in_bounded_time_and_memory(tmp_path, workspace, cli_env, store):
    """A field longer than pyarrow's read block cannot be parsed as a row at all: the code refuses the
    file (exit 2, names the problem) rather than quarantining the row. Run via the real binary to
    measure its peak memory."""
    rows = good_rows(10)
    rows[4] = row("e4", x3="9" * (10 << 20))
    path = write_csv(tmp_path / "huge.csv", rows)
    before = store.snapshot()
    t = time.monotonic()
    r, peak_kb = run_bin_peak(["ingest", str(path), "--json"], cwd=workspace, env=cli_env, timeout=60)
    elapsed = time.monotonic() - t
    err = assert_clean_error(r, 2, "usage")
    assert "longer than" in err["message"], err
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert peak_kb < 1_000_000, f"peak RSS {peak_kb / 1024:.0f} MB"
    store.assert_nothing_ingested(before)


# --------------------------------------------------------------------------------------------- duplicates


def test_duplicate_keys_within_a_file_are_counted_and_the_first_is_kept(cli, store, tmp_path):
    rows = good_rows(10)
    rows.insert(5, row("e2", x1="777"))
    rows.append(row("e2", x1="888"))
    rows.append(row("e9", x1="999"))
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "dups.csv", rows), "--json"))
    assert (doc["status"], doc["rows_read"], doc["rows_accepted"], doc["rows_duplicate"], doc["rows_quarantined"]) == \
        ("accepted", 13, 10, 3, 0)
    t = store.rows()
    values = dict(zip(t["example_id"].to_pylist(), t["x1"].to_pylist(), strict=True))
    assert len(values) == t.num_rows == 10
    assert values["e2"] == 2.5 and values["e9"] == 9.5


def test_duplicate_keys_across_two_files_are_counted_and_the_first_is_kept(cli, store, tmp_path):
    first = ingest_json(cli("ingest", write_csv(tmp_path / "a.csv", good_rows(10)), "--json"))
    second_rows = [row(f"e{i}", x1="555") for i in range(5, 15)]
    second = ingest_json(cli("ingest", write_csv(tmp_path / "b.csv", second_rows), "--json"))
    assert (first["rows_accepted"], first["rows_duplicate"]) == (10, 0)
    assert (second["status"], second["rows_read"], second["rows_accepted"], second["rows_duplicate"]) == \
        ("accepted", 10, 5, 5)
    t = store.rows()
    values = dict(zip(t["example_id"].to_pylist(), t["x1"].to_pylist(), strict=True))
    assert t.num_rows == 15
    assert values["e5"] == 5.5 and values["e14"] == 555.0
    assert cli("status", "--json").json()["data"]["rows_accepted"] == 15
    store.assert_consistent()


def test_file_of_only_known_keys_leaves_no_temp_file_and_later_ingests_work(cli, store, tmp_path):
    ingest_json(cli("ingest", write_csv(tmp_path / "a.csv", good_rows(10)), "--json"))
    r = cli("ingest", write_csv(tmp_path / "again.csv", [row(f"e{i}", x1="1") for i in range(3)]), "--json")
    assert r.code == 0
    doc = ingest_json(r)
    assert (doc["status"], doc["rows_read"], doc["rows_accepted"], doc["rows_duplicate"]) == ("accepted", 3, 0, 3)
    store.assert_consistent()
    r = cli("ingest", write_csv(tmp_path / "new.csv", good_rows(4, prefix="n")), "--json")
    assert r.code == 0, r.stdout + r.stderr
    assert ingest_json(r)["rows_accepted"] == 4
    assert store.rows().num_rows == 14
    store.assert_consistent()


def test_reingesting_identical_content_is_a_noop(cli, store, tmp_path):
    path = write_csv(tmp_path / "same.csv", good_rows(8))
    first = ingest_json(cli("ingest", path, "--json"))
    before = store.snapshot()
    files = sorted((store.workspace / ".llctl" / "data").rglob("*"))
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(path.read_bytes())
    for p in (path, copy):
        r = cli("ingest", p, "--source", "other", "--json")
        assert r.code == 0
        doc = ingest_json(r)
        assert (doc["status"], doc["batch"], doc["rows_accepted"]) == ("duplicate", first["batch"], 0)
        assert "already ingested as batch" in doc["message"]
    assert store.snapshot() == before
    assert sorted((store.workspace / ".llctl" / "data").rglob("*")) == files
    store.assert_consistent()


def test_reingesting_a_rejected_file_is_evaluated_again(cli, store, tmp_path):
    """A rejected batch is no reason to refuse the same file later: with a raised limit it goes in."""
    rows = good_rows(10)
    for i in (1, 2, 3):
        rows[i] = row(f"e{i}", x1="NaN")
    path = write_csv(tmp_path / "bad.csv", rows)
    assert cli("ingest", path, "--json").code == 3
    before = store.snapshot()
    r = cli("ingest", path, "--json")
    assert r.code == 3, r.stdout + r.stderr
    assert ingest_json(r)["status"] == "rejected"
    store.assert_nothing_ingested(before)
    r = cli("--set", "data.max_bad_fraction=0.5", "ingest", path, "--json")
    assert r.code == 0, r.stdout + r.stderr
    doc = ingest_json(r)
    assert (doc["status"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 7, 3)
    assert store.rows().num_rows == 7
    store.assert_consistent()


# --------------------------------------------------------------------------------------------- labels


def test_labels_for_unknown_keys_are_accepted_and_wait_for_their_examples(cli, store, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("example_id,label,event_time\nzz1,1,2024-01-01\nzz2,0,2024-01-01\nzz3,1,2024-01-02\n")
    r = cli("ingest", path, "--kind", "labels", "--json")
    assert r.code == 0
    doc = ingest_json(r)
    assert (doc["status"], doc["kind"], doc["rows_accepted"], doc["rows_trainable"], doc["labels_waiting"]) == \
        ("accepted", "labels", 3, 0, 3)
    assert store.rows().num_rows == 0
    store.assert_consistent()


# --------------------------------------------------------------------------------------------- other formats


def test_jsonl_invalid_line_and_non_object_line_are_quarantined(cli, store, tmp_path):
    lines = [json.dumps({"example_id": f"j{i}", "event_time": T0, "label": "0", "x1": i, "x2": 0.5, "x3": None,
                         "segment": "c"}) for i in range(20)]
    lines[3] = '{"example_id": "j3", "event_time": '
    lines[5] = "[1, 2, 3]"
    lines[8] = '"just a string"'
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    doc = ingest_json(cli("ingest", tmp_path / "in.jsonl", "--json"))
    assert (doc["status"], doc["rows_read"], doc["rows_accepted"], doc["rows_quarantined"]) == ("accepted", 20, 17, 3)
    q = quarantine(cli, doc["batch"])
    assert [x["_row"] for x in q] == [4, 6, 9]
    assert q[0]["_reason"].startswith("invalid JSON: ") and q[0]["_raw"].startswith('{"example_id": "j3"')
    assert [x["_reason"] for x in q[1:]] == ["not a JSON object"] * 2
    assert q[1]["_raw"].strip() == "[1, 2, 3]"
    assert store.rows().num_rows == 17


def test_parquet_with_a_wrong_typed_column_is_rejected(cli, store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 10
    t = pa.table({"example_id": [f"p{i}" for i in range(n)], "event_time": pa.array([1704067200 + i for i in range(n)]),
                  "label": ["1"] * n, "x1": [float(i) for i in range(n)],
                  "x2": pa.array([i % 2 == 0 for i in range(n)]),  # bool where a float belongs
                  "x3": pa.nulls(n, pa.float64()), "segment": ["a"] * n})
    pq.write_table(t, tmp_path / "typed.parquet")
    before = store.snapshot()
    r = cli("ingest", tmp_path / "typed.parquet", "--json")
    assert r.code == 3
    doc = ingest_json(r)
    assert (doc["status"], doc["rows_read"], doc["rows_quarantined"], doc["rows_trainable"]) == ("rejected", n, n, 0)
    assert doc["top_reasons"] == {"x2: not a number": n}
    assert {x["x2"] for x in quarantine(cli, doc["batch"])} == {"true", "false"}
    store.assert_nothing_ingested(before)


def test_parquet_that_is_not_parquet_is_exit_2(cli, store, tmp_path):
    (tmp_path / "fake.parquet").write_text(HEADER + "\n" + "\n".join(good_rows(3)) + "\n")
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", tmp_path / "fake.parquet", "--json"), 2, "usage")
    assert "not a readable Parquet file" in err["message"]
    store.assert_nothing_ingested(before)


def test_stdin_csv_with_the_real_binary(workspace, cli_env, store):
    rows = good_rows(12)
    rows[3] = row("e3", x2="oops")
    text = "\n".join([HEADER, *rows]) + "\n"
    r = run_bin(["ingest", "-", "--format", "csv", "--source", "pipe", "--json"], cwd=workspace, env=cli_env, stdin=text)
    assert r.code == 0, r.stderr
    doc = ingest_json(r)
    assert (doc["status"], doc["input"], doc["source"], doc["rows_read"], doc["rows_accepted"], doc["rows_quarantined"]) == \
        ("accepted", "-", "pipe", 12, 11, 1)
    assert [x["_reason"] for x in quarantine(lambda *a: run_cli([str(x) for x in a], cwd=workspace, env=cli_env),
                                             doc["batch"])] == ["x2: not a number"]
    again = run_bin(["ingest", "-", "--json"], cwd=workspace, env=cli_env, stdin=text)
    assert again.code == 0 and json.loads(again.stdout)["status"] == "duplicate"
    assert not [p for p in (workspace / ".llctl").rglob("*") if p.is_file() and "stdin" in p.name], "stdin spool left behind"
    store.assert_consistent()


# --------------------------------------------------------------------------------------------- arguments


def test_sql_injection_in_source_is_stored_verbatim(cli, store, tmp_path):
    evil = "x'; DROP TABLE batches;--"
    rows = good_rows(10)
    rows[0] = row("e0", x1="abc")  # a quarantined row, so `quarantine list` shows the batch
    doc = ingest_json(cli("ingest", write_csv(tmp_path / "a.csv", rows), "--source", evil, "--json"))
    assert (doc["status"], doc["source"]) == ("accepted", evil)
    (b,) = store.batches()
    assert b["source"] == evil
    listed = cli("quarantine", "list", "--json")
    assert listed.code == 0 and [x["source"] for x in listed.json()["batches"]] == [evil]
    audit = cli("audit", "--json", "--verb", "ingest")
    assert audit.code == 0 and evil in audit.stdout
    r = cli("ingest", write_csv(tmp_path / "b.csv", good_rows(3, prefix="n")), "--source", '"; DELETE FROM audit_log; --',
            "--json")
    assert r.code == 0 and ingest_json(r)["rows_accepted"] == 3
    assert [x["source"] for x in store.batches()] == [evil, '"; DELETE FROM audit_log; --']
    assert cli("status", "--json").json()["data"]["rows_accepted"] == 12
    store.assert_consistent()


@pytest.mark.parametrize(("flag", "value"), [("--kind", "example"), ("--format", "xlsx")])
def test_unknown_kind_or_format_is_exit_2(cli, store, tmp_path, flag, value):
    path = write_csv(tmp_path / "ok.csv", good_rows(3))
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", path, flag, value, "--json"), 2, "usage")
    assert f"{flag} {value!r} is not one of" in err["message"]
    store.assert_nothing_ingested(before)
    assert store.batches() == []


def test_nonexistent_path_is_exit_4(cli, store, tmp_path):
    before = store.snapshot()
    err = assert_clean_error(cli("ingest", tmp_path / "nope" / "missing.csv", "--json"), 4, "not_found")
    assert "missing.csv does not exist" in err["message"]
    store.assert_nothing_ingested(before)
    assert store.batches() == []
