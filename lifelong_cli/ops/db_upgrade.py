"""db upgrade: apply pending schema migrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lifelong_cli.ops._base import Result
from lifelong_cli.store import audit, models

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class DbUpgradeResult(Result):
    store: str
    revision_before: str | None
    revision: str
    changed: bool
    models: list[str]  # the models the store holds (a store-wide verb: it acts on none in particular)
    message: str


def db_upgrade(ctx: AppContext, *, dry_run: bool = False) -> DbUpgradeResult:
    """Bring the state store to this llctl's schema (idempotent)."""
    from lifelong_cli.store.db import HEAD_REVISION

    store = ctx.raw_store
    if dry_run:
        before = store.revision()
        msg = (f"dry run: store already at {before}" if before == HEAD_REVISION
               else f"dry run: would upgrade the store from {before or 'empty'} to {HEAD_REVISION}")
        return DbUpgradeResult(store=store.display_url, revision_before=before, revision=before or "",
                               changed=False, models=[], message=msg)
    # a store from before models were scoped: its rows become those of the configured model
    before, after = store.upgrade(model_name=ctx.config.settings.model.name)
    changed = before != after
    with store.tx() as t:
        audit.append(t, model=None, ts=ctx.now(), actor=ctx.actor, verb="db-upgrade", args={}, reason=None,
                     outcome="ok" if changed else "noop", detail={"from": before, "to": after})
        held = models.names(t)
    msg = f"store upgraded from {before or 'empty'} to {after}" if changed else f"store already at {after}"
    msg += f"; it holds model(s) {', '.join(held)}" if held else "; it holds no model yet (`llctl init` adds one)"
    return DbUpgradeResult(store=store.display_url, revision_before=before, revision=after, changed=changed,
                           models=held, message=msg)
