"""Purge rules of each model: conditions on rows that hide them from every read (soft), or that
were applied by rewriting the segments (hard). A rule only ever hides its own model's rows; rule ids
are global integers, but rule N of another model is "not found"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifelong_cli.store.sql import Tx

TYPES = {"created_at": "ts", "undone_at": "ts", "spec": "json", "active": "bool", "hard": "bool",
         "blast_radius": "json"}
COLS = ("id, model, created_at, created_by, reason, spec, active, hard, rows_affected, blast_radius, undone_at, "
        "undone_by, undo_reason")


def active(t: Tx, model: str) -> list[dict[str, Any]]:
    """The model's soft rules in force (id, spec), oldest first: what ``data.reader`` applies."""
    return t.rows("SELECT id, spec FROM purge_rules WHERE model = :m AND active = :t ORDER BY id",
                  {"m": model, "t": True}, types={"spec": "json"})


def in_force(t: Tx, model: str) -> list[dict[str, Any]]:
    """The model's rules whose rows are gone from reads: active soft rules and every hard one
    (id, spec, blast_radius), oldest first."""
    return t.rows("SELECT id, spec, blast_radius FROM purge_rules WHERE model = :m AND (active = :t OR hard = :t) "
                  "ORDER BY id", {"m": model, "t": True}, types={"spec": "json", "blast_radius": "json"})


def get(t: Tx, model: str, rule_id: int) -> dict[str, Any] | None:
    """Rule ``rule_id`` if it belongs to ``model``."""
    return t.row(f"SELECT {COLS} FROM purge_rules WHERE model = :m AND id = :id", {"m": model, "id": rule_id},
                 types=TYPES)


def add(t: Tx, model: str, *, now: datetime, actor: str, reason: str, spec: dict[str, Any], hard: bool,
        rows_affected: int, blast_radius: dict[str, Any]) -> int:
    """Record a rule (active unless ``hard``: a hard rule's rows are already gone); its id."""
    return t.insert("purge_rules", {"model": model, "created_at": now, "created_by": actor, "reason": reason,
                                    "spec": spec, "active": not hard, "hard": hard, "rows_affected": rows_affected,
                                    "blast_radius": blast_radius})


def undo(t: Tx, model: str, rule_id: int, *, now: datetime, actor: str, reason: str | None) -> bool:
    """Deactivate an active soft rule; False if it was not active (already undone, or hard)."""
    cur = t.execute("UPDATE purge_rules SET active = :f, undone_at = :now, undone_by = :by, undo_reason = :why "
                    "WHERE model = :m AND id = :id AND active = :t AND hard = :f",
                    {"f": False, "t": True, "now": now, "by": actor, "why": reason, "m": model, "id": rule_id})
    return cur.rowcount == 1


def created_between(t: Tx, model: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Rules made in [start, end], oldest first, of ``model`` (None: of every model, for a store-wide
    incident)."""
    sql = f"SELECT {COLS} FROM purge_rules WHERE created_at >= :a AND created_at <= :b"
    params: dict[str, Any] = {"a": start, "b": end}
    if model is not None:
        sql += " AND model = :m"
        params["m"] = model
    return t.rows(sql + " ORDER BY id", params, types=TYPES)


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def counts(t: Tx) -> list[dict[str, Any]]:
    """(model, active, hard, n): purge rules per model and state."""
    return t.rows("SELECT model, active, hard, count(*) AS n FROM purge_rules GROUP BY model, active, hard "
                  "ORDER BY model", types={"active": "bool", "hard": "bool"})
