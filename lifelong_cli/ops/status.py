"""status: one screen of real state, read in one snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from lifelong_cli.ops._base import Result, jsonable
from lifelong_cli.store import control, deployment
from lifelong_cli.store.schema import batches, incidents, model_versions, purge_rules, validations

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
    with ctx.store.read() as conn:
        dep = deployment.get(conn)
        ctl = control.get(conn)
        n_versions, latest_version = conn.execute(
            select(func.count(model_versions.c.id), func.max(model_versions.c.id))
        ).one()
        last_verdict = None
        if latest_version is not None:
            last_verdict = conn.execute(
                select(validations.c.verdict)
                .where(validations.c.version_id == latest_version)
                .order_by(validations.c.id.desc())
                .limit(1)
            ).scalar()
        b = conn.execute(
            select(
                func.count(batches.c.id),
                func.max(batches.c.created_at),
                func.max(batches.c.event_time_max),
                func.coalesce(func.sum(batches.c.rows_accepted), 0),
                func.coalesce(func.sum(batches.c.rows_quarantined), 0),
            ).where(batches.c.status == "accepted")
        ).one()
        rejected = conn.execute(select(func.count(batches.c.id)).where(batches.c.status == "rejected")).scalar()
        active_rules = conn.execute(select(func.count(purge_rules.c.id)).where(purge_rules.c.active)).scalar()
        last_drift = conn.execute(
            select(batches.c.id, batches.c.drifted, batches.c.drift, batches.c.created_at)
            .where(batches.c.drifted.is_not(None))
            .order_by(batches.c.id.desc())
            .limit(1)
        ).mappings().first()
        open_incidents = [
            dict(r)
            for r in conn.execute(
                select(incidents.c.id, incidents.c.title, incidents.c.severity, incidents.c.opened_at,
                       incidents.c.opened_by)
                .where(incidents.c.status == "open")
                .order_by(incidents.c.id)
            ).mappings()
        ]

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
    last_ingest = b[1]
    data = {
        "batches": b[0],
        "batches_rejected": rejected,
        "rows_accepted": int(b[3]),
        "rows_quarantined": int(b[4]),
        "last_ingest_at": last_ingest,
        "last_ingest_age_seconds": (now - last_ingest).total_seconds() if last_ingest else None,
        "newest_event_time": b[2],
        "active_purge_rules": active_rules,
    }
    drift = (
        {"batch": last_drift["id"], "drifted": last_drift["drifted"], "checked_at": last_drift["created_at"],
         "features": (last_drift["drift"] or {}).get("drifted_features", [])}
        if last_drift
        else {"batch": None, "drifted": None}
    )
    return StatusResult(
        model=ctx.config.settings.model,
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
    if drift.get("drifted"):
        steps.append(f"batch {drift['batch']} drifted: `llctl drift --batch {drift['batch']}`")
    if open_incidents:
        steps.append(f"incident {open_incidents[-1]['id']} is open: `llctl incident show {open_incidents[-1]['id']}`")
    if data["batches"] == 0:
        steps.append("no data yet: `llctl ingest FILE`")
    return steps
