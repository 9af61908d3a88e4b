"""Serving replicas as the store sees them: each `llctl serve` process reports what it serves and
the deployment generation it has applied. Changes to the deployment row wait here until every live
replica has confirmed them (fast door: no HTTP client, no SQLAlchemy)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from lifelong_cli.store.sql import Tx

TYPES = {"started_at": "ts", "heartbeat_at": "ts", "fallback_mode": "bool", "detail": "json"}
_COLS = ("id", "model", "url", "host", "pid", "started_at", "heartbeat_at", "status", "generation", "stable_version",
         "canary_version", "fallback_mode", "detail")


def live(t: Tx, model: str, *, now: datetime, ttl_seconds: float) -> list[dict[str, Any]]:
    """Replicas serving ``model`` that reported within ``ttl_seconds`` and have not shut down."""
    return t.rows(f"SELECT {', '.join(_COLS)} FROM replicas WHERE model = :m AND heartbeat_at >= :since "
                  "AND status <> 'stopped' ORDER BY id", {"m": model, "since": now - timedelta(seconds=ttl_seconds)},
                  types=TYPES)


def report(t: Tx, model: str, *, id: str, url: str | None, host: str, pid: int, started_at: datetime,
           heartbeat_at: datetime, status: str, generation: int | None, stable_version: int | None,
           canary_version: int | None, fallback_mode: bool, detail: dict[str, Any]) -> None:
    """A replica's heartbeat for ``model``: what it serves now (one row per replica and model)."""
    row = {"id": id, "model": model, "url": url, "host": host, "pid": pid, "started_at": started_at,
           "heartbeat_at": heartbeat_at, "status": status, "generation": generation, "stable_version": stable_version,
           "canary_version": canary_version, "fallback_mode": fallback_mode, "detail": detail}
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLS if c not in ("id", "model", "started_at"))
    t.execute(f"INSERT INTO replicas ({', '.join(_COLS)}) VALUES ({', '.join(':' + c for c in _COLS)}) "
              f"ON CONFLICT (id, model) DO UPDATE SET {updates}", row)


def get(t: Tx, model: str, replica_id: str) -> dict[str, Any] | None:
    """One replica's row for ``model``, live or not."""
    return t.row(f"SELECT {', '.join(_COLS)} FROM replicas WHERE model = :m AND id = :id",
                 {"m": model, "id": replica_id}, types=TYPES)


def wait_for(ctx: Any, generation: int) -> dict[str, Any]:
    """Poll until every live replica of ``ctx.model`` has applied ``generation`` (or the timeout passes).

    Returns {"replicas": n, "confirmed": [ids], "unconfirmed": [ids], "seconds": s} — seconds from
    the call until the last confirmation (or the timeout)."""
    s = ctx.config.settings.serving
    t0 = time.monotonic()
    while True:
        with ctx.store.tx(write=False) as t:
            rows = live(t, ctx.model, now=ctx.now(), ttl_seconds=s.replica_ttl_seconds)
        done = [r["id"] for r in rows if (r["generation"] or -1) >= generation]
        waiting = [r["id"] for r in rows if (r["generation"] or -1) < generation]
        elapsed = time.monotonic() - t0
        if not waiting or elapsed >= s.confirm_timeout_seconds:
            return {"replicas": len(rows), "confirmed": done, "unconfirmed": waiting, "seconds": round(elapsed, 3)}
        time.sleep(0.02)


def describe(confirm: dict[str, Any] | None) -> str:
    """One clause for a verb's message."""
    if confirm is None:
        return ""
    if not confirm["replicas"]:
        return "; no live serving replica to confirm it"
    if confirm["unconfirmed"]:
        return (f"; {len(confirm['confirmed'])} of {confirm['replicas']} replica(s) confirmed within "
                f"{confirm['seconds']:.1f} s, NOT yet: {', '.join(confirm['unconfirmed'])}")
    return f"; all {confirm['replicas']} live replica(s) confirmed in {confirm['seconds']:.2f} s"


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def live_by_model(t: Tx, *, now: datetime, ttl_seconds: float) -> dict[str, dict[str, Any]]:
    """Per model: live replicas (reported within ``ttl_seconds``, not shut down) and the lowest
    deployment generation one of them has applied."""
    rows = t.rows("SELECT model, count(*) AS n, min(generation) AS lowest FROM replicas WHERE heartbeat_at >= :since "
                  "AND status <> 'stopped' GROUP BY model", {"since": now - timedelta(seconds=ttl_seconds)})
    return {r["model"]: {"live": int(r["n"]), "lowest_generation": r["lowest"]} for r in rows}
