"""fallback: serve a simple, non-continuously-trained answer until turned off (DESIGN §2).

On the fast door (no SQLAlchemy, torch or MLflow); the change is committed to the model's deployment
row first, then the verb waits until every live replica has applied it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import CheckFailedError, NotFoundError, UsageError
from lifelong_cli.ops._base import Result, audited
from lifelong_cli.ops.rollback import local_path, verify_local
from lifelong_cli.store import versions

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext
    from lifelong_cli.store.sql import Tx

STRATEGIES = ("majority", "median", "lookup")


@dataclass(frozen=True)
class FallbackResult(Result):
    model: str
    on: bool
    changed: bool
    strategy: str | None
    source_version: int | None
    dry_run: bool
    generation: int | None
    confirm: dict[str, Any] | None = None
    message: str = ""
    next: str = ""


def fallback(ctx: AppContext, *, on: bool, strategy: str = "majority", reason: str | None = None,
             dry_run: bool = False) -> FallbackResult:
    """Serve the model from a simple, non-continuously-trained fallback (``on``) or stop doing so
    (``off``). Idempotent; the state is decided on the deployment row as it is locked for the change."""
    from lifelong_cli.store import deployment, replicas

    model = ctx.model
    if on:
        _check_strategy(strategy)
    if dry_run:
        with ctx.store.tx(write=False) as t:
            dep = deployment.get(t, model)
            source = _source(ctx, t, model, dep, strategy) if on else None
        if _noop(dep, on, strategy):
            return _unchanged(model, dep, on, strategy, source, dry_run=True)
        return FallbackResult(model=model, on=on, changed=False, strategy=strategy if on else None,
                              source_version=source, dry_run=True, generation=None,
                              message=f"dry run: would turn fallback of model '{model}' "
                              + (f"on ({strategy})" if on else "off"))
    changes = ({"fallback_mode": True, "fallback_strategy": strategy, "fallback_since": ctx.now()} if on
               else {"fallback_mode": False, "fallback_strategy": None, "fallback_since": None})
    with audited(ctx, "fallback", args={"on": on, "strategy": strategy if on else None}, reason=reason) as (t, entry):
        dep = deployment.get(t, model, lock=True)
        source = _source(ctx, t, model, dep, strategy) if on else None
        if _noop(dep, on, strategy):
            entry.outcome, entry.detail = "noop", {"on": on, "strategy": strategy if on else None}
            gen = None
        else:
            gen = deployment.compare_and_set(t, model, expected_generation=dep["generation"], actor=ctx.actor,
                                             now=ctx.now(), **changes)
            entry.detail = {"on": on, "strategy": strategy if on else None, "source_version": source,
                            "generation": gen}
    if gen is None:
        return _unchanged(model, dep, on, strategy, source, dry_run=False)
    confirm = replicas.wait_for(ctx, gen)
    note = replicas.describe(confirm)
    if on:
        return FallbackResult(model=model, on=True, changed=True, strategy=strategy, source_version=source,
                              dry_run=False, generation=gen, confirm=confirm,
                              message=f"model '{model}': fallback ON: serving answers from the {strategy} fallback "
                                      f"of v{source}{note}",
                              next="`llctl fallback off` once a good version is stable")
    return FallbackResult(model=model, on=False, changed=True, strategy=None, source_version=None, dry_run=False,
                          generation=gen, confirm=confirm,
                          message=f"model '{model}': fallback OFF: serving answers from the models again{note}")


def _noop(dep: dict[str, Any], on: bool, strategy: str) -> bool:
    return (dep["fallback_mode"] and dep["fallback_strategy"] == strategy) if on else not dep["fallback_mode"]


def _unchanged(model: str, dep: dict[str, Any], on: bool, strategy: str, source: int | None, *, dry_run: bool
               ) -> FallbackResult:
    message = (f"model '{model}': fallback was already on ({strategy}) since {dep['fallback_since']:%Y-%m-%d %H:%M:%S}Z; "
               "nothing changed" if on else f"model '{model}': fallback was already off; nothing changed")
    return FallbackResult(model=model, on=on, changed=False, strategy=strategy if on else None,
                          source_version=source, dry_run=dry_run, generation=None, message=message)


def _check_strategy(strategy: str) -> None:
    if strategy.startswith("version:"):
        n = strategy.split(":", 1)[1].strip()
        if not (n.isascii() and n.isdigit()):
            raise UsageError(f"--strategy {strategy[:60]!r}: version:N needs a number", hint="--strategy version:3")
        if len(n.lstrip("0")) > 19 or int(n) > 2**63 - 1:
            raise UsageError(f"--strategy version:{n[:24]}: no such version (too large)", hint="--strategy version:3")
    elif strategy not in STRATEGIES:
        raise UsageError(f"--strategy {strategy!r} is not majority, median, lookup or version:N",
                         hint="llctl fallback on --strategy majority")


def _source(ctx: AppContext, t: Tx, model: str, dep: dict[str, Any], strategy: str) -> int:
    """The version whose fallback (or, for version:N, whose model) serves; checked usable."""
    explicit = strategy.startswith("version:")
    source = int(strategy.split(":", 1)[1]) if explicit else dep["stable_version"] or dep["training_head"]
    if source is None:
        raise NotFoundError(f"model '{model}' has no version to take a fallback from yet", hint="`llctl train` first")
    row = versions.require(t, model, source)
    cache = ctx.registry_root
    if explicit:
        problem = verify_local(row, cache)
        if problem:
            raise CheckFailedError(f"v{source} cannot be a fallback: {problem}", hint="pick another version")
        return source
    if "fallback" not in row["artifacts"]:
        raise NotFoundError(f"v{source} has no fallback artifact", hint="--strategy version:N serves an older version")
    fb = fallback_doc(row["artifacts"]["fallback"], cache)
    usable = {s: s in fb for s in STRATEGIES}
    if not usable[strategy]:
        choices = ", ".join(k for k, ok in usable.items() if ok) or "version:N"
        raise UsageError(f"v{source}'s fallback has no {strategy} answer (a {fb.get('task')} model"
                         + (", and training.fallback_lookup_key was not set" if strategy == "lookup" else "") + ")",
                         hint=f"use --strategy {choices}")
    return source


def fallback_doc(ref: dict[str, Any], cache_root: Path) -> dict[str, Any]:
    doc = {"artifacts": {"fallback": ref}}
    problem = verify_local(doc, cache_root)
    if problem:
        raise CheckFailedError(f"the fallback artifact cannot be used: {problem}", hint="--strategy version:N")
    return json.loads(local_path(ref, cache_root).read_bytes())


