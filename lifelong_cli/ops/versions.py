"""versions: list the model's versions, or show one with its lineage, metrics and artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.ops._base import Result, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class VersionsResult(Result):
    model: str
    versions: list[dict[str, Any]]
    stable: int | None
    canary: int | None
    head: int | None


@dataclass(frozen=True)
class VersionResult(Result):
    model: str
    version: dict[str, Any]
    validation: dict[str, Any] | None
    roles: list[str]


def _roles(dep: dict[str, Any], v: int) -> list[str]:
    return [r for r, k in (("stable", "stable_version"), ("canary", "canary_version"), ("head", "training_head"))
            if dep[k] == v]


def versions(ctx: AppContext, *, limit: int = 50) -> VersionsResult:
    """The model's versions, newest first, with their latest verdict and role."""
    from lifelong_cli.store import deployment
    from lifelong_cli.store import versions as vs

    model = ctx.model
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, model)
        rows = vs.newest(t, model, limit=limit)
    for r in rows:
        r["roles"] = _roles(dep, r["id"])
        m = r.pop("metrics") or {}
        r["holdout_accuracy"] = m.get("holdout_accuracy")
    return VersionsResult(model=model, versions=jsonable(rows), stable=dep["stable_version"],
                          canary=dep["canary_version"], head=dep["training_head"])


def version_show(ctx: AppContext, *, version: int) -> VersionResult:
    """One version of the model, its latest validation and its roles."""
    from lifelong_cli.store import deployment
    from lifelong_cli.store import versions as vs

    model = ctx.model
    with ctx.store.tx(write=False) as t:
        v = vs.require(t, model, version)
        dep = deployment.get(t, model)
        val = vs.latest_validation(t, model, version)
    return VersionResult(model=model, version=jsonable(v), validation=jsonable(val), roles=_roles(dep, version))
