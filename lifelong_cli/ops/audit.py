"""audit: read the append-only audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import UsageError
from lifelong_cli.ops._base import Result, jsonable
from lifelong_cli.store import audit as audit_store
from lifelong_cli.timeparse import parse_time

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class AuditResult(Result):
    model: str  # the entries are this model's and the store-wide ones (``model`` null)
    entries: list[dict[str, Any]]
    filters: dict[str, Any]


def audit(
    ctx: AppContext,
    *,
    verb: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    incident: int | None = None,
    limit: int | None = 100,
) -> AuditResult:
    """``ctx.model``'s audit entries and the store-wide ones, oldest first; the newest ``limit`` when there
    are more."""
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1", hint="llctl audit --limit 50")
    since_t = parse_time(since, now=ctx.now(), flag="--since") if since else None
    with ctx.store.tx(write=False) as t:
        rows = audit_store.query(t, model=ctx.model, verb=verb, actor=actor, since=since_t, incident_id=incident, limit=limit)
    return AuditResult(
        model=ctx.model,
        entries=jsonable(rows),
        filters=jsonable({"verb": verb, "actor": actor, "since": since_t, "incident": incident, "limit": limit}),
    )
