"""models: the models a state store holds, each with its serving and training state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.ops._base import Result, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class ModelsResult(Result):
    store: str
    current: str | None
    models: list[dict[str, Any]]


def models(ctx: AppContext) -> ModelsResult:
    """Every model in the store: stable and canary versions, fallback, training stopped or not, counts.
    ``current`` is the model this workspace's commands act on (None if it cannot be resolved)."""
    from lifelong_cli.errors import ModelNotFoundError
    from lifelong_cli.store import models as store_models

    with ctx.store.tx(write=False) as t:
        rows = store_models.summaries(t)
    try:
        current = ctx.model
    except ModelNotFoundError:
        current = None
    return ModelsResult(store=ctx.raw_store.display_url, current=current, models=jsonable(rows))
