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


def open_incident_id(t: Tx, model: str | None) -> int | None:
    """The newest open incident of this model, or else of the whole store (an incident of no model)."""
    return t.scalar("SELECT id FROM incidents WHERE status = 'open' AND (model = :m OR model IS NULL) "
                    "ORDER BY (CASE WHEN model IS NULL THEN 1 ELSE 0 END), id DESC LIMIT 1", {"m": model})


_OPEN = object()


def append(t: Tx, *, model: str | None, ts: datetime, actor: str, verb: str, args: Mapping[str, Any],
           reason: str | None, outcome: str, detail: Mapping[str, Any] | None = None,
           incident_id: Any = _OPEN) -> int:
    """Append one entry for ``model`` (None: store-wide), linked to ``incident_id`` — by default the
    model's newest open incident, if any."""
    from lifelong_cli.secrets import mask, mask_obj

    linked = open_incident_id(t, model) if incident_id is _OPEN else incident_id
    return t.insert("audit_log", {"ts": ts, "actor": actor, "verb": verb, "args": mask_obj(scrub(args)),
                                  "reason": mask(reason) if reason else reason, "outcome": outcome,
                                  "detail": mask_obj(dict(detail or {})), "model": model, "incident_id": linked})


def query(t: Tx, *, model: str | None = None, verb: str | None = None, actor: str | None = None,
          since: datetime | None = None, incident_id: int | None = None, limit: int | None = None
          ) -> list[dict[str, Any]]:
    """Entries oldest first (the newest ``limit`` of them when a limit is given); with ``model``, that
    model's entries and the store-wide ones."""
    where, params = [], {}
    if model is not None:
        where.append("(model = :model OR model IS NULL)")
        params["model"] = model
    for col, val, op in (("verb", verb, "="), ("actor", actor, "="), ("ts", since, ">="),
                         ("incident_id", incident_id, "=")):
        if val is not None:
            where.append(f"{col} {op} :{col}")
            params[col] = val
    sql = ("SELECT id, ts, actor, verb, args, reason, outcome, detail, incident_id, model FROM audit_log"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    rows = t.rows(sql, params, types=TYPES)
    rows.reverse()
    return rows


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def counts(t: Tx) -> list[dict[str, Any]]:
    """(model, verb, outcome, n) over the whole log; ``model`` None for store-wide entries. The log is
    append-only, so each count only grows: a Prometheus counter."""
    return t.rows("SELECT model, verb, outcome, count(*) AS n FROM audit_log GROUP BY model, verb, outcome "
                  "ORDER BY model, verb, outcome")


def fallback_activations(t: Tx) -> dict[str, int]:
    """Per model: how many times `fallback on` changed something (turned it on, or changed its strategy)."""
    out: dict[str, int] = {}
    for r in t.rows("SELECT model, args FROM audit_log WHERE verb = 'fallback' AND outcome = 'ok' "
                    "AND model IS NOT NULL", types={"args": "json"}):
        if (r["args"] or {}).get("on"):
            out[r["model"]] = out.get(r["model"], 0) + 1
    return out
