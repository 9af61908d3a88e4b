"""Ingested batches of each model: examples, labels, feedback and golden sets, with their segments,
quarantine segments and drift reports. Batch ids are global integers, but every lookup here is
scoped to a model: batch N of another model is "not found"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lifelong_cli.store.sql import Tx

TYPES = {"created_at": "ts", "event_time_min": "ts", "event_time_max": "ts", "drifted": "bool", "drift": "json",
         "detail": "json"}
COLS = ("id, model, kind, source, content_hash, status, input, created_at, created_by, rows_read, rows_accepted, "
        "rows_quarantined, rows_duplicate, rows_trainable, event_time_min, event_time_max, segment_path, "
        "quarantine_path, drifted, drift, detail")
_INSERTABLE = tuple(c.strip() for c in COLS.split(",") if c.strip() != "id")
_DEFAULTS = {"rows_read": 0, "rows_accepted": 0, "rows_quarantined": 0, "rows_duplicate": 0, "rows_trainable": 0,
             "detail": {}}  # the schema's defaults are SQLAlchemy's (client side), not the database's


@dataclass(frozen=True)
class BatchRef:
    """What the data reader needs of an accepted batch to read its segment."""

    id: int
    kind: str
    source: str
    segment_path: str


def for_reading(t: Tx, model: str, kinds: Iterable[str] | None = None, *,
                created_before: datetime | None = None) -> list[BatchRef]:
    """The model's accepted batches that have a segment, oldest first (optionally only ``kinds``, and
    only those ingested at or before ``created_before``): the input of ``data.reader``."""
    sql = ("SELECT id, kind, source, segment_path FROM batches WHERE model = :m AND status = 'accepted' "
           "AND segment_path IS NOT NULL")
    params: dict[str, Any] = {"m": model}
    kinds = list(kinds or [])
    if kinds:
        sql += " AND kind IN (" + ", ".join(f":k{i}" for i in range(len(kinds))) + ")"
        params.update({f"k{i}": k for i, k in enumerate(kinds)})
    if created_before is not None:
        sql += " AND created_at <= :before"
        params["before"] = created_before
    return [BatchRef(r["id"], r["kind"], r["source"], r["segment_path"]) for r in t.rows(sql + " ORDER BY id", params)]


def get(t: Tx, model: str, batch_id: int) -> dict[str, Any] | None:
    """Batch ``batch_id`` if it belongs to ``model``."""
    return t.row(f"SELECT {COLS} FROM batches WHERE model = :m AND id = :id", {"m": model, "id": batch_id},
                 types=TYPES)


def every(t: Tx, model: str) -> list[dict[str, Any]]:
    """All of the model's batches (any kind and status), oldest first."""
    return t.rows(f"SELECT {COLS} FROM batches WHERE model = :m ORDER BY id", {"m": model}, types=TYPES)


def accepted_twin(t: Tx, model: str, kind: str, content_hash: str) -> int | None:
    """The model's accepted batch of this kind with the same content, if any (re-ingest is a no-op)."""
    return t.scalar("SELECT id FROM batches WHERE model = :m AND kind = :k AND content_hash = :h "
                    "AND status = 'accepted'", {"m": model, "k": kind, "h": content_hash})


def held_twin(t: Tx, model: str, kind: str, content_hash: str) -> dict[str, Any] | None:
    """The model's batch on hold with this content, if any (re-ingesting it is a no-op too)."""
    return t.row(f"SELECT {COLS} FROM batches WHERE model = :m AND kind = :k AND content_hash = :h "
                 "AND status = 'held' ORDER BY id DESC LIMIT 1", {"m": model, "k": kind, "h": content_hash}, types=TYPES)


def held(t: Tx, model: str) -> list[dict[str, Any]]:
    """The model's batches on hold (stored, not trainable until released), oldest first."""
    return t.rows(f"SELECT {COLS} FROM batches WHERE model = :m AND status = 'held' ORDER BY id", {"m": model},
                  types=TYPES)


def close_hold(t: Tx, model: str, batch_id: int, *, status: str, detail: dict[str, Any]) -> bool:
    """Move a held batch to ``status`` (released | rejected), merging ``detail``; False when it was
    no longer held (a concurrent release or reject got there first)."""
    row = get(t, model, batch_id)
    if row is None or row["status"] != "held":
        return False
    cur = t.execute("UPDATE batches SET status = :s, detail = :d WHERE model = :m AND id = :id AND status = 'held'",
                    {"s": status, "d": {**(row["detail"] or {}), **detail}, "m": model, "id": batch_id})
    return cur.rowcount == 1


def add(t: Tx, model: str, **values: Any) -> int | None:
    """Record a batch; its id, or None when an accepted twin (same model, kind and content) was
    committed first by a concurrent ingest (the unique index: the insert then does nothing)."""
    unknown = set(values) - set(_INSERTABLE)
    if unknown:
        raise TypeError(f"not columns of batches: {sorted(unknown)}")
    row = {"model": model, **_DEFAULTS, **values}
    cols = list(row)
    sql = (f"INSERT INTO batches ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
           "ON CONFLICT DO NOTHING")
    if t.postgres:
        got = t.execute(sql + " RETURNING id", row).fetchone()
        return None if got is None else got[0]
    cur = t.execute(sql, row)
    return cur.lastrowid if cur.rowcount == 1 else None


def set_segment_path(t: Tx, model: str, batch_id: int, path: str) -> None:
    """Point the batch at a rewritten segment (purge-data --hard)."""
    t.execute("UPDATE batches SET segment_path = :p WHERE model = :m AND id = :id",
              {"p": path, "m": model, "id": batch_id})


def set_counts(t: Tx, model: str, batch_id: int, *, rows_trainable: int, rows_holdout: int,
               labels_waiting: int) -> None:
    """The batch's trainable, hold-out and waiting counts, once it is stored (ingest counts them as train reads)."""
    row = get(t, model, batch_id)
    if row is None:
        return
    detail = {**(row.get("detail") or {}), "rows_holdout": rows_holdout, "labels_waiting": labels_waiting}
    t.execute("UPDATE batches SET rows_trainable = :n, detail = :d WHERE model = :m AND id = :id",
              {"n": rows_trainable, "d": detail, "m": model, "id": batch_id})


def with_quarantine(t: Tx, model: str) -> list[dict[str, Any]]:
    """The model's batches that have quarantined rows, newest first."""
    return t.rows(f"SELECT {COLS} FROM batches WHERE model = :m AND rows_quarantined > 0 ORDER BY id DESC",
                  {"m": model}, types=TYPES)


def newest_drift(t: Tx, model: str) -> dict[str, Any] | None:
    """The model's newest batch that was checked for drift."""
    return t.row(f"SELECT {COLS} FROM batches WHERE model = :m AND drifted IS NOT NULL ORDER BY id DESC LIMIT 1",
                 {"m": model}, types=TYPES)


def recent_examples(t: Tx, model: str, n: int) -> list[dict[str, Any]]:
    """The model's newest ``n`` accepted or held examples batches (id, drifted), newest first."""
    return t.rows("SELECT id, drifted FROM batches WHERE model = :m AND status IN ('accepted', 'held') "
                  "AND kind = 'examples' "
                  f"ORDER BY id DESC LIMIT {int(n)}", {"m": model}, types={"drifted": "bool"})


def summary(t: Tx, model: str) -> dict[str, Any]:
    """Counts for `status`: accepted batches (n, rows accepted and quarantined, newest ingest and event
    time) and rejected batches."""
    row = t.row("SELECT count(*) AS n, max(created_at) AS last_at, max(event_time_max) AS newest, "
                "coalesce(sum(rows_accepted), 0) AS accepted, coalesce(sum(rows_quarantined), 0) AS quarantined "
                "FROM batches WHERE model = :m AND status = 'accepted'", {"m": model},
                types={"last_at": "ts", "newest": "ts"})
    row["rejected"] = t.scalar("SELECT count(*) FROM batches WHERE model = :m AND status = 'rejected'", {"m": model})
    row["held"] = t.scalar("SELECT count(*) FROM batches WHERE model = :m AND status = 'held'", {"m": model})
    return row


def created_at_of(t: Tx, model: str | None, ids: Iterable[int]) -> list[dict[str, Any]]:
    """(id, created_at) of the given batches of ``model`` (None: of any model, for a store-wide incident)."""
    ids = [int(i) for i in ids]
    if not ids:
        return []
    params: dict[str, Any] = {f"b{i}": b for i, b in enumerate(ids)}
    sql = "SELECT id, created_at FROM batches WHERE id IN (" + ", ".join(f":b{i}" for i in range(len(ids))) + ")"
    if model is not None:
        sql += " AND model = :m"
        params["m"] = model
    return t.rows(sql + " ORDER BY id", params, types={"created_at": "ts"})


def segment_paths(t: Tx, model: str | None = None) -> list[dict[str, Any]]:
    """(id, model, status, segment_path, quarantine_path) of every batch of ``model`` (None: of every
    model — `doctor` checks the files of the whole data root)."""
    sql = "SELECT id, model, status, segment_path, quarantine_path FROM batches"
    params: dict[str, Any] = {}
    if model is not None:
        sql += " WHERE model = :m"
        params["m"] = model
    return t.rows(sql + " ORDER BY id", params)


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def totals_by_model(t: Tx) -> list[dict[str, Any]]:
    """Per model, kind and status: batches, their rows (read, accepted, quarantined, duplicate), how many
    drifted, the newest ingest and the newest event time (one query for every model)."""
    return t.rows("SELECT model, kind, status, count(*) AS n, coalesce(sum(rows_read), 0) AS rows_read, "
                  "coalesce(sum(rows_accepted), 0) AS rows_accepted, "
                  "coalesce(sum(rows_quarantined), 0) AS rows_quarantined, "
                  "coalesce(sum(rows_duplicate), 0) AS rows_duplicate, "
                  "coalesce(sum(CASE WHEN drifted = :t THEN 1 ELSE 0 END), 0) AS drifted, "
                  "max(created_at) AS last_at, max(event_time_max) AS newest "
                  "FROM batches GROUP BY model, kind, status ORDER BY model, kind, status", {"t": True},
                  types={"last_at": "ts", "newest": "ts"})
