"""status: one screen of one model's real state, read in one snapshot (the other models in the store
are named, not shown: `llctl --model NAME status` shows one of them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.ops._base import Result, jsonable
from lifelong_cli.store import (
    batches,
    control,
    deployment,
    incidents,
    models,
    purge_rules,
    replicas,
    versions,
)

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class StatusResult(Result):
    model: str
    other_models: list[str]  # the other models in the same store (each has its own state; not shown)
    store: str
    now: Any
    serving: dict[str, Any]
    training: dict[str, Any]
    data: dict[str, Any]
    drift: dict[str, Any]
    incidents: list[dict[str, Any]]
    next: list[str]


def status(ctx: AppContext) -> StatusResult:
    """``ctx.model``'s serving, canary, fallback, training, data freshness, drift and open incidents (its own
    and the store-wide ones)."""
    now = ctx.now()
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, model)
        ctl = control.get(t, model)
        n_versions = versions.count(t, model)
        latest = (versions.newest(t, model, limit=1) or [None])[0]
        b = batches.summary(t, model)
        rule_specs = [r["spec"] for r in purge_rules.active(t, model)]
        last_drift = batches.newest_drift(t, model)
        live = replicas.live(t, model, now=now, ttl_seconds=ctx.config.settings.serving.replica_ttl_seconds)
        open_incidents = [{k: i[k] for k in ("id", "model", "title", "severity", "opened_at", "opened_by")}
                          for i in incidents.list_for(t, model, open_only=True)]
        others = [m for m in models.names(t) if m != model]

    lease_active = ctl.lease_active(now)
    serving = {
        "stable_version": dep["stable_version"],
        "canary_version": dep["canary_version"],
        "canary_share": dep["canary_share"],
        "canary_state": dep["canary_state"],
        "fallback": dep["fallback_mode"],
        "fallback_strategy": dep["fallback_strategy"] if dep["fallback_mode"] else None,
        "fallback_since": dep["fallback_since"] if dep["fallback_mode"] else None,
        "generation": dep["generation"],
        "updated_at": dep["updated_at"],
        "updated_by": dep["updated_by"],
        "canary_analysis": ({k: (dep["canary_analysis"] or {}).get(k) for k in ("verdict", "failed", "waiting_for", "at")}
                            if dep["canary_analysis"] else None),
        "replicas": [{"id": r["id"], "url": r["url"], "status": r["status"], "generation": r["generation"],
                      "in_sync": r["generation"] == dep["generation"], "problem": (r["detail"] or {}).get("problem")}
                     for r in live],
    }
    training = {
        "stopped": ctl.stopped,
        "stopped_by": ctl.stopped_by if ctl.stopped else None,
        "stopped_at": ctl.stopped_at if ctl.stopped else None,
        "stop_reason": ctl.stop_reason if ctl.stopped else None,
        "running": lease_active,
        "lease_holder": ctl.lease_holder if lease_active else None,
        "lease_expires_at": ctl.lease_expires_at if lease_active else None,
        "stale_lease_holder": ctl.lease_holder if ctl.lease_holder and not lease_active else None,
        "head_version": dep["training_head"],
        "versions": n_versions,
        "latest_version": latest["id"] if latest else None,
        "latest_verdict": latest["verdict"] if latest else None,
    }
    last_ingest = b["last_at"]
    data = {
        "batches": b["n"],
        "batches_rejected": b["rejected"],
        "batches_held": b["held"],
        "rows_accepted": int(b["accepted"]),
        "rows_quarantined": int(b["quarantined"]),
        "last_ingest_at": last_ingest,
        "last_ingest_age_seconds": (now - last_ingest).total_seconds() if last_ingest else None,
        "newest_event_time": b["newest"],
        "active_purge_rules": len(rule_specs),
    }
    drift = (
        {"batch": last_drift["id"], "drifted": last_drift["drifted"], "checked_at": last_drift["created_at"],
         "features": (last_drift["drift"] or {}).get("drifted_features", []),
         "purged": any(spec.get("batch") == last_drift["id"] and len(spec) == 1 for spec in rule_specs)}
        if last_drift
        else {"batch": None, "drifted": None}
    )
    return StatusResult(
        model=model,
        other_models=others,
        store=ctx.raw_store.display_url,
        now=now,
        serving=jsonable(serving),
        training=jsonable(training),
        data=jsonable(data),
        drift=jsonable(drift),
        incidents=jsonable(open_incidents),
        next=_next_steps(serving, training, data, drift, open_incidents),
    )


def _next_steps(serving, training, data, drift, open_incidents) -> list[str]:
    steps: list[str] = []
    if training["stopped"]:
        steps.append("training is stopped: when the cause is fixed, `llctl resume --reason ...`")
    if serving["fallback"]:
        steps.append("serving answers from the fallback: `llctl fallback off` once a good version is stable")
    if training["stale_lease_holder"]:
        steps.append(f"a trainer ({training['stale_lease_holder']}) died holding the lease; the next `llctl train` takes it over")
    if drift.get("drifted") and not drift.get("purged"):
        steps.append(f"batch {drift['batch']} drifted: `llctl drift --batch {drift['batch']}`")
    behind = [r["id"] for r in serving["replicas"] if not r["in_sync"] or r["status"] != "serving"]
    if behind:
        steps.append(f"replica(s) not serving generation {serving['generation']}: {', '.join(behind)} (see `llctl status --json`)")
    if open_incidents:
        steps.append(f"incident {open_incidents[-1]['id']} is open: `llctl incident show {open_incidents[-1]['id']}`")
    if data["batches_held"]:
        steps.append(f"{data['batches_held']} batch(es) on hold, not trainable: `llctl data holds`")
    if data["batches"] == 0:
        steps.append("no data yet: `llctl ingest FILE`")
    return steps
