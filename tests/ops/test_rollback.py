"""rollback and fallback: the store changes first, canary aborted, checksums verified, audited."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pcsv
import pytest

from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.errors import CheckFailedError, NotFoundError, UsageError
from lifelong_cli.ops.audit import audit
from lifelong_cli.ops.fallback import fallback
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.purge_data import purge_data
from lifelong_cli.ops.rollback import rollback
from lifelong_cli.ops.status import status
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate
from lifelong_cli.ops.versions import version_show
from lifelong_cli.store import deployment, versions
from tests.helpers import run_cli


@pytest.fixture
def three(make_ctx, tmp_path):
    """v1, v2, v3 trained on batches 1, 2, 3; v1 and v2 validated."""
    ctx = make_ctx(overrides={"training.epochs": "1"})
    for n in (1, 2, 3):
        p = tmp_path / f"b{n}.csv"
        pcsv.write_csv(batch_table(n * 1000, 600, day=n, seed=n), p)
        ingest(ctx, path=str(p))
        train(ctx)
        if n < 3:
            validate(ctx, version=n)
    return ctx


def test_rollback_to_moves_serving_and_training_head_and_aborts_canary(three):
    with three.store.tx() as t:
        deployment.update_locked(t, three.model, actor="t", now=three.now(), stable_version=2, canary_version=3,
                                 canary_share=0.25, canary_state="running")
    r = rollback(three, to=1, reason="bad launch")
    assert (r.target, r.previous_stable, r.canary_aborted, r.training_head) == (1, 2, 3, 1)
    s = status(three).serving
    assert s["stable_version"] == 1 and s["canary_version"] is None and s["canary_share"] == 0
    assert status(three).training["head_version"] == 1
    (e,) = audit(three, verb="rollback").entries
    assert e["reason"] == "bad launch" and e["detail"]["canary_aborted"] == 3


def test_serving_only_rollback_leaves_the_training_head(three):
    r = rollback(three, to=1, serving_only=True)
    assert r.training_head == 3 and status(three).training["head_version"] == 3


def test_last_good_skips_unvalidated_and_purge_tainted_versions(three):
    assert rollback(three, last_good=True, dry_run=True).target == 2  # v3 is not validated
    purge_data(three, batch=2, reason="bad batch")  # v2 (and v3) trained on it
    assert rollback(three, last_good=True).target == 1


def test_a_corrupted_target_is_refused_naming_the_next_good_one(three):
    path = Path(version_show(three, version=2).version["artifacts"]["onnx"]["uri"])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckFailedError) as ei:
        rollback(three, to=2)
    assert "checksum" in ei.value.message and "v1" in ei.value.hint
    assert status(three).serving["stable_version"] is None  # nothing changed
    assert rollback(three, last_good=True).target == 1  # last-good passes over the corrupted v2


def test_rollback_needs_exactly_one_target(three):
    with pytest.raises(UsageError):
        rollback(three)
    with pytest.raises(UsageError):
        rollback(three, to=1, last_good=True)


def test_fallback_on_and_off_are_idempotent_and_audited(three):
    r = fallback(three, on=True, reason="model exploded")
    assert r.changed and r.strategy == "majority"
    assert status(three).serving["fallback"] is True
    assert not fallback(three, on=True).changed
    assert fallback(three, on=False).changed and not fallback(three, on=False).changed
    outcomes = [(e["outcome"], e["detail"].get("on")) for e in audit(three, verb="fallback").entries]
    assert outcomes == [("ok", True), ("noop", True), ("ok", False), ("noop", False)]


def test_fallback_with_an_unknown_version_or_strategy_is_refused(three):
    with pytest.raises(NotFoundError):
        fallback(three, on=True, strategy="version:99")
    with pytest.raises(UsageError):
        fallback(three, on=True, strategy="coin-flip")
    with pytest.raises(UsageError, match="no median answer"):
        fallback(three, on=True, strategy="median")  # a classification model has a majority class, no median
    assert fallback(three, on=True, strategy="lookup").strategy == "lookup"  # training.fallback_lookup_key: segment


def test_cli_rollback_json_and_exit_codes(three, workspace, cli_env):
    r = run_cli(["rollback", "--to", "1", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 0 and r.json()["target"] == 1
    assert run_cli(["rollback", "--to", "42"], cwd=workspace, env=cli_env).code == 4
    assert run_cli(["rollback"], cwd=workspace, env=cli_env).code == 2


def test_last_good_means_served_healthily_once_anything_was_promoted(three):
    from lifelong_cli.ops import canary
    from lifelong_cli.ops.push import push

    push(three, version=1)
    canary.start(three, version=1)  # first launch: v1 stable (promoted)
    push(three, version=2)
    canary.start(three, version=2)
    canary.promote(three, reason="looks fine")  # no traffic yet: inconclusive does not block a manual promote
    assert rollback(three, last_good=True, dry_run=True).target == 1  # v2 is stable; the newest other good one
    rollback(three, to=1, reason="v2 misbehaves")  # v2 was rolled back from: not served healthily any more
    assert rollback(three, last_good=True, dry_run=True).target == 1
    with three.store.tx(write=False) as t:
        assert t.scalar("SELECT demoted_at FROM model_versions WHERE id = 2") is not None
    rollback(three, to=2, reason="false alarm")  # naming it again vouches for it; rolling forward demotes nothing
    with three.store.tx(write=False) as t:
        assert t.scalar("SELECT count(*) FROM model_versions WHERE demoted_at IS NOT NULL") == 0


def test_rollback_to_a_rejected_or_tainted_version_needs_force(three):
    from lifelong_cli.errors import PreconditionError

    with three.store.tx() as t:
        versions.record_verdict(t, three.model, 3, now=three.now(), actor="t", verdict="rejected", gates=[])
    with pytest.raises(PreconditionError, match="v3 was rejected by validation"):
        rollback(three, to=3)
    with pytest.raises(UsageError, match="--force needs --reason"):
        rollback(three, to=3, force=True)
    assert rollback(three, to=3, force=True, reason="we know").target == 3
    purge_data(three, batch=2, reason="bad batch")  # v2 and v3 trained on it
    with pytest.raises(PreconditionError, match="v2 was trained on data a purge rule removed") as e:
        rollback(three, to=2)
    assert "v1" in e.value.hint


def test_blast_radius_names_a_last_clean_version_that_is_safe_to_serve(three):
    with three.store.tx() as t:
        versions.record_verdict(t, three.model, 2, now=three.now(), actor="t", verdict="rejected", gates=[])
    r = purge_data(three, batch=3, reason="bad batch", dry_run=True)  # only v3 trained on batch 3
    assert r.blast_radius["affected_versions"] == [3]
    assert r.blast_radius["last_clean_version"] == 1  # v2 is not affected, but validation rejected it
