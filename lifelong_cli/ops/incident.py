"""incident open | note | close | list | show | report.

An incident belongs to the model it was opened for (``--model``), or with ``store_wide`` to the
whole store (a shared upstream gone bad: it shows in every model's list). While an incident is open,
every audited action of its model is linked to it (the newest open one; see ``store/audit.py``), so
its timeline is the audit log. The report is a postmortem draft."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import UsageError
from lifelong_cli.ops._base import Result, audited, jsonable, notify_after_commit
from lifelong_cli.store import incidents

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

SEVERITIES = ("sev1", "sev2", "sev3", "sev4")


@dataclass(frozen=True)
class IncidentResult(Result):
    model: str  # the model the command acted for; the incident's own "model" is None when store-wide
    incident: dict[str, Any]
    changed: bool
    notes: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    next: str = ""


@dataclass(frozen=True)
class IncidentList(Result):
    model: str
    incidents: list[dict[str, Any]]


def whose(incident: dict[str, Any]) -> str:
    """"model 'churn'" or "all models", for messages."""
    return "all models" if incident["model"] is None else f"model '{incident['model']}'"


def open_incident(ctx: AppContext, *, title: str, severity: str = "sev2", join: bool = False,
                  store_wide: bool = False) -> IncidentResult:
    """Open an incident of ``ctx.model`` (of the whole store with ``store_wide``). With ``join``, the
    incident its actions are already linked to, if one is open, is returned instead (playbooks)."""
    if severity not in SEVERITIES:
        raise UsageError(f"--severity {severity!r} is not one of {', '.join(SEVERITIES)}", hint="--severity sev2")
    if not title.strip():
        raise UsageError("an incident needs a title", hint='llctl incident open "labels flipped upstream"')
    model = ctx.model
    owner = None if store_wide else model
    if join:
        with ctx.store.tx(write=False) as t:
            current = incidents.open_for(t, owner)
        if current:
            return IncidentResult(model, jsonable(current), False,
                                  message=f"{whose(current)}: joined open incident {current['id']}: {current['title']}")
    now = ctx.now()
    with audited(ctx, "incident open", args={"title": title, "severity": severity, "store_wide": store_wide},
                 store_wide=store_wide) as (t, entry):
        iid = incidents.add(t, owner, title=title, severity=severity, now=now, actor=ctx.actor)
        entry.detail = {"incident": iid}
        row = incidents.get(t, iid)
    linked = ("the audited actions of every model are linked to it until it is closed (a model's own open "
              "incident comes first)" if store_wide else "every audited action is linked to it until it is closed")
    return IncidentResult(model, jsonable(row), True,
                          message=f"{whose(row)}: incident {iid} opened ({severity}): {title}; {linked}",
                          next=f"`llctl incident note {iid} \"...\"` as you go; `llctl playbook list` for a response")


def note(ctx: AppContext, *, incident_id: int, text: str) -> IncidentResult:
    if not text.strip():
        raise UsageError("the note is empty", hint='llctl incident note 3 "rolled back to v7"')
    with ctx.store.tx() as t:
        row = incidents.require(t, ctx.model, incident_id)
        incidents.add_note(t, incident_id, ts=ctx.now(), actor=ctx.actor, text=text)
    return IncidentResult(ctx.model, jsonable(row), True, message=f"{whose(row)}: note added to incident {incident_id}")


def close(ctx: AppContext, *, incident_id: int, summary: str | None = None) -> IncidentResult:
    """Close an incident (its model's or a store-wide one). Safe to repeat."""
    model = ctx.model
    with ctx.store.tx() as t:
        row = incidents.require(t, model, incident_id)
        changed = incidents.close(t, row, now=ctx.now(), actor=ctx.actor, summary=summary)
        row = incidents.get(t, incident_id)
    if not changed:
        return IncidentResult(model, jsonable(row), False,
                              message=f"{whose(row)}: incident {incident_id} was already closed; nothing changed")
    notify_after_commit(ctx, "incident close", model=row["model"], args={"incident": incident_id}, reason=summary,
                        outcome="ok", detail={"incident": incident_id})
    return IncidentResult(model, jsonable(row), True, message=f"{whose(row)}: incident {incident_id} closed",
                          next=f"`llctl incident report {incident_id}` drafts the postmortem")


def list_incidents(ctx: AppContext, *, all_: bool = True) -> IncidentList:
    """``ctx.model``'s incidents and the store-wide ones, oldest first."""
    with ctx.store.tx(write=False) as t:
        rows = incidents.list_for(t, ctx.model, open_only=not all_)
    return IncidentList(ctx.model, jsonable(rows))


def show(ctx: AppContext, *, incident_id: int) -> IncidentResult:
    with ctx.store.tx(write=False) as t:
        row = incidents.require(t, ctx.model, incident_id)
        tl = incidents.timeline(t, row)
    return IncidentResult(ctx.model, jsonable(row), False, timeline=jsonable(tl),
                          message=f"{whose(row)}: incident {incident_id} ({row['severity']}, {row['status']}): "
                          f"{row['title']}",
                          next="" if row["status"] == "closed" else f"`llctl incident close {incident_id} --summary ...`")


@dataclass(frozen=True)
class ReportResult(Result):
    model: str
    incident: int
    path: str
    format: str
    plots: list[str]
    times: dict[str, Any]
    durations: dict[str, Any]
    golden: dict[str, Any]
    message: str = ""


def report(ctx: AppContext, *, incident_id: int, fmt: str = "md", out_dir: str | None = None) -> ReportResult:
    """Write the postmortem draft (and its PNG plots) to ``out_dir`` (default .llctl/reports)."""
    from pathlib import Path

    from lifelong_cli.fsutil import atomic_write_bytes
    from lifelong_cli.incident import report as rp

    if fmt not in ("md", "html"):
        raise UsageError(f"--format {fmt!r}: use md or html", hint="llctl incident report 3 --format html")
    rep = rp.build(ctx, incident_id)
    out = Path(out_dir) if out_dir else ctx.config.state_dir / "reports"
    out.mkdir(parents=True, exist_ok=True)
    rep.plots = rp.plot(rep, out)
    from lifelong_cli.secrets import mask

    text = mask(rp.render_md(rep) if fmt == "md" else rp.render_html(rep))  # titles and notes are free text
    path = out / f"incident-{incident_id}.{fmt}"
    atomic_write_bytes(path, text.encode())
    g = rep.golden
    return ReportResult(ctx.model, incident_id, str(path), fmt, [str(out / p) for p in rep.plots.values()], jsonable(rep.times),
                        rep.durations, jsonable({k: g[k] for k in ("before", "worst_served", "after")}),
                        f"{whose(rep.incident)}: postmortem draft for incident {incident_id}: {path}"
                        + (f" (+ {len(rep.plots)} plot(s))" if rep.plots else ""))
