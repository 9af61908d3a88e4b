"""The deployment row: what serving follows. Every change bumps ``generation`` with a
compare-and-set, so two engineers acting at once cannot silently overwrite each other."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from lifelong_cli.errors import GenerationConflictError
from lifelong_cli.store.schema import deployment

_ROW = deployment.c.id == 1


def get(conn: Connection, *, lock: bool = False) -> dict[str, Any]:
    q = select(deployment).where(_ROW)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return dict(conn.execute(q).mappings().one())


def compare_and_set(
    conn: Connection, *, expected_generation: int, actor: str, now: datetime, **changes: Any
) -> int:
    """Apply ``changes`` if the generation is still ``expected_generation``; returns the new one."""
    res = conn.execute(
        update(deployment)
        .where(_ROW, deployment.c.generation == expected_generation)
        .values(generation=deployment.c.generation + 1, updated_at=now, updated_by=actor, **changes)
    )
    if res.rowcount != 1:
        current = get(conn)["generation"]
        raise GenerationConflictError(
            f"deployment changed while this command ran (generation {expected_generation} → {current})",
            hint="run `llctl status` to see the current state, then retry",
        )
    return expected_generation + 1


def update_locked(conn: Connection, *, actor: str, now: datetime, **changes: Any) -> int:
    """Lock the row, then compare-and-set against what was read: the usual write path."""
    row = get(conn, lock=True)
    return compare_and_set(conn, expected_generation=row["generation"], actor=actor, now=now, **changes)
