"""stop-training / resume: idempotent, audited, and dry-run changes nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from lifelong_cli.errors import UsageError
from lifelong_cli.ops.audit import audit
from lifelong_cli.ops.resume import resume
from lifelong_cli.ops.status import status
from lifelong_cli.ops.stop_training import stop_training


def test_stop_training_sets_flag_visible_in_status(ctx):
    r = stop_training(ctx, reason="bad upstream")
    assert r.changed and r.stopped_by == "tester" and r.reason == "bad upstream"
    s = status(ctx)
    assert s.training["stopped"] is True
    assert s.training["stop_reason"] == "bad upstream"


def test_second_stop_changes_nothing_and_names_who_stopped(make_ctx):
    stop_training(make_ctx("alice"), reason="first")
    r = stop_training(make_ctx("bob"), reason="second")
    assert not r.changed
    assert r.stopped_by == "alice"
    assert "already stopped by alice" in r.message and "first" in r.message


def test_resume_lifts_flag_and_is_idempotent(make_ctx):
    stop_training(make_ctx("alice"), reason="x")
    r1 = resume(make_ctx("bob"), reason="fixed")
    assert r1.changed and r1.resumed_by == "bob" and r1.was_stopped_by == "alice"
    r2 = resume(make_ctx("bob"))
    assert not r2.changed
    assert status(make_ctx()).training["stopped"] is False


def test_stop_and_resume_are_audited_with_actor_reason_and_outcome(make_ctx):
    stop_training(make_ctx("alice"), reason="nan burst")
    stop_training(make_ctx("carol"), reason="again")
    resume(make_ctx("bob"), reason="purged")
    entries = audit(make_ctx()).entries
    got = [(e["verb"], e["actor"], e["reason"], e["outcome"]) for e in entries if e["verb"] not in ("db-upgrade", "init")]
    assert got == [
        ("stop-training", "alice", "nan burst", "ok"),
        ("stop-training", "carol", "again", "noop"),
        ("resume", "bob", "purged", "ok"),
    ]


def test_dry_run_changes_nothing_and_is_not_audited(ctx):
    before = len(audit(ctx).entries)
    r = stop_training(ctx, reason="x", dry_run=True)
    assert r.dry_run and not r.changed and "would stop" in r.message
    assert status(ctx).training["stopped"] is False
    assert len(audit(ctx).entries) == before


def test_stop_training_needs_a_reason(ctx):
    with pytest.raises(UsageError):
        stop_training(ctx, reason="  ")


def test_audit_filters_by_verb_actor_and_since(make_ctx):
    stop_training(make_ctx("alice"), reason="a")
    resume(make_ctx("bob"))
    assert [e["verb"] for e in audit(make_ctx(), verb="resume").entries] == ["resume"]
    assert [e["actor"] for e in audit(make_ctx(), actor="alice").entries] == ["alice"]
    assert audit(make_ctx(), since="1h").entries
    assert not audit(make_ctx(), since="2999-01-01").entries
    with pytest.raises(UsageError):
        audit(make_ctx(), since="yesterday-ish")


def test_resume_roll_through_relaxes_the_drift_slo_and_purges_nothing(ctx):
    from lifelong_cli.ops.check import evaluate

    stop_training(ctx, reason="drift: holiday traffic")
    r = resume(ctx, reason="it is the holiday sale", roll_through=True)
    assert r.changed and "rolling through" in r.message
    drift = next(p for p in evaluate(ctx) if p["policy"] == "drift")
    assert drift["relaxed_until"] is not None
    (e,) = audit(ctx, verb="resume").entries
    assert e["args"]["roll_through"] is True and e["detail"]["drift_relaxed_hours"] == 24
    with ctx.store.tx(write=False) as t:
        assert t.scalar("SELECT count(*) FROM purge_rules") == 0


def _with_other(ctx, make_ctx):
    from lifelong_cli.store import models

    with ctx.store.tx() as t:
        models.add(t, name="other", actor="tester", now=ctx.now(), data_prefix="other")
    return make_ctx(overrides={"model.name": "other"})


def test_stop_training_of_one_model_leaves_the_other_training(ctx, make_ctx):
    other = _with_other(ctx, make_ctx)
    stop_training(ctx, reason="demo's upstream")
    assert status(ctx).training["stopped"] is True
    assert status(other).training["stopped"] is False
    assert not resume(other).changed


def test_stop_training_all_models_stops_each_with_its_own_audit_entry(ctx, make_ctx):
    from lifelong_cli.ops.stop_training import stop_training_all_models

    other = _with_other(ctx, make_ctx)
    stop_training(other, reason="earlier")
    r = stop_training_all_models(ctx, reason="shared upstream broken")
    assert {m.model: m.changed for m in r.models} == {"demo": True, "other": False}
    assert r.changed and "1 of 2" in r.message
    for c, outcome in ((ctx, "ok"), (other, "noop")):
        assert status(c).training["stopped"] is True
        (e,) = [e for e in audit(c, verb="stop-training").entries if e["reason"] == "shared upstream broken"]
        assert e["model"] == c.model and e["outcome"] == outcome and e["args"]["all_models"] is True


def test_stop_training_all_models_dry_run_changes_nothing(ctx, make_ctx):
    from lifelong_cli.ops.stop_training import stop_training_all_models

    other = _with_other(ctx, make_ctx)
    r = stop_training_all_models(ctx, reason="x", dry_run=True)
    assert r.dry_run and not r.changed and [m.model for m in r.models] == ["demo", "other"]
    assert not status(ctx).training["stopped"] and not status(other).training["stopped"]
