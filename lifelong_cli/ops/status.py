"""status: one screen of real state, read in one snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.ops._base import Result, jsonable
from lifelong_cli.store import control, deployment, replicas

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class StatusResult(Result):
    model: str
    store: str
    now: Any
    serving: dict[str, Any]
    training: dict[str, Any]
    data: dict[str, Any]
    drift: dict[str, Any]
    incidents: list[dict[str, Any]]
    next: list[str]


def status(ctx: AppContext) -> StatusResult:
    """Serving, canary, fallback, training, data freshness, drift and open incidents."""
    now = ctx.now()
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t)
        ctl = control.get(t)
        v = t.row("SELECT count(*) AS n, max(id) AS latest FROM model_versions")
        n_versions, latest_version = v["n"], v["latest"]
        last_verdict = None
        if latest_version is not None:
            last_verdict = t.scalar("SELECT verdict FROM validations WHERE version_id = :v ORDER BY id DESC LIMIT 1",
                                    {"v": latest_version})
        b = t.row("SELECT count(*) AS n, max(created_at) AS last_at, max(event_time_max) AS newest, "
                  "coalesce(sum(rows_accepted), 0) AS accepted, coalesce(sum(rows_quarantined), 0) AS quarantined "
                  "FROM batches WHERE status = 'accepted'", types={"last_at": "ts", "newest": "ts"})
        rejected = t.scalar("SELECT count(*) FROM batches WHERE status = 'rejected'")
        rule_specs = [r["spec"] for r in t.rows("SELECT spec FROM purge_rules WHERE active = :t", {"t": True},
                                                  types={"spec": "json"})]
        active_rules = len(rule_specs)
        last_drift = t.row("SELECT id, drifted, drift, created_at FROM batches WHERE drifted IS NOT NULL "
                           "ORDER BY id DESC LIMIT 1", types={"drifted": "bool", "drift": "json", "created_at": "ts"})
        live = replicas.live(t, now=now, ttl_seconds=ctx.config.settings.serving.replica_ttl_seconds)
        open_incidents = t.rows("SELECT id, title, severity, opened_at, opened_by FROM incidents "
                                "WHERE status = 'open' ORDER BY id", types={"opened_at": "ts"})

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
        "latest_version": latest_version,
        "latest_verdict": last_verdict,
    }
    last_ingest = b["last_at"]
    data = {
        "batches": b["n"],
        "batches_rejected": rejected,
        "rows_accepted": int(b["accepted"]),
        "rows_quarantined": int(b["quarantined"]),
        "last_ingest_at": last_ingest,
        "last_ingest_age_seconds": (now - last_ingest).total_seconds() if last_ingest else None,
        "newest_event_time": b["newest"],
        "active_purge_rules": active_rules,
    }
    drift = (
        {"batch": last_drift["id"], "drifted": last_drift["drifted"], "checked_at": last_drift["created_at"],
         "features": (last_drift["drift"] or {}).get("drifted_features", []),
         "purged": any(spec.get("batch") == last_drift["id"] and len(spec) == 1 for spec in rule_specs)}
        if last_drift
        else {"batch": None, "drifted": None}
    )
    return StatusResult(
        model=ctx.config.settings.model.name,
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
    if data["batches"] == 0:
        steps.append("no data yet: `llctl ingest FILE`")
    return steps
