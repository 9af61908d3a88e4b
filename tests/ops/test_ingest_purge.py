"""Ingest → read → purge → undo through the ops, on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifelong_cli.data import reader as rd
from lifelong_cli.data.schema import DataSchema
from lifelong_cli.data.segments import DataStore
from lifelong_cli.errors import BatchNotFoundError, ExpressionError, PreconditionError, UsageError
from lifelong_cli.ops.drift import drift
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.purge_data import blast_radius, purge_data, undo_purge
from lifelong_cli.ops.status import status
from lifelong_cli.store import batches, purge_rules

HEADER = ["example_id", "event_time", "label", "x1", "x2", "x3", "segment"]


def write_csv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def make_rows(start: int, n: int, *, day: int = 1, labelled: bool = True, shift: float = 0.0) -> list[list]:
    import random

    rnd = random.Random(start)
    return [[f"k{i}", f"2026-11-{day:02d}T{i % 24:02d}:00:00Z", (i % 2) if labelled else "",
             round(rnd.gauss(shift, 1), 4), round(rnd.gauss(0, 1), 4), "", "abc"[i % 3]] for i in range(start, start + n)]


def read(ctx, **kw):
    schema = DataSchema.from_settings(ctx.config.settings.data)
    with ctx.store.tx(write=False) as t:
        refs, rules = batches.for_reading(t, ctx.model), purge_rules.active(t, ctx.model)
    return rd.read_rows(DataStore(ctx.data_root), schema, refs, rules, **kw)


def refs_of(ctx, kinds=None):
    with ctx.store.tx(write=False) as t:
        return batches.for_reading(t, ctx.model, kinds)


def test_accepted_rows_are_readable_and_holdout_is_kept_apart(ctx, tmp_path):
    r = ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 500))))
    assert r.status == "accepted" and r.rows_accepted == 500
    train, held = read(ctx), read(ctx, holdout="only")
    assert (r.rows_trainable, r.rows_holdout) == (train.num_rows, held.num_rows)  # counted as train reads them
    assert train.num_rows + held.num_rows == 500
    assert 20 < held.num_rows < 90  # data.holdout_fraction 0.1, by key hash
    assert not set(train["example_id"].to_pylist()) & set(held["example_id"].to_pylist())


def test_reingesting_same_content_is_a_noop(ctx, tmp_path):
    p = write_csv(tmp_path / "a.csv", make_rows(0, 50))
    first = ingest(ctx, path=str(p))
    again = ingest(ctx, path=str(p))
    assert again.status == "duplicate" and again.batch == first.batch
    assert status(ctx).data["batches"] == 1


def test_late_labels_make_examples_trainable_at_their_sequence(ctx, tmp_path):
    ex = ingest(ctx, path=str(write_csv(tmp_path / "e.csv", make_rows(0, 100, labelled=False))))
    assert ex.rows_trainable == 0 and read(ctx, holdout="include").num_rows == 0
    lab = tmp_path / "l.csv"
    lab.write_text("example_id,label\n" + "".join(f"k{i},1\n" for i in range(40)) + "nokey,0\n")
    lr = ingest(ctx, path=str(lab), kind="labels")
    assert (lr.rows_trainable + lr.rows_holdout, lr.labels_waiting) == (40, 1)
    rows = read(ctx, holdout="include")
    assert rows.num_rows == 40
    assert set(rows[rd.TRAINABLE_SEQ].to_pylist()) == {lr.batch}
    assert read(ctx, holdout="include", seq_to=ex.batch).num_rows == 0


def test_purge_hides_rows_and_undo_restores_them(ctx, tmp_path):
    ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 200, day=1))))
    b2 = ingest(ctx, path=str(write_csv(tmp_path / "b.csv", make_rows(200, 200, day=5))), source="crm")
    before = read(ctx, holdout="include").num_rows
    dry = purge_data(ctx, batch=b2.batch, reason="flipped labels", dry_run=True)
    assert dry.rule is None and dry.rows_affected == 200
    assert read(ctx, holdout="include").num_rows == before
    r = purge_data(ctx, batch=b2.batch, reason="flipped labels")
    assert r.rows_affected == 200 and r.batches_affected == [b2.batch]
    rows = read(ctx, holdout="include")
    assert rows.num_rows == before - 200 and b2.batch not in set(rows[rd.BATCH].to_pylist())
    u = undo_purge(ctx, rule_id=r.rule, reason="false alarm")
    assert u.changed and read(ctx, holdout="include").num_rows == before
    assert not undo_purge(ctx, rule_id=r.rule).changed


@pytest.mark.parametrize("kw,expected", [
    ({"from_": "2026-11-05T00:00:00Z"}, 200),
    ({"to": "2026-11-05"}, 200),
    ({"source": "crm"}, 200),
    ({"where": "segment = 'a' and x1 > -100"}, None),
])
def test_each_condition_selects_the_right_rows(ctx, tmp_path, kw, expected):
    ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 200, day=1))))
    ingest(ctx, path=str(write_csv(tmp_path / "b.csv", make_rows(200, 200, day=5))), source="crm")
    r = purge_data(ctx, reason="t", **kw)
    if expected is None:
        expected = sum(1 for i in range(400) if "abc"[i % 3] == "a")
    assert r.rows_affected == expected
    assert read(ctx, holdout="include").num_rows == 400 - expected


def test_purge_errors_are_clean(ctx, tmp_path):
    ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 20))))
    with pytest.raises(UsageError):
        purge_data(ctx, reason="x")
    with pytest.raises(UsageError):
        purge_data(ctx, batch=1, reason="")
    with pytest.raises(BatchNotFoundError):
        purge_data(ctx, batch=99, reason="x")
    with pytest.raises(ExpressionError) as ei:
        purge_data(ctx, where="x1 > 1; DROP TABLE batches", reason="x")
    assert ei.value.position == 6


def test_hard_purge_rewrites_segment_and_cannot_be_undone(ctx, tmp_path):
    b = ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 100))))
    r = purge_data(ctx, where="segment = 'b'", reason="pii", hard=True)
    assert r.segments_rewritten == [b.batch]
    (ref,) = refs_of(ctx)
    seg = DataStore(ctx.data_root).read(ref.segment_path)
    assert "b" not in set(seg["segment"].to_pylist()) and seg.num_rows == 100 - r.rows_affected
    with pytest.raises(PreconditionError):
        undo_purge(ctx, rule_id=r.rule)


def test_blast_radius_follows_lineage_to_last_clean_version():
    versions = [
        {"id": 1, "parent_id": None, "seq_from": 1, "seq_to": 2},
        {"id": 2, "parent_id": 1, "seq_from": 3, "seq_to": 3},   # trained on the bad batch 3
        {"id": 3, "parent_id": 2, "seq_from": 4, "seq_to": 5},   # inherits it
        {"id": 4, "parent_id": 1, "seq_from": 4, "seq_to": 5},   # retrained from v1 after a rollback
    ]
    assert blast_radius(versions, {3}) == {"affected_versions": [2, 3], "last_clean_version": 4}
    assert blast_radius(versions, set()) == {"affected_versions": [], "last_clean_version": 4}


def test_drift_is_stored_with_the_batch_and_shown_in_status(ctx, tmp_path):
    ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 400))))
    b = ingest(ctx, path=str(write_csv(tmp_path / "b.csv", make_rows(400, 400, shift=5.0))))
    assert b.drift["drifted"] and "x1" in b.drift["drifted_features"]
    s = status(ctx)
    assert s.drift["batch"] == b.batch and s.drift["drifted"]
    d = drift(ctx, batch=b.batch)
    assert d.drifted and f"--batch {b.batch}" in d.hint


def test_purged_rows_leave_the_drift_reference(make_ctx, tmp_path):
    ctx = make_ctx(overrides={"drift.on_drift": "accept"})  # b drifts from a: accepted here, to be the reference
    a = ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 400, shift=5.0))))
    ingest(ctx, path=str(write_csv(tmp_path / "b.csv", make_rows(400, 400))))
    purge_data(ctx, batch=a.batch, reason="bad upstream")
    c = ingest(ctx, path=str(write_csv(tmp_path / "c.csv", make_rows(800, 400))))
    assert c.drift["n_reference"] == 400 and not c.drift["drifted"]


rule_st = st.one_of(
    st.builds(lambda v: {"where": f"x1 > {v}"}, st.floats(-2, 2).map(lambda f: round(f, 2))),
    st.builds(lambda s: {"where": f"segment = '{s}'"}, st.sampled_from("abc")),
    st.builds(lambda d: {"from_": f"2026-11-{d:02d}"}, st.integers(1, 4)),
    st.builds(lambda b: {"batch": b}, st.integers(1, 2)),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n1=st.integers(1, 60), n2=st.integers(1, 60), rule=rule_st)
def test_property_purge_never_leaks_and_undo_restores_exactly(make_ctx, tmp_path_factory, n1, n2, rule):
    ctx = make_ctx()
    tmp = tmp_path_factory.mktemp("prop")
    base = len(list((Path(ctx.data_root) / "segments").glob("**/*.parquet"))) if (Path(ctx.data_root) / "segments").exists() else 0
    # each example gets fresh keys so that earlier examples' batches do not interfere
    off = base * 1000 + 10_000
    ingest(ctx, path=str(write_csv(tmp / "a.csv", make_rows(off, n1, day=1))))
    ingest(ctx, path=str(write_csv(tmp / "b.csv", make_rows(off + 500, n2, day=3))))
    accepted = sorted(read(ctx, holdout="include")["example_id"].to_pylist())
    if "batch" in rule:
        ids = [r.id for r in refs_of(ctx)]
        rule = {"batch": ids[-2 + rule["batch"] - 1]}
    r = purge_data(ctx, reason="prop", **rule)
    after = read(ctx, holdout="include")
    spec = rd.PurgeRule(0, r.spec)
    schema = DataSchema.from_settings(ctx.config.settings.data)
    assert not pc.any(spec.mask(after, schema)).as_py() if after.num_rows else True
    undo_purge(ctx, rule_id=r.rule)
    assert sorted(read(ctx, holdout="include")["example_id"].to_pylist()) == accepted


def test_data_root_may_be_an_fsspec_url(workspace, store_url, tmp_path):
    import uuid

    from lifelong_cli.context import AppContext
    from tests.conftest import _clean_env

    root = f"memory://llctl-{uuid.uuid4().hex[:8]}/data"
    ctx = AppContext(cwd=workspace, env=_clean_env(store_url), actor="t", overrides={"data.root": root})
    try:
        b = ingest(ctx, path=str(write_csv(tmp_path / "a.csv", make_rows(0, 50))))
        assert b.status == "accepted"
        (ref,) = refs_of(ctx)
        assert ref.segment_path.startswith(root)
        assert read(ctx, holdout="include").num_rows == 50
        r = purge_data(ctx, where="segment = 'a'", reason="pii", hard=True)
        assert read(ctx, holdout="include").num_rows == 50 - r.rows_affected
    finally:
        ctx.close()


# -- two models in one store -----------------------------------------------------------------------

@pytest.fixture
def other(make_ctx, workspace):
    """A second model, "other", in the workspace's store (the workspace's own model is "demo")."""
    from lifelong_cli.ops.init import init

    assert init(make_ctx(overrides={"model.name": "other"}), directory=str(workspace)).model_added
    return make_ctx(overrides={"model.name": "other"})


def test_the_same_file_is_accepted_by_each_model_and_is_a_duplicate_only_within_one(ctx, other, tmp_path):
    p = write_csv(tmp_path / "a.csv", make_rows(0, 50, labelled=False))
    ra, rb = ingest(ctx, path=str(p)), ingest(other, path=str(p))
    assert (ra.model, ra.status, ra.rows_accepted, ra.rows_duplicate) == ("demo", "accepted", 50, 0)
    assert (rb.model, rb.status, rb.rows_accepted, rb.rows_duplicate) == ("other", "accepted", 50, 0)
    assert ra.batch != rb.batch
    assert ra.message.startswith(f"model 'demo': batch {ra.batch} accepted")
    assert rb.message.startswith(f"model 'other': batch {rb.batch} accepted")
    again = ingest(other, path=str(p))
    assert (again.status, again.batch, again.model) == ("duplicate", rb.batch, "other")

    # each model's segment is under its own data directory, and each reads only its own batch
    assert ctx.data_root != other.data_root
    ((a_ref,), (b_ref,)) = refs_of(ctx), refs_of(other)
    assert Path(a_ref.segment_path).is_relative_to(ctx.data_root)
    assert Path(b_ref.segment_path).is_relative_to(other.data_root)
    assert set(read(ctx, trainable_only=False, holdout="include")[rd.BATCH].to_pylist()) == {ra.batch}
    assert set(read(other, trainable_only=False, holdout="include")[rd.BATCH].to_pylist()) == {rb.batch}

    # labels join only to their own model's examples
    lab = tmp_path / "l.csv"
    lab.write_text("example_id,label\n" + "".join(f"k{i},1\n" for i in range(10)))
    lr = ingest(other, path=str(lab), kind="labels")
    assert (lr.rows_trainable + lr.rows_holdout, lr.labels_waiting) == (10, 0)
    assert read(other, holdout="include").num_rows == 10
    assert read(ctx, holdout="include").num_rows == 0
    assert ingest(ctx, path=str(lab), kind="labels").status == "accepted"  # not a duplicate of other's


def test_a_purge_rule_of_one_model_hides_nothing_of_the_other(ctx, other, tmp_path):
    from lifelong_cli.errors import PurgeRuleNotFoundError

    p = write_csv(tmp_path / "a.csv", make_rows(0, 60))
    ra, rb = ingest(ctx, path=str(p), source="crm"), ingest(other, path=str(p), source="crm")
    r = purge_data(ctx, source="crm", reason="crm broke for demo")
    assert (r.model, r.rows_affected, r.batches_affected) == ("demo", 60, [ra.batch])
    assert r.message.startswith(f"model 'demo': purge rule {r.rule}: hid 60 row(s)")
    assert read(ctx, holdout="include").num_rows == 0
    assert read(other, holdout="include").num_rows == 60
    with other.store.tx(write=False) as t:
        assert purge_rules.active(t, "other") == [] and purge_rules.get(t, "other", r.rule) is None

    # the other model's batch and rule are not found from this model (exit 4), and nothing changes
    with pytest.raises(BatchNotFoundError, match="model 'other' has no batch"):
        purge_data(other, batch=ra.batch, reason="x")
    with pytest.raises(PurgeRuleNotFoundError, match=f"model 'other' has no purge rule {r.rule}"):
        undo_purge(other, rule_id=r.rule, reason="x")
    assert read(ctx, holdout="include").num_rows == 0
    rb_rule = purge_data(other, batch=rb.batch, reason="its own batch")
    assert (rb_rule.model, rb_rule.rows_affected) == ("other", 60)
    u = undo_purge(ctx, rule_id=r.rule, reason="false alarm")
    assert (u.model, u.changed) == ("demo", True)
    assert (read(ctx, holdout="include").num_rows, read(other, holdout="include").num_rows) == (60, 0)


def test_purge_all_models_makes_one_rule_and_one_audit_entry_per_model(ctx, other, make_ctx, tmp_path):
    from lifelong_cli.ops.purge_data import purge_data_all_models
    from lifelong_cli.store import audit

    crm = write_csv(tmp_path / "crm.csv", make_rows(0, 40))
    ra = ingest(ctx, path=str(crm), source="crm")
    ingest(ctx, path=str(write_csv(tmp_path / "web.csv", make_rows(1000, 30))), source="web")
    rb = ingest(other, path=str(crm), source="crm")

    dry = purge_data_all_models(make_ctx(actor="oncall"), source="crm", reason="crm export broken", dry_run=True)
    assert dry.dry_run and [(m.model, m.rule, m.rows_affected) for m in dry.models] == [("demo", None, 40), ("other", None, 40)]
    assert read(ctx, holdout="include").num_rows == 70 and read(other, holdout="include").num_rows == 40

    res = purge_data_all_models(make_ctx(actor="oncall"), source="crm", reason="crm export broken")
    assert [(m.model, m.rows_affected, m.batches_affected) for m in res.models] == \
        [("demo", 40, [ra.batch]), ("other", 40, [rb.batch])]
    assert res.rows_affected == 80 and len({m.rule for m in res.models}) == 2
    assert all(m.message.startswith(f"model '{m.model}': purge rule {m.rule}: hid 40 row(s)") for m in res.models)
    assert read(ctx, holdout="include").num_rows == 30 and read(other, holdout="include").num_rows == 0
    with ctx.store.tx(write=False) as t:
        for m in res.models:
            (rule,) = purge_rules.active(t, m.model)
            assert (rule["id"], rule["spec"]) == (m.rule, {"source": "crm"})
            entries = [e for e in audit.query(t, model=m.model, verb="purge-data") if e["model"] == m.model]
            assert [(e["actor"], e["reason"], e["detail"]["rule"], e["args"]["all_models"]) for e in entries] == \
                [("oncall", "crm export broken", m.rule, True)]
        assert [e for e in audit.query(t, verb="purge-data") if e["model"] is None] == []

    # each model undoes its own rule
    assert undo_purge(other, rule_id=res.models[1].rule, reason="ok for other").changed
    assert read(other, holdout="include").num_rows == 40 and read(ctx, holdout="include").num_rows == 30
    with pytest.raises(UsageError, match="--source"):
        purge_data_all_models(ctx, source=None, reason="x")
    with pytest.raises(UsageError, match="--reason"):
        purge_data_all_models(ctx, source="crm", reason=" ")


def test_quarantine_drift_and_golden_sets_are_per_model(ctx, other, tmp_path):
    from lifelong_cli.ops.golden import golden_import
    from lifelong_cli.ops.quarantine import quarantine_list, quarantine_show

    bad = make_rows(0, 100)
    bad[3][3] = "not-a-number"
    ra = ingest(ctx, path=str(write_csv(tmp_path / "a.csv", bad)))
    assert ra.rows_quarantined == 1
    assert [b["batch"] for b in quarantine_list(ctx).batches] == [ra.batch]
    listed = quarantine_list(other)
    assert (listed.model, listed.batches) == ("other", [])
    with pytest.raises(BatchNotFoundError, match="model 'other' has no batch"):
        quarantine_show(other, batch=ra.batch)
    assert quarantine_show(ctx, batch=ra.batch).total == 1

    # the first batch of "other" has no drift reference, however many rows "demo" has
    ingest(ctx, path=str(write_csv(tmp_path / "b.csv", make_rows(400, 400))))
    rb = ingest(other, path=str(write_csv(tmp_path / "c.csv", make_rows(800, 400, shift=5.0))))
    assert rb.drift is None
    with pytest.raises(BatchNotFoundError, match="model 'other' has no batch"):
        drift(other, batch=ra.batch)
    from lifelong_cli.errors import NotFoundError
    with pytest.raises(NotFoundError, match="no batch of model 'other'"):
        drift(other)
    assert drift(ctx).model == "demo"

    g = write_csv(tmp_path / "g.csv", make_rows(5000, 30))
    ga, gb = golden_import(ctx, path=str(g)), golden_import(other, path=str(g))
    assert (ga.status, gb.status, ga.model, gb.model) == ("accepted", "accepted", "demo", "other")
    assert golden_import(other, path=str(g)).status == "duplicate"
    assert [r.id for r in refs_of(other, ["golden"])] == [gb.batch]


def test_an_accepted_twin_makes_the_batch_insert_do_nothing_within_its_model_only(ctx, other):
    now = ctx.now()
    row = {"kind": "examples", "source": "s", "content_hash": "h" * 64, "created_at": now, "created_by": "t"}
    with ctx.store.tx() as t:
        first = batches.add(t, "demo", status="accepted", **row)
        assert first is not None
        assert batches.add(t, "demo", status="accepted", **row) is None  # the unique index: nothing inserted
        assert batches.add(t, "demo", status="rejected", **row) is not None  # rejected batches are not unique
        assert batches.add(t, "other", status="accepted", **row) is not None  # another model's
        assert batches.add(t, "demo", status="accepted", **{**row, "kind": "labels"}) is not None
    with ctx.store.tx(write=False) as t:
        assert batches.accepted_twin(t, "demo", "examples", "h" * 64) == first
        assert [b["status"] for b in batches.every(t, "demo")] == ["accepted", "rejected", "accepted"]
        assert len(batches.every(t, "other")) == 1


def test_concurrent_ingests_of_one_file_accept_it_once_and_leave_no_segment_behind(make_ctx, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    p = write_csv(tmp_path / "a.csv", make_rows(0, 300))
    ctxs = [make_ctx() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: ingest(c, path=str(p)), ctxs))
    accepted = [r for r in results if r.status == "accepted"]
    assert len(accepted) == 1 and all(r.status == "duplicate" and r.batch == accepted[0].batch
                                      for r in results if r is not accepted[0])
    (ref,) = refs_of(ctxs[0])
    on_disk = list((Path(ctxs[0].data_root) / "segments").rglob("*.parquet"))
    assert [str(f) for f in on_disk] == [ref.segment_path]
    assert read(ctxs[0], holdout="include").num_rows == 300
