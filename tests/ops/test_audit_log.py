"""The audit log is append-only in the database itself, scrubs secrets, and links to open incidents;
`audit` shows the model's entries and the store-wide ones, never another model's."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DBAPIError

from lifelong_cli.errors import UnavailableError
from lifelong_cli.ops.audit import audit
from lifelong_cli.ops.stop_training import stop_training
from lifelong_cli.store import audit as audit_store
from lifelong_cli.store import incidents, models
from lifelong_cli.store.schema import audit_log


@pytest.fixture
def other(ctx, make_ctx):
    """A second model, ``other``, in the same store."""
    with ctx.store.tx() as t:
        models.add(t, name="other", actor="tester", now=ctx.now(), data_prefix="other")
    return make_ctx(overrides={"model.name": "other"})


@pytest.mark.parametrize("stmt", [update(audit_log).values(reason="rewritten"), delete(audit_log)])
def test_audit_rows_cannot_be_updated_or_deleted(ctx, stmt):
    stop_training(ctx, reason="x")
    with pytest.raises((DBAPIError, UnavailableError)), ctx.store.engine.begin() as c:
        c.execute(stmt)
    assert [e["reason"] for e in audit(ctx, verb="stop-training").entries] == ["x"]


def test_secret_arguments_are_masked(ctx):
    with ctx.store.tx() as c:
        audit_store.append(c, model=ctx.model, ts=ctx.now(), actor="a", verb="v",
                           args={"store_url": "postgresql://u:pw@h/db", "admin_token": "s3cret", "reason": "ok"},
                           reason=None, outcome="ok")
    e = audit(ctx, verb="v").entries[0]
    assert e["args"] == {"store_url": "***", "admin_token": "***", "reason": "ok"}


def test_actions_during_an_open_incident_are_linked_to_it(ctx):
    with ctx.store.tx() as t:
        iid = incidents.add(t, ctx.model, title="t", severity="sev2", now=ctx.now(), actor="a")
    stop_training(ctx, reason="during incident")
    assert [e["verb"] for e in audit(ctx, incident=iid).entries] == ["stop-training"]


def test_audit_shows_the_models_entries_and_the_store_wide_ones_only(ctx, other):
    stop_training(ctx, reason="demo's")
    stop_training(other, reason="other's")
    with ctx.store.tx() as t:
        audit_store.append(t, model=None, ts=ctx.now(), actor="a", verb="store-wide", args={}, reason="everyone's",
                           outcome="ok")
    mine = [(e["verb"], e["reason"], e["model"]) for e in audit(ctx).entries if e["verb"] != "init"]
    theirs = [(e["verb"], e["reason"], e["model"]) for e in audit(other).entries]
    assert mine == [("stop-training", "demo's", "demo"), ("store-wide", "everyone's", None)]
    assert theirs == [("stop-training", "other's", "other"), ("store-wide", "everyone's", None)]
