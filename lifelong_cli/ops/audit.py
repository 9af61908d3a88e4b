"""audit: read the append-only audit log."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import UsageError
from lifelong_cli.ops._base import Result, jsonable
from lifelong_cli.store import audit as audit_store

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime, flag: str) -> datetime:
    """An ISO-8601 time (UTC if no zone) or a duration before now: 30m, 2h, 7d."""
    from datetime import UTC

    v = value.strip()
    m = _RELATIVE.match(v)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} {value!r} is not a time", hint=f"use ISO-8601 (2026-11-25T03:00:00Z) or a duration (30m, 2h, 7d) for {flag}"
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True)
class AuditResult(Result):
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
    """Audit entries, oldest first; the newest ``limit`` when there are more."""
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1", hint="llctl audit --limit 50")
    since_t = parse_time(since, now=ctx.now(), flag="--since") if since else None
    with ctx.store.tx(write=False) as t:
        rows = audit_store.query(t, verb=verb, actor=actor, since=since_t, incident_id=incident, limit=limit)
    return AuditResult(
        entries=jsonable(rows),
        filters=jsonable({"verb": verb, "actor": actor, "since": since_t, "incident": incident, "limit": limit}),
    )
