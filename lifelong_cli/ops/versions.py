"""versions: list model versions, or show one with its lineage, metrics and artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.ops._base import Result, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class VersionsResult(Result):
    versions: list[dict[str, Any]]
    stable: int | None
    canary: int | None
    head: int | None


@dataclass(frozen=True)
class VersionResult(Result):
    version: dict[str, Any]
    validation: dict[str, Any] | None
    roles: list[str]


def _roles(dep: dict[str, Any], v: int) -> list[str]:
    return [r for r, k in (("stable", "stable_version"), ("canary", "canary_version"), ("head", "training_head"))
            if dep[k] == v]


def versions(ctx: AppContext, *, limit: int = 50) -> VersionsResult:
    from lifelong_cli.store import deployment

    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t)
        rows = t.rows("SELECT v.id, v.parent_id, v.created_at, v.created_by, v.strategy, v.seq_from, v.seq_to, "
                      "v.watermark, v.rows_trained, v.metrics, "
                      "(SELECT verdict FROM validations x WHERE x.version_id = v.id ORDER BY x.id DESC LIMIT 1) AS verdict "
                      "FROM model_versions v ORDER BY v.id DESC LIMIT :n", {"n": limit},
                      types={"created_at": "ts", "metrics": "json"})
    for r in rows:
        r["roles"] = _roles(dep, r["id"])
        m = r.pop("metrics") or {}
        r["holdout_accuracy"] = m.get("holdout_accuracy")
    return VersionsResult(jsonable(rows), dep["stable_version"], dep["canary_version"], dep["training_head"])


def version_show(ctx: AppContext, *, version: int) -> VersionResult:
    from lifelong_cli.store import deployment
    from lifelong_cli.versions import load_version

    v = load_version(ctx, version)
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t)
        val = t.row("SELECT verdict, gates, created_at, actor FROM validations WHERE version_id = :v ORDER BY id DESC LIMIT 1",
                    {"v": version}, types={"gates": "json", "created_at": "ts"})
    return VersionResult(jsonable(v), jsonable(val), _roles(dep, version))
