"""Reading model versions from the store (shared by train, versions, validate, rollback)."""

from __future__ import annotations

from typing import Any

from lifelong_cli.errors import ModelVersionNotFoundError

TYPES = {"created_at": "ts", "lineage": "json", "metrics": "json", "artifacts": "json"}
COLS = ("id, model, parent_id, created_at, created_by, strategy, seq_from, seq_to, watermark, rows_trained, "
        "config_hash, lineage, metrics, artifacts, registry_ref")


def load_version(ctx: Any, version: int) -> dict[str, Any]:
    with ctx.store.tx(write=False) as t:
        row = t.row(f"SELECT {COLS} FROM model_versions WHERE id = :v", {"v": version}, types=TYPES)
    if row is None:
        raise ModelVersionNotFoundError(f"no model version {version}", hint="`llctl versions` lists them")
    return row
