"""train and versions through the ops, on a real store (SQLite and PostgreSQL): the data range of
each version, refusals, NaN guard, artifacts and their checksums, ONNX parity, preprocessing
fitted without the hold-out, and the rollback → purge → resume → retrain story."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from lifelong_cli.data import reader as rd
from lifelong_cli.data.schema import DataSchema
from lifelong_cli.data.segments import DataStore
from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.errors import CheckFailedError, LeaseHeldError, TrainingHaltedError
from lifelong_cli.ops.ingest import _holdout, ingest
from lifelong_cli.ops.purge_data import purge_data
from lifelong_cli.ops.resume import resume
from lifelong_cli.ops.stop_training import stop_training
from lifelong_cli.ops.train import _config_hash, train
from lifelong_cli.ops.versions import version_show, versions
from lifelong_cli.store import batches, control, deployment, purge_rules
from lifelong_cli.store import versions as store_versions

# One epoch keeps these fast; broken batches must reach training here (what a purge then undoes is under
# test), so ingest takes them as delivered instead of holding them.
FAST = {"training.epochs": "1", "drift.on_drift": "accept", "data.label_audit.on_fail": "accept"}
ARTIFACTS = {"state_dict", "optimizer", "onnx", "preprocess", "replay", "fallback"}


@pytest.fixture
def tctx(make_ctx):
    """A context whose training runs one epoch, so the tests stay fast."""
    return make_ctx(overrides=dict(FAST))


def add_batch(ctx, tmp_path: Path, n: int, *, start: int = 0, day: int = 1, seed: int = 0, broken: bool = False,
              table: pa.Table | None = None):
    """Write a synthetic batch as CSV and ingest it; returns (IngestResult, the table written)."""
    t = table if table is not None else batch_table(start, n, day=day, seed=seed, broken=broken)
    path = tmp_path / f"batch-{start}-{seed}.csv"
    pcsv.write_csv(t, path)
    r = ingest(ctx, path=str(path))
    assert r.status == "accepted", r.message
    return r, t


def holdout_keys(ctx, keys: list[str]) -> set[str]:
    flags = _holdout(pa.array(keys, pa.string()), ctx.config.settings.data.holdout_fraction).to_pylist()
    return {k for k, h in zip(keys, flags, strict=True) if h}


def n_trainable(ctx, table: pa.Table) -> int:
    keys = table["example_id"].to_pylist()
    return len(keys) - len(holdout_keys(ctx, keys))


def load_version(ctx, version: int) -> dict:
    with ctx.store.tx(write=False) as t:
        return store_versions.require(t, ctx.model, version)


def n_versions(ctx) -> int:
    with ctx.store.tx(write=False) as t:
        return store_versions.count(t, ctx.model)


def lease(ctx) -> control.ControlState:
    with ctx.store.tx(write=False) as t:
        return control.get(t, ctx.model)


def head(ctx) -> int | None:
    with ctx.store.tx(write=False) as t:
        return deployment.get(t, ctx.model)["training_head"]


def artifact_bytes(version: dict, name: str) -> bytes:
    return Path(version["artifacts"][name]["uri"]).read_bytes()


def torch_load(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def registry_files(ctx) -> list[Path]:
    root = Path(ctx.registry_root)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# -- the data range of each version --------------------------------------------------------------

def test_first_train_is_from_scratch_the_next_from_v1_on_only_the_new_batch_then_nothing_new(tctx, tmp_path):
    empty = train(tctx)
    assert (empty.status, empty.version) == ("nothing-new", None) and n_versions(tctx) == 0

    b1, t1 = add_batch(tctx, tmp_path, 600, start=0, day=1, seed=1)
    r1 = train(tctx)
    assert (r1.status, r1.version, r1.parent) == ("trained", 1, None)
    assert (r1.seq_from, r1.seq_to, r1.rows_new) == (b1.batch, b1.batch, n_trainable(tctx, t1))
    assert r1.rows_replay == 0 and "scratch" in r1.message
    v1 = load_version(tctx, 1)
    assert v1["parent_id"] is None and v1["lineage"]["parent"] is None and v1["watermark"] == b1.batch

    b2, t2 = add_batch(tctx, tmp_path, 400, start=10_000, day=2, seed=2)
    r2 = train(tctx)
    assert (r2.status, r2.version, r2.parent) == ("trained", 2, 1)
    assert (r2.seq_from, r2.seq_to) == (b2.batch, b2.batch)
    assert r2.rows_new == n_trainable(tctx, t2) < n_trainable(tctx, t1) + n_trainable(tctx, t2)
    assert r2.rows_replay == v1["metrics"]["replay_buffer"] > 0  # the default strategy replays v1's buffer
    v2 = load_version(tctx, 2)
    assert v2["parent_id"] == 1 and v2["lineage"]["parent"] == 1
    assert (v2["seq_from"], v2["seq_to"], v2["rows_trained"]) == (b2.batch, b2.batch, r2.rows_new)
    assert v2["watermark"] == b2.batch > v1["watermark"]
    assert v2["metrics"]["rows_seen"] == r1.rows_new + r2.rows_new
    assert head(tctx) == 2

    r3 = train(tctx)
    assert (r3.status, r3.version, r3.parent, r3.rows_new) == ("nothing-new", None, 2, 0)
    assert "v2" in r3.message
    assert n_versions(tctx) == 2 and head(tctx) == 2
    assert lease(tctx).lease_holder is None


def test_dry_run_writes_no_version_and_leaves_the_lease_free(tctx, tmp_path):
    b1, t1 = add_batch(tctx, tmp_path, 300, seed=1)
    r = train(tctx, dry_run=True)
    assert (r.status, r.version, r.parent) == ("dry-run", None, None)
    assert (r.seq_from, r.seq_to, r.rows_new) == (b1.batch, b1.batch, n_trainable(tctx, t1))
    assert n_versions(tctx) == 0 and head(tctx) is None
    st = lease(tctx)
    assert (st.lease_holder, st.lease_token) == (None, None)
    assert registry_files(tctx) == []
    assert train(tctx).version == 1  # and the real run still sees the same rows


# -- refusals ------------------------------------------------------------------------------------

def test_train_is_refused_while_stopped_naming_who_stopped_and_why(make_ctx, tmp_path):
    ctx = make_ctx(overrides=dict(FAST))
    add_batch(ctx, tmp_path, 200, seed=1)
    stop_training(make_ctx(actor="alice"), reason="labels broken upstream")
    with pytest.raises(TrainingHaltedError) as ei:
        train(ctx)
    assert ei.value.exit_code == 5
    assert "alice" in ei.value.message and "labels broken upstream" in ei.value.message
    assert "resume" in ei.value.hint
    assert n_versions(ctx) == 0 and lease(ctx).lease_holder is None


def test_train_is_refused_while_another_holder_has_the_lease(tctx, tmp_path):
    add_batch(tctx, tmp_path, 200, seed=1)
    holder = "bob@other-host pid 4242"
    with tctx.store.tx() as t:
        theirs = control.acquire_lease(t, tctx.model, holder=holder, ttl=timedelta(minutes=5), now=tctx.now())
    with pytest.raises(LeaseHeldError) as ei:
        train(tctx)
    assert ei.value.exit_code == 5
    assert holder in ei.value.message and ei.value.details["holder"] == holder
    assert n_versions(tctx) == 0
    st = lease(tctx)
    assert (st.lease_holder, st.lease_token) == (holder, theirs.token)  # still theirs: not taken, not released


# -- the NaN guard -------------------------------------------------------------------------------

def test_nan_at_a_step_aborts_with_the_step_and_writes_no_version(tctx, tmp_path):
    from lifelong_cli.training.trainer import TrainingDivergedError

    add_batch(tctx, tmp_path, 500, seed=1)
    with pytest.raises(TrainingDivergedError) as ei:
        train(tctx, inject_nan_at_step=3)
    assert ei.value.exit_code == 3
    assert "step 3" in ei.value.message and ei.value.details["step"] == 3
    assert n_versions(tctx) == 0 and head(tctx) is None
    assert lease(tctx).lease_holder is None
    assert registry_files(tctx) == []  # nothing was put in the registry either
    assert train(tctx).version == 1


# -- artifacts -----------------------------------------------------------------------------------

def test_every_artifact_matches_its_sha256_and_the_state_dict_loads_weights_only(tctx, tmp_path):
    import json

    from lifelong_cli.registry.base import ArtifactRef, open_registry
    from lifelong_cli.training.model import build_model
    from lifelong_cli.training.preprocess import Preprocessor

    add_batch(tctx, tmp_path, 400, seed=1)
    r = train(tctx)
    shown = version_show(tctx, version=r.version).version
    assert set(shown["artifacts"]) == ARTIFACTS
    registry = open_registry(tctx)
    for name, a in shown["artifacts"].items():
        data = artifact_bytes(shown, name)
        assert hashlib.sha256(data).hexdigest() == a["sha256"], name
        assert len(data) == a["bytes"], name
        assert registry.fetch(ArtifactRef.from_dict(name, a)) == data
    assert shown["artifacts"] == r.artifacts

    state = torch_load(artifact_bytes(shown, "state_dict"))
    pre = Preprocessor.from_dict(json.loads(artifact_bytes(shown, "preprocess")))
    model = build_model(tctx.config.settings.model, pre.n_inputs, pre.n_outputs)
    model.load_state_dict(state)  # strict: every key, every shape
    assert set(state) == set(model.state_dict())
    assert torch_load(artifact_bytes(shown, "optimizer"))["state"]  # the Adam moments are there


@pytest.mark.parametrize("name", ["replay", "preprocess", "state_dict", "optimizer"])
def test_a_corrupted_parent_artifact_fails_the_next_train_naming_it(tctx, tmp_path, name):
    add_batch(tctx, tmp_path, 300, start=0, seed=1)
    train(tctx)
    v1 = load_version(tctx, 1)
    path = Path(v1["artifacts"][name]["uri"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    add_batch(tctx, tmp_path, 300, start=10_000, day=2, seed=2)
    with pytest.raises(CheckFailedError) as ei:
        train(tctx)
    assert ei.value.exit_code == 3
    assert f"artifact {name} " in ei.value.message and ei.value.details["artifact"] == name
    assert n_versions(tctx) == 1 and head(tctx) == 1
    assert lease(tctx).lease_holder is None


# -- ONNX parity ---------------------------------------------------------------------------------

def _raw_inputs(n: int, seed: int) -> pa.Table:
    """Raw feature rows as serving sees them: NaN and null in the nullable x3, unknown and missing segments."""
    rng = np.random.default_rng(seed)
    x3 = rng.normal(0, 3, n).tolist()
    for i in range(0, n, 5):
        x3[i] = float("nan")
    for i in range(1, n, 7):
        x3[i] = None
    seg = rng.choice(["a", "b", "c"], n).astype(object)
    seg[2::6] = "zzz"  # a category the model never saw
    seg[3::11] = None
    return pa.table({"x1": rng.normal(0, 3, n), "x2": rng.normal(0, 3, n), "x3": pa.array(x3, pa.float64()),
                     "segment": pa.array(seg.tolist(), pa.string())})


def _assert_onnx_matches_torch(onnx_bytes: bytes, model, pre, table: pa.Table) -> None:
    import onnxruntime as ort

    from lifelong_cli.training.onnx_export import OUTPUT, onnx_inputs
    from lifelong_cli.training.trainer import predict_scores

    x = pre.transform(table)
    assert np.isfinite(x).all()
    want = predict_scores(model, x, pre.task)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (got,) = sess.run([OUTPUT], onnx_inputs(pre, table))
    assert got.shape == want.shape == (table.num_rows, pre.n_outputs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_onnx_export_matches_torch_on_random_inputs_with_nan_and_unknown_category(ctx, task):
    import torch

    from lifelong_cli.training.model import build_model
    from lifelong_cli.training.onnx_export import export
    from lifelong_cli.training.preprocess import Preprocessor

    schema = DataSchema.from_settings(ctx.config.settings.data)
    fit_rows = _raw_inputs(300, seed=1).append_column("label", pa.array(["0", "1"] * 150))
    pre = Preprocessor.fit(fit_rows, schema)
    if task == "regression":
        pre = Preprocessor(pre.numeric, pre.means, pre.stds, pre.categorical, pre.categories, "regression", [])
    assert pre.numeric == ["x1", "x2", "x3"] and pre.categories == [["a", "b", "c"]]
    torch.manual_seed(0)
    model = build_model(ctx.config.settings.model, pre.n_inputs, pre.n_outputs)
    with torch.no_grad():  # weights big enough that a preprocessing mismatch would show
        for p in model.parameters():
            p.mul_(3.0)
    table = _raw_inputs(500, seed=2)
    _assert_onnx_matches_torch(export(model, pre), model, pre, table)


def test_a_trained_versions_onnx_matches_its_state_dict(tctx, tmp_path):
    import json

    from lifelong_cli.training.model import build_model
    from lifelong_cli.training.preprocess import Preprocessor

    add_batch(tctx, tmp_path, 500, seed=1)
    add_batch(tctx, tmp_path, 300, start=10_000, day=2, seed=2)
    train(tctx)
    v = load_version(tctx, 1)
    pre = Preprocessor.from_dict(json.loads(artifact_bytes(v, "preprocess")))
    model = build_model(tctx.config.settings.model, pre.n_inputs, pre.n_outputs)
    model.load_state_dict(torch_load(artifact_bytes(v, "state_dict")))
    _assert_onnx_matches_torch(artifact_bytes(v, "onnx"), model, pre, _raw_inputs(500, seed=3))


# -- preprocessing statistics ----------------------------------------------------------------------

def test_preprocessing_statistics_ignore_the_holdout_rows(tctx, tmp_path):
    import json

    t = batch_table(0, 1000, day=1, seed=5)
    keys = t["example_id"].to_pylist()
    held = holdout_keys(tctx, keys)
    assert 30 < len(held) < 200
    x1 = [("900.0" if k in held else v) for k, v in zip(keys, t["x1"].to_pylist(), strict=True)]
    t = t.set_column(t.schema.get_field_index("x1"), "x1", pa.array(x1, pa.string()))
    add_batch(tctx, tmp_path, 0, table=t)
    train(tctx)
    pre = json.loads(artifact_bytes(load_version(tctx, 1), "preprocess"))
    assert pre["numeric"] == ["x1", "x2", "x3"]

    train_rows = [i for i, k in enumerate(keys) if k not in held]
    for j, name in enumerate(pre["numeric"]):
        col = np.array([np.nan if v is None else float(v) for v in t[name].to_pylist()])[train_rows]
        finite = col[np.isfinite(col)]
        assert pre["means"][j] == pytest.approx(finite.mean(), rel=1e-9, abs=1e-12), name
        assert pre["stds"][j] == pytest.approx(finite.std(), rel=1e-9, abs=1e-12), name
    everything = np.array([float(v) for v in x1])
    assert everything.mean() > pre["means"][0] + 30  # the hold-out really is wild: it would have shown


# -- rollback, purge, resume, retrain ------------------------------------------------------------

def test_after_rollback_purge_and_resume_v3_trains_from_v1_without_the_purged_batch(make_ctx, tmp_path, monkeypatch):
    import json

    import torch

    from lifelong_cli.ops.train import pq_read
    from lifelong_cli.training import trainer as tr
    from lifelong_cli.training.model import build_model
    from lifelong_cli.training.preprocess import Preprocessor

    ctx = make_ctx(overrides=dict(FAST))
    oncall = make_ctx(actor="oncall")
    b1, t1 = add_batch(ctx, tmp_path, 500, start=0, day=1, seed=1)
    assert train(ctx).version == 1
    b2, t2 = add_batch(ctx, tmp_path, 500, start=10_000, day=2, seed=2, broken=True)  # the poisoned batch
    assert train(ctx).version == 2

    stop_training(oncall, reason="x1 arrives x100 from crm")
    with oncall.store.tx() as t:  # what `llctl rollback --to 1` does to the training head
        deployment.update_locked(t, oncall.model, actor=oncall.actor, now=oncall.now(), training_head=1)
    purge = purge_data(oncall, batch=b2.batch, reason="broken upstream")
    assert purge.blast_radius == {"affected_versions": [2], "last_clean_version": 1}
    resume(oncall, reason="bad batch purged")
    b3, t3 = add_batch(ctx, tmp_path, 500, start=20_000, day=3, seed=3)

    anchors: list[tr.EwcAnchor] = []
    real = tr.fisher_information

    def spy(*args, **kwargs):
        anchors.append(real(*args, **kwargs))
        return anchors[-1]

    monkeypatch.setattr(tr, "fisher_information", spy)
    r3 = train(ctx)
    assert (r3.status, r3.version, r3.parent) == ("trained", 3, 1)
    assert (r3.seq_from, r3.seq_to, r3.rows_new) == (b3.batch, b3.batch, n_trainable(ctx, t3))
    assert r3.purge_rules == [purge.rule]
    v1, v3 = load_version(ctx, 1), load_version(ctx, 3)
    assert v3["parent_id"] == 1 and v3["lineage"]["parent"] == 1
    assert v3["lineage"]["ewc_from_parent"] is True
    assert v3["lineage"]["purge_rules"] == [purge.rule]
    assert head(ctx) == 3

    # the replay buffer: keys of batches 1 and 3 only
    buffer = set(pq_read(artifact_bytes(v3, "replay"))["example_id"].to_pylist())
    keys1, keys2, keys3 = (set(t["example_id"].to_pylist()) for t in (t1, t2, t3))
    assert buffer and not buffer & keys2
    assert buffer <= keys1 | keys3 and buffer & keys1 and buffer & keys3
    assert 0 < r3.rows_replay == v3["lineage"]["replay_rows_used"]

    # the EWC anchor: v1's weights, and the Fisher of v1's (unpurged) data
    (anchor,) = anchors
    v1_state = torch_load(artifact_bytes(v1, "state_dict"))
    assert set(anchor.params) == {k for k in v1_state if k.endswith(("weight", "bias"))}
    for name, p in anchor.params.items():
        assert torch.equal(p, v1_state[name]), name
    v2_state = torch_load(artifact_bytes(load_version(ctx, 2), "state_dict"))
    assert any(not torch.equal(anchor.params[k], v2_state[k]) for k in anchor.params)

    settings = ctx.config.settings
    schema = DataSchema.from_settings(settings.data)
    pre = Preprocessor.from_dict(json.loads(artifact_bytes(v1, "preprocess")))
    model = build_model(settings.model, pre.n_inputs, pre.n_outputs)
    model.load_state_dict(v1_state)
    with ctx.store.tx(write=False) as t:
        refs, rules = batches.for_reading(t, ctx.model), purge_rules.active(t, ctx.model)
    past = rd.read_rows(DataStore(ctx.data_root), schema, refs, rules, seq_to=v1["watermark"])
    assert set(past["example_id"].to_pylist()) <= keys1
    rng = np.random.default_rng(settings.training.seed + 1)
    sample = past.take(pa.array(rng.choice(past.num_rows, min(past.num_rows, settings.training.ewc.fisher_samples),
                                           replace=False)))
    rebuilt = real(model, pre.transform(sample), pre.targets(sample, schema.label), pre.task)
    for name in anchor.fisher:
        torch.testing.assert_close(anchor.fisher[name], rebuilt.fisher[name], rtol=1e-5, atol=1e-9)
        assert torch.equal(rebuilt.params[name], anchor.params[name])


def test_rows_purged_after_the_parent_never_survive_in_its_replay_buffer(tctx, tmp_path):
    from lifelong_cli.ops.train import pq_read

    _, t1 = add_batch(tctx, tmp_path, 500, start=0, day=1, seed=1)
    train(tctx)
    v1_buffer = set(pq_read(artifact_bytes(load_version(tctx, 1), "replay"))["example_id"].to_pylist())
    rule = purge_data(tctx, where="segment = 'a'", reason="pii")
    _, t2 = add_batch(tctx, tmp_path, 500, start=10_000, day=2, seed=2)
    r2 = train(tctx)

    purged = {k for t in (t1, t2) for k, s in zip(t["example_id"].to_pylist(), t["segment"].to_pylist(), strict=True)
              if s == "a"}
    assert v1_buffer & purged  # v1 replayed rows that are now purged ...
    assert r2.rows_replay == len(v1_buffer - purged)  # ... v2 replayed only the others
    t2_keys = t2["example_id"].to_pylist()
    assert r2.rows_new == len(set(t2_keys) - purged - holdout_keys(tctx, t2_keys))
    v2 = load_version(tctx, 2)
    buffer = set(pq_read(artifact_bytes(v2, "replay"))["example_id"].to_pylist())
    assert buffer and not buffer & purged
    assert v2["lineage"]["purge_rules"] == [rule.rule]


# -- versions list and show ----------------------------------------------------------------------

def test_versions_list_and_show_report_roles_and_lineage(tctx, tmp_path):
    b1, _ = add_batch(tctx, tmp_path, 300, start=0, day=1, seed=1)
    train(tctx)
    b2, _ = add_batch(tctx, tmp_path, 300, start=10_000, day=2, seed=2)
    rule = purge_data(tctx, where="segment = 'c'", reason="pii")
    r2 = train(tctx)
    with tctx.store.tx() as t:
        deployment.update_locked(t, tctx.model, actor="tester", now=tctx.now(), stable_version=1)

    lst = versions(tctx)
    assert (lst.head, lst.stable, lst.canary) == (2, 1, None)
    assert [v["id"] for v in lst.versions] == [2, 1]
    by_id = {v["id"]: v for v in lst.versions}
    assert by_id[2]["roles"] == ["head"] and by_id[1]["roles"] == ["stable"]
    assert (by_id[2]["parent_id"], by_id[2]["seq_from"], by_id[2]["seq_to"]) == (1, b2.batch, b2.batch)
    assert (by_id[1]["parent_id"], by_id[1]["seq_from"], by_id[1]["seq_to"]) == (None, b1.batch, b1.batch)
    assert by_id[2]["rows_trained"] == r2.rows_new and by_id[2]["strategy"] == "ewc+replay"
    assert 0.0 <= by_id[2]["holdout_accuracy"] <= 1.0

    shown = version_show(tctx, version=2)
    assert shown.roles == ["head"]
    v = shown.version
    lin = v["lineage"]
    assert (lin["parent"], lin["seq_from"], lin["seq_to"], lin["rows"]) == (1, b2.batch, b2.batch, r2.rows_new)
    assert lin["purge_rules"] == [rule.rule]
    assert lin["config_hash"] == v["config_hash"] == _config_hash(tctx.config.settings)
    assert len(lin["config_hash"]) == 64
    assert {"torch", "numpy", "pyarrow", "onnx", "onnxruntime"} <= set(lin["libraries"])
    assert lin["strategy"] == "ewc+replay" and lin["task"] == "classification" and lin["classes"] == ["0", "1"]
    assert set(v["artifacts"]) == ARTIFACTS and all(len(a["sha256"]) == 64 for a in v["artifacts"].values())
    assert v["created_by"] == "tester" and v["metrics"]["rows_new"] == r2.rows_new

    assert version_show(tctx, version=1).roles == ["stable"]
    assert version_show(tctx, version=1).version["lineage"]["purge_rules"] == []


FACTORY = '''
import torch

class Tiny(torch.nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.lin = torch.nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.lin(x)

def make(n_inputs, n_outputs, config):
    return Tiny(n_inputs, n_outputs)

def not_a_module(n_inputs, n_outputs, config):
    return "nope"
'''


def test_a_user_model_factory_is_trained_exported_and_served_from_onnx(make_ctx, tmp_path, monkeypatch):
    import onnxruntime as ort

    from lifelong_cli.ops.validate import validate
    from lifelong_cli.registry.base import ArtifactRef, open_registry

    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = make_ctx(overrides={**FAST, "model.factory": "my_models:make"})
    add_batch(ctx, tmp_path, 400)
    v = train(ctx).version
    shown = version_show(ctx, version=v).version
    sd = torch_load_bytes(open_registry(ctx).fetch(ArtifactRef.from_dict("state_dict", shown["artifacts"]["state_dict"])))
    assert set(sd) == {"lin.weight", "lin.bias"}
    onnx_bytes = open_registry(ctx).fetch(ArtifactRef.from_dict("onnx", shown["artifacts"]["onnx"]))
    assert [i.name for i in ort.InferenceSession(onnx_bytes).get_inputs()] == ["x1", "x2", "x3", "segment"]
    gates = {g["name"]: g["passed"] for g in validate(ctx).gates}
    assert gates["integrity"] and gates["onnx parity"] and gates["sanity"], gates


def test_a_factory_that_returns_no_module_is_a_config_error(make_ctx, tmp_path, monkeypatch):
    from lifelong_cli.errors import ConfigError

    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = make_ctx(overrides={**FAST, "model.factory": "my_models:not_a_module"})
    add_batch(ctx, tmp_path, 200)
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        train(ctx)
    assert versions(ctx).versions == []


def torch_load_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def test_frozen_layers_keep_the_parents_weights(make_ctx, tmp_path):
    from lifelong_cli.registry.base import ArtifactRef, open_registry

    ctx = make_ctx(overrides={**FAST})
    add_batch(ctx, tmp_path, 300, start=0, seed=1)
    v1 = train(ctx).version
    frozen = make_ctx(overrides={**FAST, "training.frozen_layers": '["net.0."]'})
    add_batch(frozen, tmp_path, 300, start=1000, seed=2, day=2)
    v2 = train(frozen).version
    reg = open_registry(ctx)

    def weights(v):
        arts = version_show(ctx, version=v).version["artifacts"]
        return torch_load_bytes(reg.fetch(ArtifactRef.from_dict("state_dict", arts["state_dict"])))

    w1, w2 = weights(v1), weights(v2)
    assert np.array_equal(w1["net.0.weight"].numpy(), w2["net.0.weight"].numpy())
    assert not np.array_equal(w1["net.3.weight"].numpy(), w2["net.3.weight"].numpy())


# -- two models in one store -----------------------------------------------------------------------

def test_two_models_in_one_store_train_versions_and_stop_independently(make_ctx, workspace, tmp_path):
    from lifelong_cli.ops.init import init

    a = make_ctx(overrides=dict(FAST))
    added = init(make_ctx(overrides={"model.name": "other"}), directory=str(workspace))
    assert added.model_added and added.other_models == [a.model]
    b = make_ctx(overrides={**FAST, "model.name": "other"})
    assert (a.model, b.model) == ("demo", "other") and a.data_root != b.data_root

    a1, _ = add_batch(a, tmp_path, 400, start=0, day=1, seed=1)
    b1, _ = add_batch(b, tmp_path, 300, start=50_000, day=1, seed=7)
    ra1, rb1 = train(a), train(b)
    assert (ra1.model, ra1.version, ra1.parent, ra1.seq_from) == ("demo", 1, None, a1.batch)
    assert (rb1.model, rb1.version, rb1.parent, rb1.seq_from) == ("other", 1, None, b1.batch)
    assert ra1.message.startswith("model 'demo': trained v1") and rb1.message.startswith("model 'other': trained v1")
    assert rb1.rows_new < ra1.rows_new  # each read only its own rows

    # the lease of one model does not hold the other's training
    with a.store.tx() as t:
        theirs = control.acquire_lease(t, a.model, holder="someone else", ttl=timedelta(minutes=5), now=a.now())
    b2, _ = add_batch(b, tmp_path, 300, start=60_000, day=2, seed=8)
    rb2 = train(b)
    assert (rb2.version, rb2.parent, rb2.seq_from, rb2.seq_to) == (2, 1, b2.batch, b2.batch)
    with pytest.raises(LeaseHeldError):
        train(a)
    with a.store.tx() as t:
        assert control.release_lease(t, a.model, theirs)
    a2, _ = add_batch(a, tmp_path, 400, start=10_000, day=2, seed=2)
    ra2 = train(a)
    assert (ra2.version, ra2.parent, ra2.seq_from) == (2, 1, a2.batch)

    # `versions` of one does not list the other's
    la, lb = versions(a), versions(b)
    assert (la.model, lb.model) == ("demo", "other")
    assert [(v["id"], v["seq_from"]) for v in la.versions] == [(2, a2.batch), (1, a1.batch)] and la.head == 2
    assert [(v["id"], v["seq_from"]) for v in lb.versions] == [(2, b2.batch), (1, b1.batch)] and lb.head == 2
    assert version_show(b, version=1).version["model"] == "other"
    assert version_show(a, version=1).version["artifacts"] != version_show(b, version=1).version["artifacts"]

    # stopping one model's training stops only that model's
    stop_training(make_ctx(actor="oncall"), reason="bad upstream for demo")
    add_batch(a, tmp_path, 300, start=20_000, day=3, seed=3)
    b3, _ = add_batch(b, tmp_path, 300, start=70_000, day=3, seed=9)
    with pytest.raises(TrainingHaltedError, match="model 'demo'"):
        train(a)
    rb3 = train(b)
    assert (rb3.version, rb3.seq_from) == (3, b3.batch)
    assert lease(a).stopped and not lease(b).stopped
    assert (n_versions(a), n_versions(b), head(a), head(b)) == (2, 3, 2, 3)
