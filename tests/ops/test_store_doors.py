"""The DB-API door (every store module) and SQLAlchemy (the schema, and the migrations that write rows)
store values the same way: each reads the other's rows."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select

from lifelong_cli.store import audit, control, deployment
from lifelong_cli.store.schema import audit_log, incidents, training_control

T = datetime(2026, 11, 25, 3, 4, 5, 123456, tzinfo=UTC)


def test_rows_written_by_the_fast_door_read_back_through_sqlalchemy(ctx):
    with ctx.store.tx() as t:
        control.stop(t, ctx.model, actor="a", reason="r", now=T)
        audit.append(t, model=ctx.model, ts=T, actor="a", verb="v", args={"k": [1, 2]}, reason=None, outcome="ok", detail={"x": 1})
        deployment.update_locked(t, ctx.model, actor="a", now=T, fallback_mode=True, fallback_since=T)
    with ctx.store.engine.connect() as c:
        ctl = c.execute(select(training_control)).mappings().one()
        row = c.execute(select(audit_log).where(audit_log.c.verb == "v")).mappings().one()
    assert ctl["stopped"] is True and ctl["stopped_at"] == T
    assert row["ts"] == T and row["args"] == {"k": [1, 2]} and row["detail"] == {"x": 1}


def test_rows_written_through_sqlalchemy_read_back_through_the_fast_door(ctx):
    with ctx.store.engine.begin() as c:
        iid = c.execute(insert(incidents).values(title="t", severity="sev1", status="open", opened_at=T,
                                                 opened_by="a", model=ctx.model)).inserted_primary_key[0]
    with ctx.store.tx() as t:
        audit.append(t, model=ctx.model, ts=T, actor="a", verb="w", args={}, reason=None, outcome="ok")
    with ctx.store.tx(write=False) as t:
        (entry,) = audit.query(t, verb="w")
        inc = t.row("SELECT opened_at FROM incidents WHERE id = :i", {"i": iid}, types={"opened_at": "ts"})
    assert entry["ts"] == T and entry["incident_id"] == iid
    assert inc["opened_at"] == T
