"""The audit log is append-only in the database itself, scrubs secrets, and links to open incidents."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.exc import DBAPIError

from lifelong_cli.errors import UnavailableError
from lifelong_cli.ops.audit import audit
from lifelong_cli.ops.stop_training import stop_training
from lifelong_cli.store import audit as audit_store
from lifelong_cli.store.schema import audit_log, incidents


@pytest.mark.parametrize("stmt", [update(audit_log).values(reason="rewritten"), delete(audit_log)])
def test_audit_rows_cannot_be_updated_or_deleted(ctx, stmt):
    stop_training(ctx, reason="x")
    with pytest.raises((DBAPIError, UnavailableError)), ctx.store.transaction() as c:
        c.execute(stmt)
    assert [e["reason"] for e in audit(ctx, verb="stop-training").entries] == ["x"]


def test_secret_arguments_are_masked(ctx):
    with ctx.store.tx() as c:
        audit_store.append(c, ts=ctx.now(), actor="a", verb="v", args={"store_url": "postgresql://u:pw@h/db",
                           "admin_token": "s3cret", "reason": "ok"}, reason=None, outcome="ok")
    e = audit(ctx, verb="v").entries[0]
    assert e["args"] == {"store_url": "***", "admin_token": "***", "reason": "ok"}


def test_actions_during_an_open_incident_are_linked_to_it(ctx):
    with ctx.store.transaction() as c:
        iid = c.execute(insert(incidents).values(title="t", severity="sev2", status="open", opened_at=ctx.now(),
                                                 opened_by="a")).inserted_primary_key[0]
    stop_training(ctx, reason="during incident")
    assert [e["verb"] for e in audit(ctx, incident=iid).entries] == ["stop-training"]
