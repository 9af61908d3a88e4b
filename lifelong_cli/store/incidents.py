"""Incidents and their notes. An incident belongs to one model, or to none (``model`` NULL: the
whole store, e.g. a shared upstream gone bad). A model sees its own incidents and the store-wide
ones; ids stay global, so asking one model for another model's incident is "not found".

While an incident is open, audited actions are linked to it (``audit.open_incident_id``): its
timeline is the audit log plus its notes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifelong_cli.errors import NotFoundError
from lifelong_cli.store import audit
from lifelong_cli.store.sql import Tx

TYPES = {"opened_at": "ts", "closed_at": "ts"}
COLS = "id, model, title, severity, status, opened_at, opened_by, closed_at, closed_by, summary"
_MINE = "(model = :m OR model IS NULL)"


def get(t: Tx, incident_id: int) -> dict[str, Any] | None:
    return t.row(f"SELECT {COLS} FROM incidents WHERE id = :i", {"i": incident_id}, types=TYPES)


def require(t: Tx, model: str, incident_id: int) -> dict[str, Any]:
    """Incident ``incident_id`` if ``model`` may see it (its own or a store-wide one), else NotFoundError."""
    row = get(t, incident_id)
    if row is None or row["model"] not in (model, None):
        raise NotFoundError(f"model '{model}' has no incident {incident_id}", hint="`llctl incident list` shows them")
    return row


def open_for(t: Tx, model: str | None) -> dict[str, Any] | None:
    """The open incident that ``model``'s audited actions are linked to now: its newest open one, else
    the newest store-wide one (with ``model`` None: the newest store-wide one)."""
    iid = audit.open_incident_id(t, model)
    return None if iid is None else get(t, iid)


def list_for(t: Tx, model: str, *, open_only: bool = False) -> list[dict[str, Any]]:
    """``model``'s incidents and the store-wide ones, oldest first."""
    return t.rows(f"SELECT {COLS} FROM incidents WHERE {_MINE}" + (" AND status = 'open'" if open_only else "")
                  + " ORDER BY id", {"m": model}, types=TYPES)


def add(t: Tx, model: str | None, *, title: str, severity: str, now: datetime, actor: str) -> int:
    """Open an incident of ``model`` (None: store-wide); returns its id."""
    return t.insert("incidents", {"model": model, "title": title, "severity": severity, "status": "open",
                                  "opened_at": now, "opened_by": actor})


def add_note(t: Tx, incident_id: int, *, ts: datetime, actor: str, text: str) -> None:
    t.insert("incident_notes", {"incident_id": incident_id, "ts": ts, "actor": actor, "text": text})


def notes(t: Tx, incident_id: int) -> list[dict[str, Any]]:
    return t.rows("SELECT ts, actor, text FROM incident_notes WHERE incident_id = :i ORDER BY id",
                  {"i": incident_id}, types={"ts": "ts"})


def close(t: Tx, incident: dict[str, Any], *, now: datetime, actor: str, summary: str | None) -> bool:
    """Close it, and record the closing on its own timeline (after the UPDATE it is no longer the open
    incident an entry would link to by default); False if it was closed already. The entry names the
    incident's model (none for a store-wide incident)."""
    iid = incident["id"]
    cur = t.execute("UPDATE incidents SET status = 'closed', closed_at = :now, closed_by = :by, summary = :s "
                    "WHERE id = :i AND status = 'open'", {"now": now, "by": actor, "s": summary, "i": iid})
    if cur.rowcount != 1:
        return False
    audit.append(t, model=incident["model"], ts=now, actor=actor, verb="incident close", args={"incident": iid},
                 reason=summary, outcome="ok", detail={"incident": iid}, incident_id=iid)
    return True


def timeline(t: Tx, incident: dict[str, Any]) -> list[dict[str, Any]]:
    """Audit entries linked to the incident (of any model, for a store-wide one), with its notes, oldest first."""
    entries = [{"ts": e["ts"], "actor": e["actor"], "what": e["verb"], "outcome": e["outcome"], "reason": e["reason"],
                "args": e["args"], "detail": e["detail"], "model": e["model"]}
               for e in audit.query(t, incident_id=incident["id"])]
    noted = [{"ts": n["ts"], "actor": n["actor"], "what": "note", "outcome": "", "reason": n["text"], "args": {},
              "detail": {}, "model": incident["model"]} for n in notes(t, incident["id"])]
    return sorted(entries + noted, key=lambda e: e["ts"])


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def counts(t: Tx) -> list[dict[str, Any]]:
    """(model, status, n): incidents per model (``model`` None: store-wide) and status."""
    return t.rows("SELECT model, status, count(*) AS n FROM incidents GROUP BY model, status ORDER BY model, status")
