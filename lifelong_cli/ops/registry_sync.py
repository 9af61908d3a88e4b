"""registry sync: mirror the store's pointers (stable, canary, head, fallback) as registry aliases.

The store is the source of truth; emergency verbs change it and never wait on a registry (MLflow
is not even imported by them). Aliases catch up here — run by `train` and `validate` on their way
out, and by hand or cron as `llctl registry sync`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class RegistrySyncResult(Result):
    model: str
    kind: str
    aliases: dict[str, int | None] = field(default_factory=dict)
    message: str = ""


def registry_sync(ctx: AppContext, *, dry_run: bool = False) -> RegistrySyncResult:
    """Set the registry aliases of the model (``ctx.model``) to its deployment row's pointers."""
    from lifelong_cli.registry.base import open_registry
    from lifelong_cli.store import deployment

    model = ctx.model
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, model)
    fallback = None
    if dep["fallback_mode"]:
        strat = dep["fallback_strategy"] or ""
        fallback = int(strat.split(":", 1)[1]) if strat.startswith("version:") else (dep["stable_version"] or dep["training_head"])
    aliases = {"stable": dep["stable_version"], "canary": dep["canary_version"], "head": dep["training_head"],
               "fallback": fallback}
    shown = ", ".join(f"{a}=v{v}" if v else f"{a}=none" for a, v in aliases.items())
    if dry_run:
        return RegistrySyncResult(model=model, kind=ctx.config.settings.registry.kind, aliases=aliases,
                                  message=f"dry run: model '{model}': would set {shown}")
    registry = open_registry(ctx)
    for alias, version in aliases.items():
        registry.set_alias(alias, version)
    return RegistrySyncResult(model=model, kind=registry.kind, aliases=aliases,
                              message=f"model '{model}': {registry.kind} registry aliases: {shown}")


def sync_quietly(ctx: AppContext) -> str:
    """Best effort, for the end of train/validate: a registry hiccup must not fail the command."""
    from lifelong_cli.errors import LlctlError

    try:
        return registry_sync(ctx).message
    except LlctlError as exc:
        return f"registry aliases not updated ({exc.message}); `llctl registry sync` retries"
