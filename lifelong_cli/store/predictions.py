"""The prediction log and the feedback serving received, per model: what replicas write in batches,
what the canary analysis and `feedback export` read back (fast door: plain SQL on a ``Tx``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lifelong_cli.store.sql import Tx

PREDICTION_COLS = ("ts", "request_id", "replica", "version", "variant", "n_rows", "keys", "output", "latency_ms", "ok",
                   "error", "shadow")
FEEDBACK_COLS = ("ts", "request_id", "row_index", "label", "replica")
TYPES = {"ts": "ts", "keys": "json", "output": "json", "shadow": "json", "ok": "bool"}
_ARM = "model = :m AND ts >= :since AND variant = :arm AND version = :v"


def add(t: Tx, model: str, *, predictions: list[Mapping[str, Any]] = (),
        feedback: list[Mapping[str, Any]] = ()) -> None:
    """Append prediction records (PREDICTION_COLS) and feedback labels (FEEDBACK_COLS) of ``model``."""
    t.insert_many("predictions", [{"model": model, **{c: r.get(c) for c in PREDICTION_COLS}} for r in predictions])
    t.insert_many("feedback", [{"model": model, **{c: r.get(c) for c in FEEDBACK_COLS}} for r in feedback])


def arm_counts(t: Tx, model: str, *, variant: str, version: int | None, since: datetime) -> dict[str, int]:
    """Requests and failed requests one arm of a canary answered since ``since``."""
    r = t.row(f"SELECT count(*) AS n, sum(CASE WHEN ok = :t THEN 0 ELSE 1 END) AS errors FROM predictions WHERE {_ARM}",
              {"m": model, "since": since, "arm": variant, "v": version, "t": True})
    return {"requests": int(r["n"] or 0), "errors": int(r["errors"] or 0)}


def arm_recent(t: Tx, model: str, *, variant: str, version: int | None, since: datetime, limit: int
               ) -> list[dict[str, Any]]:
    """The newest ``limit`` answered requests of one arm: latency, output and stable's shadow answer."""
    return t.rows(f"SELECT latency_ms, output, shadow FROM predictions WHERE {_ARM} AND ok = :t "
                  f"ORDER BY id DESC LIMIT {int(limit)}",
                  {"m": model, "since": since, "arm": variant, "v": version, "t": True}, types=TYPES)


def labelled_canary(t: Tx, model: str, *, version: int | None, since: datetime, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` feedback labels given to the canary's answered requests (with stable's shadow
    answer to the same rows), since ``since``."""
    return t.rows(f"SELECT p.output, p.shadow, f.row_index, f.label FROM predictions p JOIN feedback f "
                  f"ON f.model = p.model AND f.request_id = p.request_id WHERE p.model = :m AND p.ok = :t "
                  f"AND p.variant = 'canary' AND p.version = :v AND p.ts >= :since AND p.shadow IS NOT NULL "
                  f"ORDER BY f.id DESC LIMIT {int(limit)}",
                  {"m": model, "t": True, "v": version, "since": since}, types=TYPES)


def feedback_with_keys(t: Tx, model: str, *, after_id: int = 0) -> list[dict[str, Any]]:
    """Feedback labels after ``after_id``, oldest first, each with the example keys its request carried."""
    return t.rows("SELECT f.id, f.ts, f.row_index, f.label, p.keys FROM feedback f JOIN predictions p "
                  "ON p.model = f.model AND p.request_id = f.request_id AND p.ok = :t "
                  "WHERE f.model = :m AND f.id > :after ORDER BY f.id",
                  {"m": model, "after": after_id, "t": True}, types=TYPES)


def last_feedback_id(t: Tx, model: str) -> int | None:
    return t.scalar("SELECT max(id) FROM feedback WHERE model = :m", {"m": model})


def traffic_between(t: Tx, model: str, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Every request ``model`` answered in [start, end], oldest first: time, version, variant, ok."""
    return t.rows("SELECT ts, version, variant, ok FROM predictions WHERE model = :m AND ts >= :a AND ts <= :b "
                  "ORDER BY ts", {"m": model, "a": start, "b": end}, types=TYPES)


def counts(t: Tx, model: str) -> dict[str, int]:
    """How many prediction records and feedback labels ``model`` has in the store."""
    return {"predictions": int(t.scalar("SELECT count(*) FROM predictions WHERE model = :m", {"m": model}) or 0),
            "feedback": int(t.scalar("SELECT count(*) FROM feedback WHERE model = :m", {"m": model}) or 0)}
