"""rollback and fallback: point serving somewhere safe, in the store first (DESIGN §2).

Both run on the fast door (no SQLAlchemy, torch or MLflow) and verify artifacts with hashlib
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
    ModelVersionNotFoundError,
    NotFoundError,
    PreconditionError,
    UsageError,
)
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

VTYPES = {"created_at": "ts", "artifacts": "json"}


@dataclass(frozen=True)
class RollbackResult(Result):
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


def _local_path(ref: dict[str, Any], cache_root: Path) -> Path:
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
        p = _local_path(ref, cache_root)
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


def _fallback_doc(ref: dict[str, Any], cache_root: Path) -> dict[str, Any]:
    import json

    doc = {"artifacts": {"fallback": ref}}
    problem = verify_local(doc, cache_root)
    if problem:
        raise CheckFailedError(f"the fallback artifact cannot be used: {problem}", hint="--strategy version:N")
    return json.loads(_local_path(ref, cache_root).read_bytes())


def _tainted(t) -> set[int]:
    """Versions trained on rows that an active (or hard) purge rule removed."""
    out: set[int] = set()
    for r in t.rows("SELECT blast_radius FROM purge_rules WHERE active = :t OR hard = :t", {"t": True},
                    types={"blast_radius": "json"}):
        out |= set((r["blast_radius"] or {}).get("affected_versions", []))
    return out


def _good_candidates(t, before: int | None = None) -> list[dict[str, Any]]:
    """"Last good" candidates, newest first: a passed verdict, not trained on data an active (or hard)
    purge hides, not demoted (rolled back from, or its canary aborted by analysis), and — once any
    version has been promoted — served healthily, i.e. promoted to stable."""
    rows = t.rows("SELECT v.id, v.created_at, v.artifacts, v.promoted_at FROM model_versions v "
                  "WHERE v.demoted_at IS NULL AND EXISTS "
                  "(SELECT 1 FROM validations x WHERE x.version_id = v.id AND x.verdict = 'passed' AND x.id = "
                  "(SELECT max(y.id) FROM validations y WHERE y.version_id = v.id)) ORDER BY v.id DESC", types=VTYPES)
    tainted = _tainted(t)
    rows = [r for r in rows if r["id"] not in tainted and (before is None or r["id"] < before)]
    served = [r for r in rows if r["promoted_at"] is not None]
    return served or rows


def rollback(ctx: AppContext, *, to: int | None = None, last_good: bool = False, before: str | None = None,
             serving_only: bool = False, reason: str | None = None, dry_run: bool = False,
             force: bool = False) -> RollbackResult:
    """Make an earlier version stable (aborting any canary) and, unless ``serving_only``, the
    training head, so that `resume` + `train` continue from it."""
    from lifelong_cli.ops.audit import parse_time
    from lifelong_cli.store import deployment, replicas

    if force and not reason:
        raise UsageError("--force needs --reason (it is recorded in the audit log)", hint="llctl rollback --to 6 --force --reason '...'")
    if sum(x is not None and x is not False for x in (to, last_good or None, before)) != 1:
        raise UsageError("give exactly one of --to V, --last-good, --before TIME", hint="llctl rollback --last-good")
    cache = ctx.config.registry_root
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t)
        why = None
        if to is not None:
            target = t.row("SELECT id, created_at, artifacts FROM model_versions WHERE id = :v", {"v": to}, types=VTYPES)
            if target is None:
                raise ModelVersionNotFoundError(f"no model version {to}", hint="`llctl versions` lists them")
            candidates = [target]
            verdict = t.scalar("SELECT verdict FROM validations WHERE version_id = :v ORDER BY id DESC LIMIT 1", {"v": to})
            why = ("was rejected by validation" if verdict == "rejected"
                   else "was trained on data a purge rule removed" if to in _tainted(t) else None)
        else:
            candidates = _good_candidates(t)
            if before is not None:
                cutoff: datetime = parse_time(before, now=ctx.now(), flag="--before")
                candidates = [c for c in candidates if c["created_at"] < cutoff]
            candidates = [c for c in candidates if c["id"] != dep["stable_version"]] or candidates
        fallback_next = [c["id"] for c in _good_candidates(t)]
    if not candidates:
        raise NotFoundError("no version qualifies as last good (validated, and not trained on purged data)",
                            hint="`llctl versions` shows verdicts; `llctl rollback --to V` names one, or `llctl fallback on`")
    target, problem = None, None
    for c in candidates:
        problem = verify_local(c, cache)
        if problem is None:
            target = c
            break
        if to is not None:
            nxt = next((v for v in fallback_next if v != to), None)
            raise CheckFailedError(f"v{to} cannot be served: {problem}; nothing changed",
                                   hint=f"roll back to v{nxt} instead" if nxt else "`llctl fallback on` serves a simple fallback")
    if target is None:
        raise CheckFailedError(f"no last-good version passes its checksums ({problem})",
                               hint="`llctl fallback on` serves a simple fallback")
    if to is not None and why and not force:
        good = [v for v in fallback_next if v != to]
        raise PreconditionError(f"v{to} {why}; nothing changed",
                                hint=(f"roll back to v{good[0]} (last good) instead, or " if good else "")
                                + "--force --reason to serve it anyway")
    v = target["id"]
    changes: dict[str, Any] = {"stable_version": v, "canary_version": None, "canary_share": 0.0, "canary_step": None,
                               "canary_state": "aborted" if dep["canary_version"] else dep["canary_state"]}
    if not serving_only:
        changes["training_head"] = v
    if dry_run:
        return RollbackResult(v, dep["stable_version"], dep["canary_version"], v if not serving_only else dep["training_head"],
                              serving_only, True, None, message=f"dry run: would roll serving back to v{v}"
                              + (f" (from v{dep['stable_version']})" if dep["stable_version"] else "")
                              + ("" if serving_only else f" and move the training head to v{v}"),
                              next="run again without --dry-run")
    args = {"to": to, "last_good": last_good, "before": before, "serving_only": serving_only, "force": force}
    with audited(ctx, "rollback", args=args, reason=reason) as (t, entry):
        gen = deployment.update_locked(t, actor=ctx.actor, now=ctx.now(), **changes)
        if dep["stable_version"] and dep["stable_version"] > v:
            # Rolled back from: no longer "served healthily", so never "last good" again by itself.
            t.execute("UPDATE model_versions SET demoted_at = :now, demoted_reason = :why WHERE id = :old",
                      {"now": ctx.now(), "why": f"rolled back to v{v}" + (f": {reason}" if reason else ""),
                       "old": dep["stable_version"]})
        # Whoever names a version to serve vouches for it again.
        t.execute("UPDATE model_versions SET demoted_at = NULL, demoted_reason = NULL WHERE id = :v", {"v": v})
        entry.detail = {"target": v, "previous_stable": dep["stable_version"], "canary_aborted": dep["canary_version"],
                        "generation": gen}
    msg = (f"serving was already on v{v}" if dep["stable_version"] == v
           else f"serving rolled back to v{v}" + (f" (was v{dep['stable_version']})" if dep["stable_version"] else ""))
    if dep["canary_version"]:
        msg += f"; canary v{dep['canary_version']} aborted"
    msg += "" if serving_only else f"; training head is v{v}"
    confirm = replicas.wait_for(ctx, gen)
    msg += replicas.describe(confirm)
    return RollbackResult(v, dep["stable_version"], dep["canary_version"], v if not serving_only else dep["training_head"],
                          serving_only, False, gen, confirm=confirm, message=msg,
                          next="`llctl resume` then `llctl train` continues from there" if not serving_only
                          else "the training head is unchanged")


@dataclass(frozen=True)
class FallbackResult(Result):
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
    """Serve from a simple, non-continuously-trained fallback (``on``) or stop doing so (``off``)."""
    from lifelong_cli.store import deployment, replicas

    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t)
        if not on:
            if not dep["fallback_mode"]:
                return FallbackResult(False, False, None, None, dry_run, None, message="fallback was already off; nothing changed")
        else:
            source = dep["stable_version"] or dep["training_head"]
            if strategy.startswith("version:"):
                try:
                    source = int(strategy.split(":", 1)[1])
                except ValueError:
                    raise UsageError(f"--strategy {strategy!r}: version:N needs a number", hint="--strategy version:3") from None
            elif strategy not in ("majority", "median", "lookup"):
                raise UsageError(f"--strategy {strategy!r} is not majority, median, lookup or version:N",
                                 hint="llctl fallback on --strategy majority")
            if source is None:
                raise NotFoundError("no version to take a fallback from yet", hint="`llctl train` first")
            row = t.row("SELECT id, created_at, artifacts FROM model_versions WHERE id = :v", {"v": source}, types=VTYPES)
            if row is None:
                raise ModelVersionNotFoundError(f"no model version {source}", hint="`llctl versions` lists them")
    if on:
        problem = verify_local(row, ctx.config.registry_root) if strategy.startswith("version:") else None
        if problem:
            raise CheckFailedError(f"v{source} cannot be a fallback: {problem}", hint="pick another version")
        if not strategy.startswith("version:"):
            if "fallback" not in row["artifacts"]:
                raise NotFoundError(f"v{source} has no fallback artifact", hint="--strategy version:N serves an older version")
            fb = _fallback_doc(row["artifacts"]["fallback"], ctx.config.registry_root)
            usable = {"majority": "majority" in fb, "median": "median" in fb, "lookup": "lookup" in fb}
            if not usable[strategy]:
                choices = ", ".join(k for k, ok in usable.items() if ok) or "version:N"
                raise UsageError(f"v{source}'s fallback has no {strategy} answer (a {fb.get('task')} model"
                                 + (", and training.fallback_lookup_key was not set" if strategy == "lookup" else "") + ")",
                                 hint=f"use --strategy {choices}")
        if dep["fallback_mode"] and dep["fallback_strategy"] == strategy:
            return FallbackResult(True, False, strategy, source, dry_run, None, message=f"fallback was already on ({strategy}) since {dep['fallback_since']:%Y-%m-%d %H:%M:%S}Z; nothing changed")
    if dry_run:
        return FallbackResult(on, False, strategy if on else None, source if on else None, True, None, message=f"dry run: would turn fallback {'on (' + strategy + ')' if on else 'off'}")
    changes = ({"fallback_mode": True, "fallback_strategy": strategy, "fallback_since": ctx.now()} if on
               else {"fallback_mode": False, "fallback_strategy": None, "fallback_since": None})
    with audited(ctx, "fallback", args={"on": on, "strategy": strategy if on else None}, reason=reason) as (t, entry):
        gen = deployment.update_locked(t, actor=ctx.actor, now=ctx.now(), **changes)
        entry.detail = {"on": on, "strategy": strategy if on else None, "generation": gen}
    confirm = replicas.wait_for(ctx, gen)
    note = replicas.describe(confirm)
    if on:
        return FallbackResult(True, True, strategy, source, False, gen, confirm,
                              f"fallback ON: serving answers from the {strategy} fallback of v{source}{note}",
                              "`llctl fallback off` once a good version is stable")
    return FallbackResult(False, True, None, None, False, gen, confirm,
                          f"fallback OFF: serving answers from the models again{note}")
