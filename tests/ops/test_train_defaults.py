"""Defaults that learn (issue 11, item 4): training adapts to the increment (a minimum number of
steps, early stopping on validation rows, a lower learning rate for continued training),
preprocessing that copes with a feature constant in the first data and stays identical in the
ONNX graph, and the cadence policy behind `llctl train --if-due`."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.errors import ConfigError
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.train import train
from lifelong_cli.store import versions as store_versions
from tests.helpers import run_cli

pytestmark = pytest.mark.training_defaults  # the workspace keeps the shipped adaptive training

NO_DRIFT = {"drift.on_ingest": "false"}  # these batches shift on purpose; drift is not the subject here


def add(ctx, tmp_path: Path, table: pa.Table, name: str):
    path = tmp_path / f"{name}.csv"
    pcsv.write_csv(table, path)
    r = ingest(ctx, path=str(path))
    assert r.status == "accepted", r.message
    return r


def version(ctx, v: int) -> dict:
    with ctx.store.tx(write=False) as t:
        return store_versions.require(t, ctx.model, v)


def artifact(v: dict, name: str) -> bytes:
    return Path(v["artifacts"][name]["uri"]).read_bytes()


# -- training adapts to the increment ---------------------------------------------------------------

def test_a_small_increment_gets_at_least_min_steps_not_a_fixed_epoch_count(make_ctx, tmp_path):
    ctx = make_ctx(overrides={**NO_DRIFT, "training.min_steps": "120", "training.patience": "50"})
    add(ctx, tmp_path, batch_table(0, 300, day=1, seed=1), "b1")
    r = train(ctx)
    m = r.metrics
    per_epoch = -(-r.rows_new // 64)  # batch_size 64; the validation rows are the batch's hold-out
    assert m["val_rows"] >= 20 and per_epoch <= 5 and m["steps"] >= 120  # 5 epochs: ≤ 25 steps
    assert m["steps"] <= 100 * per_epoch  # max_epochs
    # the same increment with a fixed epoch count: exactly that many passes, no validation split
    fixed = make_ctx(overrides={**NO_DRIFT, "training.epochs": "2"})
    add(fixed, tmp_path, batch_table(10_000, 200, day=2, seed=2), "b2")
    r2 = train(fixed)
    assert r2.metrics["steps"] == 2 * -(-r2.rows_new // 64) and "val_rows" not in r2.metrics


def test_early_stopping_ends_a_run_long_before_max_epochs_and_keeps_the_best_weights(make_ctx, tmp_path):
    ctx = make_ctx(overrides={**NO_DRIFT, "training.min_steps": "0", "training.max_epochs": "1000",
                              "training.patience": "3"})
    add(ctx, tmp_path, batch_table(0, 600, day=1, seed=1), "b1")
    r = train(ctx)
    m = r.metrics
    per_epoch = -(-(r.rows_new - m["val_rows"]) // 64)
    assert m["stopped_early"] is True
    assert m["steps"] < 1000 * per_epoch / 4
    assert 0 < m["best_step"] <= m["steps"] - 3 * 20  # three evaluations without improvement after the best
    assert 0 < m["val_loss"] < 0.69  # better than chance on two classes (ln 2)


def test_validation_rows_are_the_increments_own_holdout_when_it_has_enough(make_ctx, tmp_path):
    ctx = make_ctx(overrides={**NO_DRIFT, "training.min_steps": "20"})
    add(ctx, tmp_path, batch_table(0, 1000, day=1, seed=1), "b1")
    r1 = train(ctx)
    held_1 = r1.metrics["holdout_rows"]  # the hold-out up to v1: all of it new with v1
    assert held_1 >= 20 and r1.metrics["val_rows"] == held_1
    add(ctx, tmp_path, batch_table(10_000, 1000, day=2, seed=2), "b2")
    r2 = train(ctx)
    # only the hold-out rows that came with the new batch, not v1's again
    assert r2.metrics["val_rows"] == r2.metrics["holdout_rows"] - held_1 > 0


def test_without_enough_holdout_a_share_of_the_increment_is_kept_for_validation(make_ctx, tmp_path):
    ctx = make_ctx(overrides={**NO_DRIFT, "data.holdout_fraction": "0", "training.min_steps": "20",
                              "training.validation_fraction": "0.2"})
    add(ctx, tmp_path, batch_table(0, 500, day=1, seed=1), "b1")
    r = train(ctx)
    assert r.rows_new == 500 and r.metrics["val_rows"] == 100
    tiny = make_ctx(overrides={**NO_DRIFT, "data.holdout_fraction": "0", "training.min_steps": "20",
                               "training.min_validation_rows": "200"})
    add(tiny, tmp_path, batch_table(10_000, 300, day=2, seed=2), "b2")
    assert "val_rows" not in train(tiny).metrics  # 30 rows would be too few: no early stopping


def test_continued_training_uses_the_lower_learning_rate(make_ctx, tmp_path):
    ctx = make_ctx(overrides={**NO_DRIFT, "training.epochs": "1", "training.learning_rate": "0.002",
                              "training.continued_lr_factor": "0.25"})
    add(ctx, tmp_path, batch_table(0, 300, day=1, seed=1), "b1")
    assert train(ctx).metrics["learning_rate"] == pytest.approx(0.002)
    add(ctx, tmp_path, batch_table(10_000, 300, day=2, seed=2), "b2")
    assert train(ctx).metrics["learning_rate"] == pytest.approx(0.0005)


# -- preprocessing: constant at first, varying later, identical in ONNX -------------------------------

def _with_x2(table: pa.Table, values) -> pa.Table:
    i = table.schema.get_field_index("x2")
    return table.set_column(i, "x2", pa.array([f"{v:.5f}" for v in values], pa.string()))


def test_a_feature_constant_in_the_first_batch_and_varying_later_stays_bounded_and_onnx_matches(make_ctx, tmp_path):
    import onnxruntime as ort
    import torch

    from lifelong_cli.training.model import build_model
    from lifelong_cli.training.onnx_export import OUTPUT, onnx_inputs
    from lifelong_cli.training.preprocess import Preprocessor
    from lifelong_cli.training.trainer import predict_scores

    ctx = make_ctx(overrides={**NO_DRIFT, "training.epochs": "2"})
    first = batch_table(0, 400, day=1, seed=1)
    first = _with_x2(first, [3.0] * 399 + [3.01])  # nearly constant: std ≈ 0.0005
    add(ctx, tmp_path, first, "b1")
    train(ctx)
    rng = np.random.default_rng(7)
    later = _with_x2(batch_table(10_000, 400, day=2, seed=2), rng.normal(3.0, 40.0, 400))
    add(ctx, tmp_path, later, "b2")
    assert train(ctx).version == 2

    v2 = version(ctx, 2)
    pre = Preprocessor.from_dict(json.loads(artifact(v2, "preprocess")))
    assert pre.clip == 5.0 and pre.stds[pre.numeric.index("x2")] < 0.01  # fitted on v1's rows, inherited
    raw = later.select(["x1", "x2", "x3", "segment"])
    raw = pa.table({"x1": pa.array([float(v) for v in raw["x1"].to_pylist()]),
                    "x2": pa.array([float(v) for v in raw["x2"].to_pylist()]),
                    "x3": pa.array([None if v is None else float(v) for v in raw["x3"].to_pylist()], pa.float64()),
                    "segment": raw["segment"]})
    x = pre.transform(raw)
    assert np.isfinite(x).all() and np.abs(x).max() <= 5.0  # unclipped, x2 would reach ~10⁵
    assert (np.abs(x[:, pre.numeric.index("x2")]) == 5.0).mean() > 0.9

    net = build_model(ctx.config.settings.model, pre.n_inputs, pre.n_outputs)
    net.load_state_dict(torch.load(__import__("io").BytesIO(artifact(v2, "state_dict")), weights_only=True))
    want = predict_scores(net, x, pre.task)
    sess = ort.InferenceSession(artifact(v2, "onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run([OUTPUT], onnx_inputs(pre, raw))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_version_fitted_before_clipping_keeps_its_unclipped_preprocessing_in_onnx(ctx):
    import onnxruntime as ort

    from lifelong_cli.training.onnx_export import onnx_inputs, preprocessing_graph
    from lifelong_cli.training.preprocess import Preprocessor

    old = {"numeric": ["x1"], "means": [0.0], "stds": [0.001], "categorical": [], "categories": [],
           "task": "classification", "classes": ["0", "1"]}  # as stored before `clip` existed
    pre = Preprocessor.from_dict(old)
    table = pa.table({"x1": pa.array([0.0, 1.0, -2.0])})
    sess = ort.InferenceSession(preprocessing_graph(pre).SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, onnx_inputs(pre, table))
    np.testing.assert_allclose(got[:, 0], [0.0, 1000.0, -2000.0], rtol=1e-6)
    np.testing.assert_allclose(pre.transform(table)[:, 0], got[:, 0], rtol=1e-6)


# -- cadence: train --if-due -----------------------------------------------------------------------

CADENCE = {**NO_DRIFT, "training.epochs": "1", "training.min_new_rows": "500", "training.max_wait": "6h"}


def test_if_due_trains_the_first_version_then_waits_for_min_new_rows_or_max_wait(make_ctx, workspace, tmp_path):
    from lifelong_cli.context import utcnow

    ctx = make_ctx(overrides=CADENCE)
    nothing = train(ctx, if_due=True)
    assert (nothing.status, nothing.version) == ("not-due", None) and nothing.due["new_rows"] == 0
    add(ctx, tmp_path, batch_table(0, 200, day=1, seed=1), "b1")
    first = train(ctx, if_due=True)  # no version yet: any new rows are due
    assert (first.status, first.version) == ("trained", 1) and first.due["due"] is True
    assert first.message.startswith("due: ")

    add(ctx, tmp_path, batch_table(10_000, 200, day=2, seed=2), "b2")
    r = train(ctx, if_due=True)
    n = r.rows_new
    assert (r.status, r.version) == ("not-due", None) and 150 < n < 200
    assert re.fullmatch(rf"model '{ctx.model}': not due: {n} new rows < min_new_rows 500, "
                        r"last train \d+s ago < max_wait 6h", r.message), r.message
    assert r.due["since_seconds"] < 6 * 3600 and r.due["min_new_rows"] == 500
    with ctx.store.tx(write=False) as t:
        assert store_versions.count(t, ctx.model) == 1

    later = make_ctx(overrides=CADENCE, clock=lambda: utcnow() + timedelta(hours=7))
    stale = train(later, if_due=True)  # few rows, but the model is older than max_wait
    assert (stale.status, stale.version) == ("trained", 2)
    assert re.search(r"last train 7h00m ago ≥ max_wait 6h", stale.message), stale.message

    add(ctx, tmp_path, batch_table(20_000, 700, day=3, seed=3), "b3")
    by_rows = train(ctx, if_due=True)  # recent, but enough rows
    assert (by_rows.status, by_rows.version) == ("trained", 3)
    assert f"{by_rows.rows_new} new rows ≥ min_new_rows 500" in by_rows.message

    idle = make_ctx(overrides=CADENCE, clock=lambda: utcnow() + timedelta(days=3))
    quiet = train(idle, if_due=True)  # stale, but nothing new to train on
    assert quiet.status == "not-due" and "nothing new to train on" in quiet.message


def test_cli_if_due_exits_0_not_due_with_the_figures_in_json(make_ctx, workspace, tmp_path, cli_env):
    ctx = make_ctx(overrides=CADENCE)
    add(ctx, tmp_path, batch_table(0, 200, day=1, seed=1), "b1")
    assert train(ctx).version == 1
    add(ctx, tmp_path, batch_table(10_000, 100, day=2, seed=2), "b2")
    args = ["--set", "training.min_new_rows=500", "--set", "training.max_wait=6h", "--set", "drift.on_ingest=false"]
    r = run_cli([*args, "train", "--if-due", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["status"] == "not-due" and doc["version"] is None
    assert doc["due"]["due"] is False and doc["due"]["min_new_rows"] == 500 and doc["due"]["max_wait"] == "6h"
    assert doc["message"].startswith(f"model '{ctx.model}': not due: {doc['due']['new_rows']} new rows < min_new_rows 500, "
                                     "last train ")
    human = run_cli([*args, "train", "--if-due"], cwd=workspace, env=cli_env)
    assert human.code == 0 and "not due: " in human.stdout and "< max_wait 6h" in human.stdout


def test_a_bad_max_wait_is_a_config_error_naming_the_key(make_ctx):
    with pytest.raises(ConfigError) as ei:
        _ = make_ctx(overrides={"training.max_wait": "soon"}).config
    assert "training.max_wait" in ei.value.message and "soon" in ei.value.message


def test_a_not_due_check_imports_no_torch(make_ctx, workspace, tmp_path, cli_env):
    import subprocess
    import sys

    ctx = make_ctx(overrides=CADENCE)
    add(ctx, tmp_path, batch_table(0, 200, day=1, seed=1), "b1")
    assert train(ctx).version == 1
    code = ("import sys\nfrom lifelong_cli.cli.app import main\n"
            "try:\n    main(['--set', 'training.min_new_rows=500', 'train', '--if-due'])\n"
            "except SystemExit as e:\n    print('exit', e.code)\n"
            "print('torch', 'torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=workspace, env=cli_env, capture_output=True, text=True,
                       timeout=120)
    assert "not due: 0 new rows" in p.stdout and "exit 0" in p.stdout and "torch False" in p.stdout, p.stdout + p.stderr
