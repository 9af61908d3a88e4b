"""What every op shares: result serialisation and the audited transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import LlctlError

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    return obj


class Result:
    """Mixin for frozen result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)


@dataclasses.dataclass
class AuditEntry:
    """Filled in by the op inside ``audited``: what the audit row should say."""

    outcome: str = "ok"
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


@contextmanager
def audited(
    ctx: AppContext, verb: str, *, args: Mapping[str, Any], reason: str | None = None, store_wide: bool = False
) -> Iterator[tuple[Any, AuditEntry]]:
    """Run a state change and its audit entry in one transaction (a ``Tx``).

    The entry names the model the command acts on (``ctx.model``), or none when ``store_wide``.
    If the op raises an LlctlError the change is rolled back and the refusal is audited on its own."""
    from lifelong_cli.store import audit

    model = None if store_wide else ctx.model
    entry = AuditEntry()
    try:
        with ctx.store.tx() as t:
            yield t, entry
            audit.append(t, model=model, ts=ctx.now(), actor=ctx.actor, verb=verb, args=args, reason=reason,
                         outcome=entry.outcome, detail=entry.detail)
    except LlctlError as exc:
        if exc.kind == "unavailable":
            raise
        with ctx.store.tx() as t:
            audit.append(t, model=model, ts=ctx.now(), actor=ctx.actor, verb=verb, args=args, reason=reason,
                         outcome="refused", detail={"error": exc.message, "exit_code": exc.exit_code})
        raise
    notify_after_commit(ctx, verb, model=model, args=args, reason=reason, outcome=entry.outcome, detail=entry.detail)


def notify_after_commit(ctx: AppContext, verb: str, *, model: str | None, args: Mapping[str, Any], reason: str | None,
                        outcome: str, detail: Mapping[str, Any]) -> None:
    """Notify the configured targets of a committed change (see ``notify.py``): queued and handed to a
    detached sender, so the verb never waits on the network and a failing receiver never fails it."""
    if ctx.config.settings.notify.targets:
        from lifelong_cli.notify import after_commit

        after_commit(ctx, verb=verb, model=model, args=args, reason=reason, outcome=outcome, detail=detail)
