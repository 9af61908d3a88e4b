"""Store-wide consistency checks for `doctor` (read-only; the per-model reads it needs live with their
tables: versions, batches)."""

from __future__ import annotations

from typing import Any

from lifelong_cli.store.sql import Tx


def models_state_rows(t: Tx) -> list[dict[str, Any]]:
    """Each model with how many deployment and training-control rows it has (one of each expected)."""
    return t.rows("SELECT m.name, (SELECT count(*) FROM deployment d WHERE d.model = m.name) AS deployment, "
                  "(SELECT count(*) FROM training_control c WHERE c.model = m.name) AS control "
                  "FROM models m ORDER BY m.name")


def append_only_guard(t: Tx) -> bool:
    """Whether the database refuses UPDATE and DELETE on the audit log (migration 0001's triggers)."""
    q = ("SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_log_append_only'" if t.postgres
         else "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_log_no_%'")
    return (t.scalar(q) or 0) >= 1
