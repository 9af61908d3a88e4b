"""The postmortem draft of an incident: summary, timeline, time to detect / mitigate / recover,
versions and data affected, golden-set metrics before / during / after, traffic split over time
(PNG plots via matplotlib), and headings for people to fill in.

Times, from the audit log and the store:
- impact start: the earliest ingest time of a batch that a purge rule made during the incident
  hides or that was rejected from hold during it, else the incident's opening;
- detected: the earliest of the opening and any rejection, batch held at ingest, automatic canary
  abort or SLO violation between impact start and the opening;
- mitigated: the first stop-training, fallback on, rollback, canary abort, purge-data or rejection
  of a held batch after that;
- recovered: the last canary promote or fallback off after mitigation, else the closing."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

MITIGATIONS = ("stop-training", "fallback", "rollback", "canary abort", "purge-data", "data-reject")


@dataclass
class Report:
    incident: dict[str, Any]
    times: dict[str, datetime | None]
    durations: dict[str, float | None]
    timeline: list[dict[str, Any]]
    purges: list[dict[str, Any]]
    golden: dict[str, Any]
    serving: list[dict[str, Any]]
    traffic: list[dict[str, Any]]
    plots: dict[str, str] = field(default_factory=dict)


def _golden_by_version(t, model: str) -> dict[int, float]:
    """Each version's golden metric (accuracy, else the first metric) from its latest validation."""
    from lifelong_cli.store import versions

    out: dict[int, float] = {}
    for v in versions.lineage_graph(t, model):
        golden = [g for g in (versions.latest_validation(t, model, v["id"]) or {}).get("gates") or []
                  if g["name"].startswith("golden ") and isinstance(g["figure"], int | float)]
        pick = next((g for g in golden if g["name"] == "golden accuracy"), golden[0] if golden else None)
        if pick is not None:
            out[v["id"]] = float(pick["figure"])
    return out


def _serving_history(t, model: str) -> list[dict[str, Any]]:
    """What was stable (and the canary's share, and fallback) after each deployment change of ``model``."""
    from lifelong_cli.store import audit

    state = {"stable": None, "canary": None, "share": 0.0, "fallback": False}
    out = []
    for e in audit.query(t, model=model):
        d, a, verb = e["detail"] or {}, e["args"] or {}, e["verb"]
        if e["outcome"] not in ("ok", "passed") or e["model"] != model:
            continue
        if verb == "canary start":
            if d.get("first_launch"):
                state.update(stable=d.get("version"), canary=None, share=0.0)
            else:
                state.update(canary=d.get("version"), share=d.get("share", 0.0))
        elif verb == "canary step":
            state.update(share=d.get("to", state["share"]))
        elif verb == "canary promote":
            state.update(stable=d.get("version"), canary=None, share=0.0)
        elif verb == "canary abort":
            state.update(canary=None, share=0.0)
        elif verb == "rollback" and "target" in d:
            state.update(stable=d["target"], canary=None, share=0.0)
        elif verb == "fallback" and "on" in d:
            state.update(fallback=bool(d["on"]))
        else:
            continue
        out.append({"ts": e["ts"], **state, "verb": verb, "args": a})
    return out


def build(ctx: Any, incident_id: int) -> Report:
    """The report of an incident ``ctx.model`` can see. Its versions, data and traffic are those of the
    incident's model (of ``ctx.model`` for a store-wide incident); its timeline is every linked entry."""
    from lifelong_cli.store import audit, batches, incidents, predictions, purge_rules

    with ctx.store.tx(write=False) as t:
        inc = incidents.require(t, ctx.model, incident_id)
        model = inc["model"] or ctx.model
        tl = incidents.timeline(t, inc)
        end = inc["closed_at"] or ctx.now()
        purges = purge_rules.created_between(t, model, inc["opened_at"], end)
        rejected = {(e["detail"] or {}).get("batch") for e in tl if e["what"] == "data-reject" and e["outcome"] == "ok"}
        batch_ids = sorted({b for p in purges for b in ((p["blast_radius"] or {}).get("batches") or [])}
                           | {p["spec"]["batch"] for p in purges if isinstance(p["spec"].get("batch"), int)}
                           | {b for b in rejected if isinstance(b, int)})
        impact = min((b["created_at"] for b in batches.created_at_of(t, model, batch_ids)), default=inc["opened_at"])
        impact = min(impact, inc["opened_at"])
        before_open = [e for e in audit.query(t, model=model, since=impact) if e["ts"] <= inc["opened_at"]]
        golden = _golden_by_version(t, model)
        history = _serving_history(t, model)
        window_start = impact - timedelta(minutes=1)
        traffic = predictions.traffic_between(t, model, start=window_start, end=end + timedelta(minutes=1))
    detections = [e["ts"] for e in before_open
                  if (e["verb"] == "validate" and e["outcome"] == "rejected")
                  or (e["verb"] == "canary abort" and (e["args"] or {}).get("automatic"))
                  or (e["verb"] == "check" and e["outcome"] == "violated")
                  or (e["verb"] == "ingest" and e["outcome"] == "held")]
    detected = min([inc["opened_at"], *detections])
    mitig = [e["ts"] for e in tl if e["ts"] >= detected and any(e["what"].startswith(m) for m in MITIGATIONS)
             and e["outcome"] == "ok" and not (e["what"] == "fallback" and not (e["args"] or {}).get("on"))]
    mitigated = min(mitig, default=None)
    recov = [e["ts"] for e in tl if mitigated and e["ts"] >= mitigated and e["outcome"] == "ok"
             and (e["what"] == "canary promote" or (e["what"] == "fallback" and not (e["args"] or {}).get("on")))]
    recovered = max(recov, default=inc["closed_at"])

    def secs(a, b):
        return None if a is None or b is None else round((b - a).total_seconds(), 1)

    # Golden metric of the stable version before, the worst served during, and after.
    def stable_at(ts):
        s = None
        for h in history:
            if h["ts"] <= ts:
                s = h["stable"]
        return s

    before_v = stable_at(impact)
    served = {h["stable"] for h in history if impact <= h["ts"] <= (recovered or end)} | {before_v}
    served |= {h["canary"] for h in history if h["canary"] and impact <= h["ts"] <= (recovered or end)}
    served.discard(None)
    worst_v = min(served, key=lambda v: golden.get(v, float("inf")), default=None)
    after_v = stable_at(recovered or end)
    g = {"before": {"version": before_v, "metric": golden.get(before_v)},
         "worst_served": {"version": worst_v, "metric": golden.get(worst_v)},
         "after": {"version": after_v, "metric": golden.get(after_v)}}
    return Report(inc, {"impact_start": impact, "detected": detected, "mitigated": mitigated, "recovered": recovered},
                  {"time_to_detect_s": secs(impact, detected), "time_to_mitigate_s": secs(detected, mitigated),
                   "time_to_recover_s": secs(detected, recovered)},
                  tl, purges, {**g, "by_version": golden}, [h for h in history if h["ts"] >= window_start], traffic)


def plot(rep: Report, out: Path) -> dict[str, str]:
    """Traffic split over time and the golden metric of what was stable, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths: dict[str, str] = {}
    iid = rep.incident["id"]
    marks = [(k, v) for k, v in rep.times.items() if v is not None]
    if rep.traffic:
        t0 = rep.traffic[0]["ts"]
        span = max(1.0, (rep.traffic[-1]["ts"] - t0).total_seconds())
        width = max(1.0, span / 60)
        keys = sorted({(r["variant"] if r["variant"] == "fallback" else f"v{r['version']}") for r in rep.traffic})
        edges = np.arange(0, span + width, width)
        counts = {k: np.zeros(len(edges)) for k in keys}
        errors = np.zeros(len(edges))
        for r in rep.traffic:
            i = min(int((r["ts"] - t0).total_seconds() // width), len(edges) - 1)
            counts[r["variant"] if r["variant"] == "fallback" else f"v{r['version']}"][i] += 1
            errors[i] += not r["ok"]
        total = np.maximum(sum(counts.values()), 1)
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.stackplot(edges, *[counts[k] / total * 100 for k in keys], labels=keys, alpha=0.8)
        if errors.any():
            ax.plot(edges, errors / total * 100, color="red", label="errors %")
        for name, ts in marks:
            x = (ts - t0).total_seconds()
            if 0 <= x <= span:
                ax.axvline(x, color="black", linestyle=":", linewidth=1)
                ax.text(x, 102, name.replace("_", " "), rotation=90, fontsize=7, va="bottom")
        ax.set_xlabel(f"seconds since {t0:%Y-%m-%d %H:%M:%S}Z")
        ax.set_ylabel("% of requests")
        ax.set_ylim(0, 100)
        ax.legend(loc="lower left", fontsize=7)
        fig.tight_layout()
        p = out / f"incident-{iid}-traffic.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths["traffic"] = p.name
    by_v = rep.golden["by_version"]
    pts = [(h["ts"], by_v.get(h["stable"])) for h in rep.serving if h["stable"] in by_v]
    if pts:
        t0 = pts[0][0]
        fig, ax = plt.subplots(figsize=(8, 3))
        xs = [(ts - t0).total_seconds() for ts, _ in pts]
        ax.step(xs + [max(xs[-1], 1.0) * 1.05], [m for _, m in pts] + [pts[-1][1]], where="post")
        for h in rep.serving:
            if h["stable"] in by_v:
                ax.annotate(f"v{h['stable']}", ((h["ts"] - t0).total_seconds(), by_v[h["stable"]]), fontsize=7)
        ax.set_xlabel(f"seconds since {t0:%Y-%m-%d %H:%M:%S}Z")
        ax.set_ylabel("golden metric of stable")
        fig.tight_layout()
        p = out / f"incident-{iid}-golden.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths["golden"] = p.name
    return paths


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _ts(ts: datetime | None) -> str:
    return "—" if ts is None else f"{ts:%Y-%m-%d %H:%M:%S}Z"


def _sections(rep: Report) -> list[tuple[str, list[str] | list[list[str]], str]]:
    """(heading, rows or paragraphs, kind) with kind 'p' (paragraphs) or 'table' (first row = header)."""
    inc = rep.incident
    g = rep.golden

    def metric(d):
        return "—" if d["metric"] is None else f"{d['metric']:.4f} (v{d['version']})"

    out: list[tuple[str, Any, str]] = [
        ("Summary", [f"**{inc['title']}** — " + ("all models" if inc["model"] is None else f"model {inc['model']}")
                     + f", severity {inc['severity']}, {inc['status']}.",
                     f"Opened {_ts(inc['opened_at'])} by {inc['opened_by']}"
                     + (f"; closed {_ts(inc['closed_at'])} by {inc['closed_by']}." if inc["closed_at"] else "; still open."),
                     inc["summary"] or "(summary: to be written)"], "p"),
        ("Key times", [["", "when", "since previous"],
                       ["impact start", _ts(rep.times["impact_start"]), ""],
                       ["detected", _ts(rep.times["detected"]), "time to detect " + _fmt_s(rep.durations["time_to_detect_s"])],
                       ["mitigated", _ts(rep.times["mitigated"]), "time to mitigate " + _fmt_s(rep.durations["time_to_mitigate_s"])],
                       ["recovered", _ts(rep.times["recovered"]), "time to recover " + _fmt_s(rep.durations["time_to_recover_s"])]],
         "table"),
        ("Golden-set metric", [["", "golden metric"], ["before (stable at impact)", metric(g["before"])],
                               ["worst served", metric(g["worst_served"])], ["after recovery", metric(g["after"])]], "table"),
        ("Data and versions affected",
         [["purge rule", "rule", "rows", "versions trained on it", "last clean", "state"]]
         + [[str(p["id"]), str(p["spec"]), str(p["rows_affected"]),
             ", ".join(f"v{v}" for v in (p["blast_radius"] or {}).get("affected_versions", [])) or "none",
             f"v{(p['blast_radius'] or {}).get('last_clean_version')}" if (p["blast_radius"] or {}).get("last_clean_version") else "—",
             "hard" if p["hard"] else ("active" if p["active"] else "undone")] for p in rep.purges]
         if rep.purges else ["No data was purged."], "table" if rep.purges else "p"),
        ("Serving over time", [["when", "stable", "canary", "share", "fallback", "by"]]
         + [[_ts(h["ts"]), f"v{h['stable']}" if h["stable"] else "—", f"v{h['canary']}" if h["canary"] else "—",
             f"{h['share']:.0%}", "on" if h["fallback"] else "off", h["verb"]] for h in rep.serving], "table"),
        ("Timeline (audit log)", [["when", "who", "what", "outcome", "why"]]
         + [[_ts(e["ts"]), e["actor"], e["what"], e["outcome"], (e["reason"] or "")[:120]] for e in rep.timeline], "table"),
        ("Root cause", ["(to be written: what broke, why it was not caught earlier)"], "p"),
        ("Follow-ups", ["(to be written: owner, action, due date)"], "p"),
    ]
    return out


def render_md(rep: Report) -> str:
    lines = [f"# Incident {rep.incident['id']}: {rep.incident['title']} — postmortem draft", ""]
    for heading, body, kind in _sections(rep):
        lines += [f"## {heading}", ""]
        if kind == "p":
            lines += [*body, ""]
        else:
            lines.append("| " + " | ".join(body[0]) + " |")
            lines.append("|" + "---|" * len(body[0]))
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body[1:]]
            lines.append("")
        if heading == "Serving over time" and "traffic" in rep.plots:
            lines += [f"![traffic split]({rep.plots['traffic']})", ""]
        if heading == "Golden-set metric" and "golden" in rep.plots:
            lines += [f"![golden metric of stable]({rep.plots['golden']})", ""]
    return "\n".join(lines)


def render_html(rep: Report) -> str:
    e = html.escape
    parts = ["<!doctype html><meta charset='utf-8'>",
             f"<title>Incident {rep.incident['id']}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{border:1px solid #ccc;"
             "padding:2px 6px;font-size:90%}table{border-collapse:collapse}</style>",
             f"<h1>Incident {rep.incident['id']}: {e(rep.incident['title'])} — postmortem draft</h1>"]
    for heading, body, kind in _sections(rep):
        parts.append(f"<h2>{e(heading)}</h2>")
        if kind == "p":
            parts += [f"<p>{e(p).replace('**', '')}</p>" for p in body]
        else:
            parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in body[0]) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body[1:])
                         + "</table>")
        if heading == "Serving over time" and "traffic" in rep.plots:
            parts.append(f"<img src='{e(rep.plots['traffic'])}' alt='traffic split'>")
        if heading == "Golden-set metric" and "golden" in rep.plots:
            parts.append(f"<img src='{e(rep.plots['golden'])}' alt='golden metric'>")
    return "\n".join(parts)
