"""SLO relaxations, per model: a policy relaxed until a time is reported but not counted as violated
(``llctl check --relax``; ``resume --roll-through`` relaxes drift)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifelong_cli.store.sql import Tx


def relax(t: Tx, model: str, *, policy: str, until: datetime, now: datetime, actor: str, reason: str) -> None:
    t.insert("slo_relaxations", {"model": model, "policy": policy, "until": until, "created_at": now,
                                 "created_by": actor, "reason": reason})


def relaxed(t: Tx, model: str, *, now: datetime) -> dict[str, datetime]:
    """Policy → the end of its latest relaxation window, for the policies of ``model`` relaxed at ``now``."""
    return {r["policy"]: r["until"] for r in t.rows(
        "SELECT policy, max(until) AS until FROM slo_relaxations WHERE model = :m AND until > :now GROUP BY policy",
        {"m": model, "now": now}, types={"until": "ts"})}


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def relaxed_all(t: Tx, *, now: datetime) -> list[dict[str, Any]]:
    """(model, policy, until) of every policy of every model relaxed at ``now``."""
    return t.rows("SELECT model, policy, max(until) AS until FROM slo_relaxations WHERE until > :now "
                  "GROUP BY model, policy ORDER BY model, policy", {"now": now}, types={"until": "ts"})
