"""incident open | note | close | list | show | report.

While an incident is open, every audited action is linked to it (the newest open one; see
``store/audit.py``), so its timeline is the audit log. The report is a postmortem draft."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import NotFoundError, UsageError
from lifelong_cli.ops._base import Result, audited, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
TYPES = {"opened_at": "ts", "closed_at": "ts"}
_COLS = "id, title, severity, status, opened_at, opened_by, closed_at, closed_by, summary"


@dataclass(frozen=True)
class IncidentResult(Result):
    incident: dict[str, Any]
    changed: bool
    notes: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    next: str = ""


@dataclass(frozen=True)
class IncidentList(Result):
    incidents: list[dict[str, Any]]


def _get(t, incident_id: int) -> dict[str, Any]:
    row = t.row(f"SELECT {_COLS} FROM incidents WHERE id = :i", {"i": incident_id}, types=TYPES)
    if row is None:
        raise NotFoundError(f"no incident {incident_id}", hint="`llctl incident list` shows them")
    return row


def open_incident(ctx: AppContext, *, title: str, severity: str = "sev2", join: bool = False) -> IncidentResult:
    """Open an incident. With ``join``, an already-open incident is returned instead (playbooks)."""
    if severity not in SEVERITIES:
        raise UsageError(f"--severity {severity!r} is not one of {', '.join(SEVERITIES)}", hint="--severity sev2")
    if not title.strip():
        raise UsageError("an incident needs a title", hint='llctl incident open "labels flipped upstream"')
    if join:
        with ctx.store.tx(write=False) as t:
            current = t.row(f"SELECT {_COLS} FROM incidents WHERE status = 'open' ORDER BY id DESC LIMIT 1", types=TYPES)
        if current:
            return IncidentResult(jsonable(current), False, message=f"joined open incident {current['id']}: {current['title']}")
    now = ctx.now()
    with audited(ctx, "incident open", args={"title": title, "severity": severity}) as (t, entry):
        iid = t.insert("incidents", {"title": title, "severity": severity, "status": "open", "opened_at": now,
                                     "opened_by": ctx.actor})
        entry.detail = {"incident": iid}
        row = _get(t, iid)
    return IncidentResult(jsonable(row), True, message=f"incident {iid} opened ({severity}): {title}; every audited "
                          "action is linked to it until it is closed",
                          next=f"`llctl incident note {iid} \"...\"` as you go; `llctl playbook list` for a response")


def note(ctx: AppContext, *, incident_id: int, text: str) -> IncidentResult:
    if not text.strip():
        raise UsageError("the note is empty", hint='llctl incident note 3 "rolled back to v7"')
    with ctx.store.tx() as t:
        row = _get(t, incident_id)
        t.insert("incident_notes", {"incident_id": incident_id, "ts": ctx.now(), "actor": ctx.actor, "text": text})
    return IncidentResult(jsonable(row), True, message=f"note added to incident {incident_id}")


def close(ctx: AppContext, *, incident_id: int, summary: str | None = None) -> IncidentResult:
    from lifelong_cli.store import audit

    with ctx.store.tx(write=False) as t:
        row = _get(t, incident_id)
    if row["status"] == "closed":
        return IncidentResult(jsonable(row), False, message=f"incident {incident_id} was already closed; nothing changed")
    now = ctx.now()
    with ctx.store.tx() as t:
        t.execute("UPDATE incidents SET status = 'closed', closed_at = :now, closed_by = :by, summary = :s WHERE id = :i",
                  {"now": now, "by": ctx.actor, "s": summary, "i": incident_id})
        # The closing belongs to this incident's timeline. audit.append links an entry to the newest
        # *open* incident: after the UPDATE that is no longer this one (and may be another one).
        t.insert("audit_log", {"ts": now, "actor": ctx.actor, "verb": "incident close",
                               "args": audit.scrub({"incident": incident_id}), "reason": summary, "outcome": "ok",
                               "detail": {"incident": incident_id}, "incident_id": incident_id})
        row = _get(t, incident_id)
    return IncidentResult(jsonable(row), True, message=f"incident {incident_id} closed",
                          next=f"`llctl incident report {incident_id}` drafts the postmortem")


def list_incidents(ctx: AppContext, *, all_: bool = True) -> IncidentList:
    with ctx.store.tx(write=False) as t:
        rows = t.rows(f"SELECT {_COLS} FROM incidents" + ("" if all_ else " WHERE status = 'open'") + " ORDER BY id",
                      types=TYPES)
    return IncidentList(jsonable(rows))


def timeline(t, incident: dict[str, Any]) -> list[dict[str, Any]]:
    """Audit entries linked to the incident, with its notes, oldest first."""
    from lifelong_cli.store import audit

    entries = [{"ts": e["ts"], "actor": e["actor"], "what": e["verb"], "outcome": e["outcome"], "reason": e["reason"],
                "args": e["args"], "detail": e["detail"]} for e in audit.query(t, incident_id=incident["id"])]
    notes = [{"ts": n["ts"], "actor": n["actor"], "what": "note", "outcome": "", "reason": n["text"], "args": {}, "detail": {}}
             for n in t.rows("SELECT ts, actor, text FROM incident_notes WHERE incident_id = :i ORDER BY id",
                             {"i": incident["id"]}, types={"ts": "ts"})]
    return sorted(entries + notes, key=lambda e: e["ts"])


def show(ctx: AppContext, *, incident_id: int) -> IncidentResult:
    with ctx.store.tx(write=False) as t:
        row = _get(t, incident_id)
        tl = timeline(t, row)
    return IncidentResult(jsonable(row), False, timeline=jsonable(tl),
                          message=f"incident {incident_id} ({row['severity']}, {row['status']}): {row['title']}",
                          next="" if row["status"] == "closed" else f"`llctl incident close {incident_id} --summary ...`")


@dataclass(frozen=True)
class ReportResult(Result):
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

    from lifelong_cli.incident import report as rp
    from lifelong_cli.ops.fsutil import atomic_write_bytes

    if fmt not in ("md", "html"):
        raise UsageError(f"--format {fmt!r}: use md or html", hint="llctl incident report 3 --format html")
    rep = rp.build(ctx, incident_id)
    out = Path(out_dir) if out_dir else ctx.config.state_dir / "reports"
    out.mkdir(parents=True, exist_ok=True)
    rep.plots = rp.plot(rep, out)
    text = rp.render_md(rep) if fmt == "md" else rp.render_html(rep)
    path = out / f"incident-{incident_id}.{fmt}"
    atomic_write_bytes(path, text.encode())
    g = rep.golden
    return ReportResult(incident_id, str(path), fmt, [str(out / p) for p in rep.plots.values()], jsonable(rep.times),
                        rep.durations, jsonable({k: g[k] for k in ("before", "worst_served", "after")}),
                        f"postmortem draft for incident {incident_id}: {path}"
                        + (f" (+ {len(rep.plots)} plot(s))" if rep.plots else ""))
