"""The models a store holds. Each has its own deployment row, training control row, versions
(numbered from 1), batches, purge rules and data prefix; nothing of one model is visible to another."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifelong_cli.errors import ModelNotFoundError
from lifelong_cli.store.sql import Tx

TYPES = {"created_at": "ts", "detail": "json"}


def names(t: Tx) -> list[str]:
    return [r["name"] for r in t.rows("SELECT name FROM models ORDER BY name")]


def get(t: Tx, name: str) -> dict[str, Any] | None:
    return t.row("SELECT name, created_at, created_by, data_prefix, detail FROM models WHERE name = :n",
                 {"n": name}, types=TYPES)


def add(t: Tx, *, name: str, actor: str, now: datetime, data_prefix: str | None) -> bool:
    """Register ``name`` with its deployment and control rows; False if it was there already."""
    if get(t, name) is not None:
        return False
    t.execute("INSERT INTO models (name, created_at, created_by, data_prefix, detail) "
              "VALUES (:n, :at, :by, :p, :d)", {"n": name, "at": now, "by": actor, "p": data_prefix, "d": {}})
    t.execute("INSERT INTO deployment (model, canary_share, fallback_mode, generation) VALUES (:n, 0, :f, 0)",
              {"n": name, "f": False})
    t.execute("INSERT INTO training_control (model, stopped) VALUES (:n, :f)", {"n": name, "f": False})
    return True


def resolve(t: Tx, wanted: str, *, explicit: bool) -> dict[str, Any]:
    """The model a command acts on: the one named (flag, LLCTL_MODEL or model.name in a config), or —
    when nothing named one — the store's only model. Raises ModelNotFoundError (exit 6) naming the
    choices otherwise."""
    have = names(t)
    if not explicit and len(have) == 1:
        wanted = have[0]
    row = get(t, wanted)
    if row is not None:
        return row
    choices = ", ".join(have) if have else "none yet"
    if not explicit and len(have) > 1:
        raise ModelNotFoundError(f"this state store holds several models ({choices}) and none was chosen",
                                 hint="pass --model NAME, set LLCTL_MODEL, or set model.name in llctl.yaml")
    raise ModelNotFoundError(f"model '{wanted}' is not in the state store (it holds: {choices})",
                             hint="pick one with --model NAME, or `llctl init` a workspace for it to add it")


def summaries(t: Tx) -> list[dict[str, Any]]:
    """Each model with its serving and training state, for `llctl models`."""
    return t.rows(
        "SELECT m.name, m.created_at, d.stable_version, d.canary_version, d.canary_share, d.canary_state, "
        "d.fallback_mode, d.fallback_strategy, d.training_head, d.generation, c.stopped, c.stopped_by, c.stop_reason, "
        "(SELECT count(*) FROM model_versions v WHERE v.model = m.name) AS versions, "
        "(SELECT max(v.id) FROM model_versions v WHERE v.model = m.name) AS latest_version, "
        "(SELECT count(*) FROM batches b WHERE b.model = m.name AND b.status = 'accepted') AS batches "
        "FROM models m JOIN deployment d ON d.model = m.name JOIN training_control c ON c.model = m.name "
        "ORDER BY m.name",
        types={"created_at": "ts", "fallback_mode": "bool", "stopped": "bool"})
