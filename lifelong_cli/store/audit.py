"""The append-only audit log (the database refuses UPDATE and DELETE on it: see migration 0001)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lifelong_cli.store.sql import Tx

SECRET_KEYS = ("password", "token", "secret", "url")
TYPES = {"ts": "ts", "args": "json", "detail": "json"}


def scrub(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as they may be stored: secrets and URLs (which can carry passwords) masked."""
    return {k: ("***" if any(s in k.lower() for s in SECRET_KEYS) and v else v) for k, v in args.items()}


def open_incident_id(t: Tx) -> int | None:
    return t.scalar("SELECT id FROM incidents WHERE status = 'open' ORDER BY id DESC LIMIT 1")


def append(t: Tx, *, ts: datetime, actor: str, verb: str, args: Mapping[str, Any], reason: str | None,
           outcome: str, detail: Mapping[str, Any] | None = None) -> int:
    """Append one entry, linked to the newest open incident if there is one."""
    return t.insert("audit_log", {"ts": ts, "actor": actor, "verb": verb, "args": scrub(args), "reason": reason,
                                  "outcome": outcome, "detail": dict(detail or {}),
                                  "incident_id": open_incident_id(t)})


def query(t: Tx, *, verb: str | None = None, actor: str | None = None, since: datetime | None = None,
          incident_id: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Entries oldest first (the newest ``limit`` of them when a limit is given)."""
    where, params = [], {}
    for col, val, op in (("verb", verb, "="), ("actor", actor, "="), ("ts", since, ">="),
                         ("incident_id", incident_id, "=")):
        if val is not None:
            where.append(f"{col} {op} :{col}")
            params[col] = val
    sql = ("SELECT id, ts, actor, verb, args, reason, outcome, detail, incident_id FROM audit_log"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    rows = t.rows(sql, params, types=TYPES)
    rows.reverse()
    return rows
