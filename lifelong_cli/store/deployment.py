"""The deployment row of each model: what serving follows. Every change bumps ``generation`` with a
compare-and-set, so two engineers acting at once cannot silently overwrite each other."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifelong_cli.errors import GenerationConflictError
from lifelong_cli.store.sql import Tx

TYPES = {"canary_started_at": "ts", "fallback_since": "ts", "updated_at": "ts", "fallback_mode": "bool",
         "canary_step_started_at": "ts", "canary_analysis": "json"}
_COLS = ("model, stable_version, canary_version, canary_share, canary_step, canary_state, canary_started_at, "
         "fallback_mode, fallback_strategy, fallback_since, training_head, generation, updated_at, updated_by, "
         "canary_step_started_at, canary_analysis")


def get(t: Tx, model: str, *, lock: bool = False) -> dict[str, Any]:
    row = t.row(f"SELECT {_COLS} FROM deployment WHERE model = :m" + (" FOR UPDATE" if lock and t.postgres else ""),
                {"m": model}, types=TYPES)
    if row is None:
        from lifelong_cli.errors import ModelNotFoundError

        raise ModelNotFoundError(f"model '{model}' is not in this state store", hint="`llctl models` lists them")
    return row


def compare_and_set(t: Tx, model: str, *, expected_generation: int, actor: str, now: datetime,
                    **changes: Any) -> int:
    """Apply ``changes`` if the generation is still ``expected_generation``; returns the new one."""
    sets = ", ".join([*(f"{k} = :{k}" for k in changes), "generation = generation + 1",
                      "updated_at = :updated_at", "updated_by = :updated_by"])
    cur = t.execute(f"UPDATE deployment SET {sets} WHERE model = :model AND generation = :expected",
                    {**changes, "updated_at": now, "updated_by": actor, "expected": expected_generation,
                     "model": model})
    if cur.rowcount != 1:
        current = get(t, model)["generation"]
        raise GenerationConflictError(
            f"deployment changed while this command ran (generation {expected_generation} → {current})",
            hint="run `llctl status` to see the current state, then retry",
        )
    return expected_generation + 1


def update_locked(t: Tx, model: str, *, actor: str, now: datetime, **changes: Any) -> int:
    """Lock the row, then compare-and-set against what was read: the usual write path."""
    row = get(t, model, lock=True)
    return compare_and_set(t, model, expected_generation=row["generation"], actor=actor, now=now, **changes)


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def every(t: Tx) -> list[dict[str, Any]]:
    """Every model's deployment row, by model name (one query, however many models the store holds)."""
    return t.rows(f"SELECT {_COLS} FROM deployment ORDER BY model", types=TYPES)
