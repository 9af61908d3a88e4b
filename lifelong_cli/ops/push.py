"""push: make a validated version available to serving, without moving traffic.

Checks every artifact against its sha256 through the registry (for a remote registry this also
places them in the local cache serving reads from), asks each replica — the configured
``serving.replicas`` and every live `llctl serve` that reports to the store — to load and query the
version, records the push on the version and sets the registry alias ``pushed``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import (
    CheckFailedError,
    ConfigError,
    PreconditionError,
    TrainingHaltedError,
    UsageError,
)
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class PushResult(Result):
    model: str
    version: int
    verdict: str | None
    forced: bool
    dry_run: bool
    replicas: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    next: str = ""


def halted_error(state, what: str, model: str | None = None) -> TrainingHaltedError:
    whose = f"model '{model}': " if model else ""
    return TrainingHaltedError(
        f"{whose}{what} is refused while training is stopped (by {state.stopped_by} at "
        f"{state.stopped_at:%Y-%m-%d %H:%M:%S}Z: {state.stop_reason})",
        hint="`llctl resume --reason ...` when the cause is fixed; `llctl canary abort` and `llctl rollback` still work")


def replica_urls(ctx: AppContext) -> list[str]:
    """Configured replica URLs plus the URLs live `llctl serve` processes report (deduplicated)."""
    from lifelong_cli.store import replicas

    s = ctx.config.settings.serving
    with ctx.store.tx(write=False) as t:
        reported = [r["url"] for r in replicas.live(t, ctx.model, now=ctx.now(), ttl_seconds=s.replica_ttl_seconds)
                    if r["url"]]
    out: list[str] = []
    for u in [*s.replicas, *reported]:
        u = u.rstrip("/")
        if u not in out:
            out.append(u)
    return out


def _ask(urls: list[str], model: str, version: int, token: str) -> list[dict[str, Any]]:
    import httpx

    out = []
    with httpx.Client(timeout=30.0, headers={"Authorization": f"Bearer {token}"}) as client:
        for url in urls:
            try:
                r = client.post(f"{url}/admin/load", json={"model": model, "version": version})
            except httpx.HTTPError as exc:
                out.append({"replica": url, "ok": False, "error": f"unreachable: {exc}".splitlines()[0]})
                continue
            if r.status_code != 200:
                try:
                    msg = r.json()["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    msg = r.text[:200]
                out.append({"replica": url, "ok": False, "error": f"HTTP {r.status_code}: {msg}"})
                continue
            doc = r.json()
            out.append({"replica": url, **{k: doc.get(k) for k in ("ok", "load_ms", "query_ms", "output", "error")}})
    return out


def _check_here(ctx: AppContext, version: int) -> dict[str, Any]:
    """No replica to ask: load and query the version here, the way a replica does."""
    import time

    from lifelong_cli.serving.model import probe_row
    from lifelong_cli.serving.runtime import ModelPool

    t0 = time.perf_counter()
    try:
        model = ModelPool(ctx).model(version)
        t1 = time.perf_counter()
        out = model.predict([probe_row(ctx.config.settings.data.features)])
    except Exception as exc:  # reported, and push refuses
        return {"replica": "local check", "ok": False, "error": str(exc).splitlines()[0][:300]}
    return {"replica": "local check", "ok": True, "load_ms": (t1 - t0) * 1000,
            "query_ms": (time.perf_counter() - t1) * 1000, "output": out[0]}


def push(ctx: AppContext, *, version: int, force: bool = False, reason: str | None = None,
         dry_run: bool = False) -> PushResult:
    """Verify the model's ``version`` and have every replica load and query it, then record the push.
    Refused while training is stopped, and for a version that has not passed validation unless
    ``force`` (with a ``reason``)."""
    from lifelong_cli.registry.base import ArtifactRef, open_registry
    from lifelong_cli.store import control, versions

    if force and not reason:
        raise UsageError("--force needs --reason (it is recorded in the audit log)", hint="llctl push 7 --force --reason '...'")
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        row = versions.require(t, model, version)
        state = control.get(t, model)
        verdict = versions.latest_verdict(t, model, version)
    if state.stopped:
        raise halted_error(state, "push", model)
    if verdict != "passed" and not force:
        raise PreconditionError(f"model '{model}': v{version} has not passed validation "
                                f"(latest verdict: {verdict or 'never validated'})",
                                hint=f"`llctl validate {version}`; or push anyway with --force --reason")
    registry = open_registry(ctx)
    for name, ref in sorted(row["artifacts"].items()):
        registry.fetch(ArtifactRef.from_dict(name, ref))  # raises CheckFailedError on a bad checksum
    urls = replica_urls(ctx)
    token = None
    if urls:
        env = ctx.config.settings.serving.admin_token_env
        token = ctx.env.get(env) or os.environ.get(env)
        if not token:
            raise ConfigError(f"${env} is not set: push needs the replicas' admin token to ask them to load "
                              f"v{version} of model '{model}'",
                              hint=f"export {env}=... (the same value the replicas were started with)")
    if dry_run:
        where = ", ".join(urls) if urls else "no replica (it would be checked locally)"
        return PushResult(model=model, version=version, verdict=verdict, forced=force, dry_run=True, replicas=[],
                          message=f"dry run: model '{model}': v{version}'s artifacts verify; would ask {where}",
                          next="run again without --dry-run")
    results = _ask(urls, model, version, token) if urls else [_check_here(ctx, version)]
    failed = [r for r in results if not r["ok"]]
    args = {"version": version, "force": force}
    with audited(ctx, "push", args=args, reason=reason) as (t, entry):
        entry.detail = {"replicas": results, "verdict": verdict}
        if failed:
            entry.outcome = "failed"
        else:
            versions.mark_pushed(t, model, version, now=ctx.now(), actor=ctx.actor, forced=force)
    if failed:
        raise CheckFailedError(f"model '{model}': v{version} failed the load-and-query check on {len(failed)} of "
                               f"{len(results)} replica(s): " + "; ".join(f"{r['replica']}: {r['error']}" for r in failed),
                               hint="fix the replica or the version; nothing was marked pushed")
    from lifelong_cli.errors import LlctlError

    alias_note = ""
    try:
        registry.set_alias("pushed", version)
    except LlctlError as exc:
        alias_note = f"; registry alias not set ({exc.message})"
    where = f"{len(results)} replica(s)" if urls else "a local check (no live replica)"
    return PushResult(model=model, version=version, verdict=verdict, forced=force, dry_run=False, replicas=results,
                      message=f"model '{model}': v{version} pushed: loaded and queried on {where}; "
                              f"no traffic moved{alias_note}",
                      next=f"`llctl canary start {version}`")
