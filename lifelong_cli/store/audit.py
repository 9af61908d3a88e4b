"""The append-only audit log (the database refuses UPDATE and DELETE on it: see migration 0001)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from lifelong_cli.store.schema import audit_log, incidents

SECRET_KEYS = ("password", "token", "secret", "url")


def scrub(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as they may be stored: secrets and URLs (which can carry passwords) masked."""
    return {k: ("***" if any(s in k.lower() for s in SECRET_KEYS) and v else v) for k, v in args.items()}


def open_incident_id(conn: Connection) -> int | None:
    row = conn.execute(
        select(incidents.c.id).where(incidents.c.status == "open").order_by(incidents.c.id.desc()).limit(1)
    ).first()
    return row[0] if row else None


def append(
    conn: Connection,
    *,
    ts: datetime,
    actor: str,
    verb: str,
    args: Mapping[str, Any],
    reason: str | None,
    outcome: str,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append one entry, linked to the newest open incident if there is one."""
    res = conn.execute(
        insert(audit_log).values(
            ts=ts,
            actor=actor,
            verb=verb,
            args=scrub(args),
            reason=reason,
            outcome=outcome,
            detail=dict(detail or {}),
            incident_id=open_incident_id(conn),
        )
    )
    return res.inserted_primary_key[0]


def query(
    conn: Connection,
    *,
    verb: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    incident_id: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Entries oldest first (the newest ``limit`` of them when a limit is given)."""
    q = select(audit_log)
    if verb:
        q = q.where(audit_log.c.verb == verb)
    if actor:
        q = q.where(audit_log.c.actor == actor)
    if since:
        q = q.where(audit_log.c.ts >= since)
    if incident_id is not None:
        q = q.where(audit_log.c.incident_id == incident_id)
    q = q.order_by(audit_log.c.id.desc())
    if limit:
        q = q.limit(limit)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    rows.reverse()
    return rows
