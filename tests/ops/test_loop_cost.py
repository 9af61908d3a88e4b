"""The loop's cost does not grow with history (issue 10, item 5), and stays exactly as correct: the
key index behind de-duplication and late labels, reads of what became new since a watermark, and
the snapshots train and validate read (the hold-out, the replay reservoir) answer what a full read
of every segment answers — across late labels, relabels, purge rules, hard purges, crashes and
stores without an index. On a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import random
import shutil
import string
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from lifelong_cli.data import reader as rd
from lifelong_cli.data.keyindex import KeyIndex, hashes
from lifelong_cli.data.schema import DataSchema
from lifelong_cli.data.segments import DataStore
from lifelong_cli.data.snapshots import Snapshots
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.purge_data import purge_data, undo_purge
from lifelong_cli.store import batches, purge_rules
from lifelong_cli.store.batches import BatchRef

# These streams relabel on purpose (reads must follow every delivery) and purge slices that come back
# (a category purged away reappears): taken as delivered, not held — what is read is under test here.
ACCEPT = {"data.on_label_conflict": "accept", "drift.on_drift": "accept", "data.label_audit.on_fail": "accept"}
FAST = {"training.epochs": "1", **ACCEPT}


@pytest.fixture
def ctx(make_ctx):
    return make_ctx(overrides=ACCEPT)


def uuid_keys(n: int, rnd: random.Random) -> list[str]:
    return [uuid.UUID(int=rnd.getrandbits(128), version=4).hex for _ in range(n)]


def string_keys(n: int, rnd: random.Random) -> list[str]:
    """Random strings of 1..40 characters, some non-ASCII, in no order."""
    alphabet = string.ascii_letters + string.digits + "-_.:/ éüß漢"
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 40))).strip() or "x")
    return sorted(out, key=lambda _: rnd.random())


def examples(keys: list[str], rnd: random.Random, *, labelled: bool = True, day: int = 1) -> pa.Table:
    n = len(keys)
    return pa.table({
        "example_id": keys,
        "event_time": [f"2026-11-{day:02d}T{i % 24:02d}:{i % 60:02d}:00Z" for i in range(n)],
        "label": [str(rnd.randint(0, 1)) if labelled else None for _ in range(n)],
        "x1": [round(rnd.gauss(0, 1), 4) for _ in range(n)],
        "x2": [round(rnd.gauss(0, 1), 4) for _ in range(n)],
        "x3": [None] * n,
        "segment": [rnd.choice("abc") for _ in range(n)],
    })


def labels(keys: list[str], rnd: random.Random) -> pa.Table:
    return pa.table({"example_id": keys, "event_time": ["2026-11-20T00:00:00Z"] * len(keys),
                     "label": [str(rnd.randint(0, 1)) for _ in keys]})


class Feed:
    def __init__(self, ctx, tmp_path: Path) -> None:
        self.ctx, self.dir, self.n = ctx, tmp_path, 0

    def __call__(self, table: pa.Table, kind: str = "examples"):
        self.n += 1
        path = self.dir / f"{kind}-{self.n}.csv"
        pcsv.write_csv(table, path)
        r = ingest(self.ctx, path=str(path), kind=kind)
        assert r.status == "accepted", r.message
        return r


def state(ctx):
    schema = DataSchema.from_settings(ctx.config.settings.data)
    with ctx.store.tx(write=False) as t:
        refs, rules = batches.for_reading(t, ctx.model), purge_rules.active(t, ctx.model)
    return DataStore(ctx.data_root), schema, refs, rules


def stored(ctx) -> pa.Table:
    data, schema, refs, _ = state(ctx)
    return rd.read_rows(data, schema, refs, [], trainable_only=False, holdout="include")


def rows_of(t: pa.Table, cols=("example_id", "label", rd.TRAINABLE_SEQ, rd.BATCH)) -> list[tuple]:
    return sorted(zip(*[t[c].to_pylist() for c in cols], strict=True))


# -- de-duplication through the key index -----------------------------------------------------------

@pytest.mark.parametrize("make_keys", [uuid_keys, string_keys], ids=["uuid4-hex", "random-strings"])
def test_duplicates_across_batches_are_caught_with_realistic_unsorted_keys(ctx, tmp_path, make_keys):
    rnd = random.Random(7)
    feed = Feed(ctx, tmp_path)
    first = make_keys(600, rnd)
    a = examples(first, rnd)
    assert feed(a).rows_accepted == 600

    again = rnd.sample(first, 150)  # stored keys, shuffled among new ones, plus repeats within the batch
    fresh = [k for k in make_keys(400, rnd) if k not in set(first)][:250]
    keys = again + fresh + fresh[:20]
    rnd.shuffle(keys)
    r = feed(examples(keys, rnd))
    assert (r.rows_accepted, r.rows_duplicate) == (250, 170)

    r = feed(examples(rnd.sample(first, 10) + rnd.sample(fresh, 10) + make_keys(5, rnd), rnd))
    assert (r.rows_accepted, r.rows_duplicate) == (5, 20)

    t = stored(ctx)
    assert t.num_rows == 855 and len(set(t["example_id"].to_pylist())) == 855
    kept = dict(zip(t["example_id"].to_pylist(), t["x1"].to_pylist(), strict=True))
    assert all(kept[k] == x for k, x in zip(first, a["x1"].to_pylist(), strict=True))  # the first row of a key stays


def test_a_store_without_an_index_or_with_a_broken_one_still_catches_every_duplicate(ctx, tmp_path, monkeypatch):
    rnd = random.Random(8)
    feed = Feed(ctx, tmp_path)
    k1, k2, k3, k4 = (uuid_keys(200, rnd) for _ in range(4))
    feed(examples(k1, rnd))
    index_dir = Path(ctx.data_root) / "keyindex"
    assert (index_dir / "examples" / "manifest.json").exists()

    shutil.rmtree(index_dir)  # a store from before the index: built from the segments on first use
    assert feed(examples(k1[:50] + k2, rnd)).rows_duplicate == 50
    assert (index_dir / "examples" / "manifest.json").exists()

    monkeypatch.setattr(KeyIndex, "add", lambda *a, **k: None)  # a crash after the batch's commit
    feed(examples(k3, rnd))
    monkeypatch.undo()
    assert feed(examples(k3[:30] + k2[:30] + k4, rnd)).rows_duplicate == 60

    for run in (index_dir / "examples").glob("run-*.npy"):  # torn or lost run files
        run.write_bytes(b"garbage")
    assert feed(examples(k1[-10:] + k4[-10:] + uuid_keys(10, rnd), rnd)).rows_duplicate == 20
    (index_dir / "examples" / "manifest.json").write_text("{not json")
    assert feed(examples(k1[:5] + k3[:5] + k4[:5] + uuid_keys(3, rnd), rnd)).rows_duplicate == 15
    assert len(set(stored(ctx)["example_id"].to_pylist())) == stored(ctx).num_rows


def test_a_hard_purge_frees_the_keys_it_removed_and_only_those(ctx, tmp_path):
    rnd = random.Random(9)
    feed = Feed(ctx, tmp_path)
    keys = uuid_keys(300, rnd)
    t = examples(keys, rnd)
    feed(t)
    gone = {k for k, s in zip(keys, t["segment"].to_pylist(), strict=True) if s == "a"}
    purge_data(ctx, where="segment = 'a'", reason="pii", hard=True)
    r = feed(examples(keys, rnd))
    assert (r.rows_accepted, r.rows_duplicate) == (len(gone), 300 - len(gone))
    assert sorted(stored(ctx)["example_id"].to_pylist()) == sorted(keys)


def test_labels_find_their_examples_and_examples_their_labels_through_the_index(ctx, tmp_path):
    rnd = random.Random(10)
    feed = Feed(ctx, tmp_path)
    ex = uuid_keys(300, rnd)
    r = feed(examples(ex[:200], rnd, labelled=False))
    assert r.rows_trainable == 0
    lab = rnd.sample(ex, 120) + uuid_keys(30, rnd)  # some for examples not stored yet, some unknown
    r = feed(labels(lab, rnd), kind="labels")
    in_first = len(set(lab) & set(ex[:200]))
    assert (r.rows_trainable + r.rows_holdout, r.labels_waiting) == (in_first, 150 - in_first)
    r = feed(examples(ex[200:], rnd, labelled=False))
    assert r.rows_trainable + r.rows_holdout == len(set(lab) & set(ex[200:]))


def test_the_index_keeps_few_runs_and_finds_every_stored_row(tmp_path):
    data = DataStore(str(tmp_path / "data"))
    rnd = random.Random(11)
    refs, stored_keys = [], {}
    index = KeyIndex(data, "k", "examples")
    for b in range(1, 41):
        keys = uuid_keys(rnd.randint(1, 300), rnd)
        path = data.new_path("segments/examples")
        w = data.writer(path, pa.schema([("k", pa.string())]))
        w.write(pa.table({"k": keys}))
        w.commit()
        refs.append(BatchRef(b, "examples", "s", path))
        if b % 7:  # every 7th batch is left to be indexed on first use
            index.add(b, path, hashes(pa.array(keys)))
        stored_keys.update({k: (b, i) for i, k in enumerate(keys)})
    probe = rnd.sample(list(stored_keys), 500) + uuid_keys(100, rnd)
    found = index.find(refs, pa.array(probe))
    got = {k: (b, p) for k, b, p in zip(found["k"].to_pylist(), found["_batch"].to_pylist(),
                                        found["_pos"].to_pylist(), strict=True)}
    assert got == {k: stored_keys[k] for k in probe if k in stored_keys}
    manifest = json.loads((tmp_path / "data" / "keyindex" / "examples" / "manifest.json").read_text())
    assert len(manifest["runs"]) <= 8
    assert {int(b) for r in manifest["runs"] for b in r["batches"]} == set(range(1, 41))
    assert len(list((tmp_path / "data" / "keyindex" / "examples").glob("run-*.npy"))) == len(manifest["runs"])


# -- what became new since a watermark ----------------------------------------------------------

def story(ctx, tmp_path, seed: int = 12):
    """Examples (some unlabelled) and labels batches that label new and old examples, relabel
    some, and name unknown keys; returns the keys by batch."""
    rnd = random.Random(seed)
    feed = Feed(ctx, tmp_path)
    k = [uuid_keys(150, rnd) for _ in range(4)]
    feed(examples(k[0], rnd))
    feed(examples(k[1], rnd, labelled=False))
    feed(labels(k[1][:100] + rnd.sample(k[0], 40) + uuid_keys(10, rnd), rnd), kind="labels")
    feed(examples(k[2], rnd, labelled=False))
    feed(labels(rnd.sample(k[1], 30) + k[2][:70], rnd), kind="labels")
    feed(examples(k[3], rnd))
    feed(labels(rnd.sample(k[0], 20) + rnd.sample(k[3], 20), rnd), kind="labels")
    return k


def test_read_new_is_read_rows_after_each_watermark(ctx, tmp_path):
    story(ctx, tmp_path)
    purge_data(ctx, where="x1 > 1.2", reason="outliers")
    data, schema, refs, rules = state(ctx)
    for after in [None, *[r.id for r in refs], refs[-1].id + 1]:
        got = rd.read_new(data, schema, refs, rules, after=after).rows
        want = rd.read_rows(data, schema, refs, rules, holdout="include",
                            seq_from=None if after is None else after + 1)
        assert rows_of(got) == rows_of(want), after
        assert got[rd.BATCH].to_pylist() == sorted(got[rd.BATCH].to_pylist())


def test_the_holdout_snapshot_and_the_golden_set_match_a_full_read(make_ctx, tmp_path):
    from lifelong_cli.ops.train import train
    from lifelong_cli.ops.validate import _golden

    ctx = make_ctx(overrides={**FAST, "data.holdout_fraction": "0.3"})
    rnd = random.Random(13)
    feed = Feed(ctx, tmp_path)
    k = story(ctx, tmp_path)
    assert train(ctx).status == "trained"
    feed(labels(rnd.sample(k[0], 30) + rnd.sample(k[2], 30), rnd), kind="labels")  # relabel hold-out rows too
    feed(examples(uuid_keys(100, rnd), rnd))
    r = train(ctx)
    assert r.status == "trained"
    rule = purge_data(ctx, where="segment = 'b'", reason="pii")

    data, schema, refs, rules = state(ctx)
    for upto in (r.seq_from - 1, r.seq_to):
        snap = Snapshots(data, schema).holdout(refs, upto)
        full = rd.read_rows(data, schema, refs, [], holdout="only", seq_to=upto)
        assert rows_of(snap) == rows_of(full)
    full_golden = rd.read_golden(data, schema, refs, rules, seq_to=r.seq_to)
    golden = _golden(ctx, schema, seq_to=r.seq_to)
    assert rows_of(golden, ("example_id", "label", rd.SLICE)) == rows_of(full_golden, ("example_id", "label", rd.SLICE))
    undo_purge(ctx, rule_id=rule.rule)
    data, schema, refs, rules = state(ctx)
    assert _golden(ctx, schema, seq_to=r.seq_to).num_rows == rd.read_golden(data, schema, refs, rules,
                                                                             seq_to=r.seq_to).num_rows


def test_the_reservoir_and_the_fallback_tally_match_a_full_read(make_ctx, tmp_path):
    from lifelong_cli.ops import train as train_op
    from lifelong_cli.registry.base import ArtifactRef, open_registry
    from lifelong_cli.store import versions
    from lifelong_cli.training.fallback import build_fallback
    from lifelong_cli.training.preprocess import Preprocessor

    ctx = make_ctx(overrides={**FAST, "training.replay.buffer_size": "120"})
    rnd = random.Random(14)
    feed = Feed(ctx, tmp_path)
    registry = open_registry(ctx)
    k = story(ctx, tmp_path)

    def trained_and_checked() -> dict:
        r = train_op.train(ctx)
        assert r.status == "trained"
        data, schema, refs, rules = state(ctx)
        with ctx.store.tx(write=False) as t:
            v = versions.require(t, ctx.model, r.version)
        # its fallback is the one its whole lineage gives, counted again from every segment
        doc = json.loads(registry.fetch(ArtifactRef.from_dict("fallback", v["artifacts"]["fallback"])))
        pre = Preprocessor.from_dict(json.loads(registry.fetch(ArtifactRef.from_dict("preprocess",
                                                                                     v["artifacts"]["preprocess"]))))
        lineage = rd.read_rows(data, schema, refs, rules, seq_to=v["seq_to"])
        want = build_fallback(lineage, schema.label, pre, ctx.config.settings.training.fallback_lookup_key)
        counts = pc.value_counts(lineage[schema.label])
        labels_n = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
        assert doc["tally"]["labels"] == labels_n, v["id"]
        assert labels_n[doc["majority"]] == labels_n[want["majority"]]
        assert set(doc["lookup"]["table"]) == set(want["lookup"]["table"])
        return v

    every = [trained_and_checked()]
    for step in range(3):
        feed(labels(rnd.sample(k[step], 25) + rnd.sample(k[3], 10), rnd), kind="labels")
        feed(examples(uuid_keys(80, rnd), rnd, labelled=step != 1))
        every.append(trained_and_checked())
    purge_data(ctx, where="segment = 'c'", reason="pii")
    feed(examples(uuid_keys(60, rnd), rnd))
    every.append(trained_and_checked())
    feed(labels(rnd.sample(k[1], 20), rnd), kind="labels")
    feed(examples(uuid_keys(60, rnd), rnd))
    every.append(trained_and_checked())

    data, schema, refs, rules = state(ctx)
    for v in every:  # each version's reservoir, as the next train reads it now
        buf = pq_keys(registry, v)
        fresh = rd.read_new(data, schema, refs, [], after=v["watermark"])
        via_snapshot = train_op._reservoir(data, schema, refs, rules, v, registry, fresh)
        full = rd.read_rows(data, schema, refs, rules, seq_to=v["watermark"])
        full = full.filter(pc.is_in(full["example_id"], value_set=buf))
        assert rows_of(via_snapshot) == rows_of(full), v["id"]
        assert via_snapshot[rd.BATCH].to_pylist() == sorted(via_snapshot[rd.BATCH].to_pylist())  # in batch order
    shutil.rmtree(Path(ctx.data_root) / "snapshots")  # without the snapshots: the same rows, read by key
    for v in every:
        fresh = rd.read_new(data, schema, refs, [], after=v["watermark"])
        full = rd.read_rows(data, schema, refs, rules, seq_to=v["watermark"])
        assert rows_of(train_op._reservoir(data, schema, refs, rules, v, registry, fresh)) == \
            rows_of(full.filter(pc.is_in(full["example_id"], value_set=pq_keys(registry, v))))


def pq_keys(registry, v) -> pa.Array:
    from lifelong_cli.ops.train import pq_read
    from lifelong_cli.registry.base import ArtifactRef

    return pq_read(registry.fetch(ArtifactRef.from_dict("replay", v["artifacts"]["replay"])))["example_id"]


def test_snapshots_are_not_trusted_after_a_hard_purge(make_ctx, tmp_path):
    from lifelong_cli.ops.train import train
    from lifelong_cli.ops.validate import _golden

    ctx = make_ctx(overrides={**FAST, "data.holdout_fraction": "0.3"})
    rnd = random.Random(15)
    feed = Feed(ctx, tmp_path)
    keys = uuid_keys(400, rnd)
    t = examples(keys, rnd)
    feed(t)
    r = train(ctx)
    data, schema, refs, _ = state(ctx)
    assert Snapshots(data, schema).holdout(refs, r.seq_to).num_rows > 0
    purge_data(ctx, where="segment = 'a'", reason="pii", hard=True)
    data, schema, refs, rules = state(ctx)
    from lifelong_cli.data.snapshots import AREA

    assert data.list_names(data.path(AREA)) == []  # no snapshot keeps a copy of the removed rows
    golden = _golden(ctx, schema, seq_to=r.seq_to)
    assert "a" not in set(golden["segment"].to_pylist())
    assert golden.num_rows == rd.read_golden(data, schema, refs, rules, seq_to=r.seq_to).num_rows
    feed(examples(uuid_keys(100, rnd), rnd))
    r2 = train(ctx)
    assert r2.status == "trained" and r2.rows_replay > 0
    gone = {k for k, s in zip(keys, t["segment"].to_pylist(), strict=True) if s == "a"}
    from lifelong_cli.registry.base import open_registry
    from lifelong_cli.store import versions

    with ctx.store.tx(write=False) as tx:
        v2 = versions.require(tx, ctx.model, r2.version)
    assert not gone & set(pq_keys(open_registry(ctx), v2).to_pylist())


def test_each_model_has_its_own_index(ctx, make_ctx, workspace, tmp_path):
    from lifelong_cli.ops.init import init

    assert init(make_ctx(overrides={"model.name": "other"}), directory=str(workspace)).model_added
    other = make_ctx(overrides={"model.name": "other"})
    rnd = random.Random(16)
    keys = uuid_keys(100, rnd)
    Feed(ctx, tmp_path)(examples(keys, rnd))
    (tmp_path / "o").mkdir()
    r = Feed(other, tmp_path / "o")(examples(keys[:50] + uuid_keys(10, rnd), rnd))
    assert (r.rows_accepted, r.rows_duplicate) == (60, 0)  # the first model's keys are not the other's
    assert Path(ctx.data_root) != Path(other.data_root)
    assert (Path(other.data_root) / "keyindex" / "examples" / "manifest.json").exists()
    r = Feed(ctx, tmp_path / "o")(examples(keys[:50] + uuid_keys(10, rnd), rnd))
    assert (r.rows_accepted, r.rows_duplicate) == (10, 50)


def test_hashes_are_stable_and_spread(tmp_path):
    keys = pa.array(uuid_keys(20_000, random.Random(17)))
    h = hashes(keys)
    assert h.dtype == np.uint64 and len(np.unique(h)) == 20_000
    assert np.array_equal(h, hashes(keys))


def test_the_drift_reference_is_the_newest_rows_of_a_full_read(make_ctx, tmp_path):
    ctx = make_ctx(overrides={"data.chunk_rows": "1000", **ACCEPT})  # several row groups a segment
    story(ctx, tmp_path)
    rnd = random.Random(18)
    (tmp_path / "more").mkdir()
    Feed(ctx, tmp_path / "more")(examples(uuid_keys(2500, rnd), rnd))
    purge_data(ctx, where="x2 < -1", reason="outliers")
    data, schema, refs, rules = state(ctx)
    full = rd.read_rows(data, schema, refs, rules, holdout="include")
    for n in (10, 900, 2600, 3100, 10_000):
        recent = rd.read_recent(data, schema, refs, rules, n)
        assert recent["example_id"].to_pylist() == full["example_id"].to_pylist()[-n:], n
        assert recent["label"].to_pylist() == full["label"].to_pylist()[-n:], n
