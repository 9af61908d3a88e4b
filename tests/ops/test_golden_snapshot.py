"""The golden set as a named, frozen snapshot: candidate and baseline measured on the same rows,
named in the validation; hold-out rows join only once their batch is old enough; an absolute
floor per slice next to the relative retention gate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lifelong_cli.context import utcnow
from lifelong_cli.ops.canary import start as canary_start
from lifelong_cli.ops.push import push
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate
from tests.ops.test_batch_audit import FAST, batch


@pytest.fixture
def ctx(make_ctx, workspace):
    cfg = workspace / "llctl.yaml"
    cfg.write_text(cfg.read_text().replace('label_categories: ["0", "1"]', 'label_categories: ["0", "1", "2"]'))
    return make_ctx(overrides=FAST)


def gate(res, name):
    return next(g for g in res.gates if g["name"] == name)


def test_candidate_and_baseline_share_a_named_snapshot_that_new_data_does_not_move(ctx, tmp_path):
    for i in range(3):
        batch(ctx, tmp_path, i, "up-a")
    v1 = train(ctx).version
    first = validate(ctx, version=v1)
    push(ctx, version=v1)
    canary_start(ctx, version=v1)
    batch(ctx, tmp_path, 3, "up-a")
    v2 = train(ctx).version
    second = validate(ctx, version=v2)
    again = validate(ctx, version=v2)
    snap = gate(second, "golden set")["data"]
    assert snap["snapshot"] == gate(again, "golden set")["data"]["snapshot"]  # the same rows, named the same
    assert snap["snapshot"] == gate(first, "golden set")["data"]["snapshot"]  # batch 4 is not in it: v1's rows
    assert second.golden_rows == first.golden_rows
    assert gate(second, "new data hold-out")["data"]["rows"] > 0  # the new batch's hold-out, measured apart


def test_hold_out_rows_join_the_golden_set_only_once_old_enough(make_ctx, ctx, tmp_path):
    for i in range(2):
        batch(ctx, tmp_path, i, "up-a")
    v1 = train(ctx).version
    young = make_ctx(overrides={**FAST, "validation.golden_min_age": "1h"})
    res = validate(young, version=v1, dry_run=True)
    assert res.golden_rows == 0 and "golden set" in res.failed
    later = make_ctx(overrides={**FAST, "validation.golden_min_age": "1h"},
                     clock=lambda: utcnow() + timedelta(hours=2))
    assert validate(later, version=v1, dry_run=True).golden_rows > 0


def test_a_slice_below_the_absolute_floor_fails_even_without_a_baseline(make_ctx, ctx, tmp_path):
    for i in range(2):
        batch(ctx, tmp_path, i, "up-a")
    v1 = train(ctx).version
    ok = validate(ctx, version=v1, dry_run=True)
    assert gate(ok, "slice floor")["passed"] is True
    strict = make_ctx(overrides={**FAST, "validation.slice_floor": "0.999"})
    res = validate(strict, version=v1, dry_run=True)
    assert gate(res, "slice floor")["passed"] is False and "slice floor" in res.failed
