"""rollback: point serving at an earlier version, in the store first (DESIGN §2).

It runs on the fast door (no SQLAlchemy, torch or MLflow) and verify artifacts with hashlib
against the local copies. Serving replicas follow the deployment row; after the change is committed
the verb waits (up to ``serving.confirm_timeout_seconds``) until every live replica reports it has
applied the new generation, and says how long that took."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import (
    CheckFailedError,
    NotFoundError,
    PreconditionError,
    UsageError,
)
from lifelong_cli.ops._base import Result, audited
from lifelong_cli.store import versions
from lifelong_cli.timeparse import parse_time

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext
    from lifelong_cli.store.sql import Tx

@dataclass(frozen=True)
class RollbackResult(Result):
    model: str
    target: int
    previous_stable: int | None
    canary_aborted: int | None
    training_head: int | None
    serving_only: bool
    dry_run: bool
    generation: int | None
    confirm: dict[str, Any] | None = None
    message: str = ""
    next: str = ""


def local_path(ref: dict[str, Any], cache_root: Path) -> Path:
    """Where an artifact's bytes are on this machine: the local registry, or its cache of a remote one."""
    uri = ref["uri"]
    if "://" not in uri and not uri.startswith("runs:"):
        return Path(uri)
    return cache_root / "objects" / ref["sha256"][:2] / ref["sha256"]


def verify_local(version: dict[str, Any], cache_root: Path) -> str | None:
    """None if every artifact's bytes here match their sha256, else a description of the first that
    does not. An artifact of a remote registry that is not in the local cache cannot be checked
    without the registry client (which emergency verbs never load): serving verifies it before it
    swaps, so it does not count as a failure here."""
    for name, ref in sorted(version["artifacts"].items()):
        p = local_path(ref, cache_root)
        if not p.exists():
            if p != Path(ref["uri"]):
                continue
            return f"artifact {name} is missing ({p})"
        h = hashlib.sha256()
        with p.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        if h.hexdigest() != ref["sha256"]:
            return f"artifact {name} fails its checksum"
    return None


def rollback(ctx: AppContext, *, to: int | None = None, last_good: bool = False, before: str | None = None,
             serving_only: bool = False, reason: str | None = None, dry_run: bool = False,
             force: bool = False) -> RollbackResult:
    """Make an earlier version of the model stable (aborting any canary) and, unless ``serving_only``,
    the training head, so that `resume` + `train` continue from it.

    The target and the change are computed from the deployment row as it is locked for the change,
    so two engineers rolling back at once each see what the other did (the audit entry names the
    version really replaced)."""
    from lifelong_cli.store import deployment, replicas

    if force and not reason:
        raise UsageError("--force needs --reason (it is recorded in the audit log)", hint="llctl rollback --to 6 --force --reason '...'")
    if sum(x is not None and x is not False for x in (to, last_good or None, before)) != 1:
        raise UsageError("give exactly one of --to V, --last-good, --before TIME", hint="llctl rollback --last-good")
    cutoff = parse_time(before, now=ctx.now(), flag="--before") if before is not None else None
    model = ctx.model
    if dry_run:
        with ctx.store.tx(write=False) as t:
            dep = deployment.get(t, model)
            v = _target(ctx, t, model, dep, to=to, cutoff=cutoff, force=force)
        return RollbackResult(
            model=model, target=v, previous_stable=dep["stable_version"], canary_aborted=dep["canary_version"],
            training_head=dep["training_head"] if serving_only else v, serving_only=serving_only, dry_run=True,
            generation=None, message=f"dry run: would roll model '{model}' back to v{v}"
            + (f" (from v{dep['stable_version']})" if dep["stable_version"] else "")
            + ("" if serving_only else f" and move the training head to v{v}"),
            next="run again without --dry-run")
    args = {"to": to, "last_good": last_good, "before": before, "serving_only": serving_only, "force": force}
    with audited(ctx, "rollback", args=args, reason=reason) as (t, entry):
        dep = deployment.get(t, model, lock=True)
        v = _target(ctx, t, model, dep, to=to, cutoff=cutoff, force=force)
        changes: dict[str, Any] = {"stable_version": v, "canary_version": None, "canary_share": 0.0, "canary_step": None,
                                   "canary_state": "aborted" if dep["canary_version"] else dep["canary_state"]}
        if not serving_only:
            changes["training_head"] = v
        gen = deployment.compare_and_set(t, model, expected_generation=dep["generation"], actor=ctx.actor,
                                         now=ctx.now(), **changes)
        if dep["stable_version"] and dep["stable_version"] > v:
            versions.demote(t, model, dep["stable_version"], now=ctx.now(),
                            reason=f"rolled back to v{v}" + (f": {reason}" if reason else ""))
        versions.vouch(t, model, v)
        entry.detail = {"target": v, "previous_stable": dep["stable_version"], "canary_aborted": dep["canary_version"],
                        "generation": gen}
    msg = (f"model '{model}': serving was already on v{v}" if dep["stable_version"] == v
           else f"model '{model}': serving rolled back to v{v}"
           + (f" (was v{dep['stable_version']})" if dep["stable_version"] else ""))
    if dep["canary_version"]:
        msg += f"; canary v{dep['canary_version']} aborted"
    msg += "" if serving_only else f"; training head is v{v}"
    confirm = replicas.wait_for(ctx, gen)
    msg += replicas.describe(confirm)
    return RollbackResult(
        model=model, target=v, previous_stable=dep["stable_version"], canary_aborted=dep["canary_version"],
        training_head=dep["training_head"] if serving_only else v, serving_only=serving_only, dry_run=False,
        generation=gen, confirm=confirm, message=msg,
        next="`llctl resume` then `llctl train` continues from there" if not serving_only
        else "the training head is unchanged")


def _target(ctx: AppContext, t: Tx, model: str, dep: dict[str, Any], *, to: int | None, cutoff: datetime | None,
            force: bool) -> int:
    """The version to roll back to, checked: its artifacts pass their checksums, and a version that
    validation rejected or a purge tainted is named only with ``force``."""
    cache = ctx.registry_root
    good = [c["id"] for c in versions.last_good(t, model)]
    if to is not None:
        target = versions.require(t, model, to)
        problem = verify_local(target, cache)
        if problem:
            nxt = next((g for g in good if g not in (to, dep["stable_version"])), None)
            raise CheckFailedError(f"v{to} cannot be served: {problem}; nothing changed",
                                   hint=f"roll back to v{nxt} instead" if nxt else "`llctl fallback on` serves a simple fallback")
        why = ("was rejected by validation" if versions.latest_verdict(t, model, to) == "rejected"
               else "was trained on data a purge rule removed" if to in versions.tainted(t, model) else None)
        if why and not force:
            others = [g for g in good if g not in (to, dep["stable_version"])]
            raise PreconditionError(f"v{to} {why}; nothing changed",
                                    hint=(f"roll back to v{others[0]} (last good) instead, or " if others else "")
                                    + "--force --reason to serve it anyway")
        return to
    candidates = versions.last_good(t, model)
    if cutoff is not None:
        candidates = [c for c in candidates if c["created_at"] < cutoff]
    candidates = [c for c in candidates if c["id"] != dep["stable_version"]] or candidates
    if not candidates:
        raise NotFoundError(f"model '{model}' has no version that qualifies as last good (validated, and not trained "
                            "on purged data)",
                            hint="`llctl versions` shows verdicts; `llctl rollback --to V` names one, or `llctl fallback on`")
    problem = None
    for c in candidates:
        problem = verify_local(c, cache)
        if problem is None:
            return c["id"]
    raise CheckFailedError(f"no last-good version passes its checksums ({problem})",
                           hint="`llctl fallback on` serves a simple fallback")
