"""incident open | note | close | list | show | report: audit entries linked while an incident is
open, the postmortem draft (markdown and HTML) with its key times and PNG plots."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow.csv as pcsv
import pytest

from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.errors import NotFoundError, UsageError
from lifelong_cli.ops import canary
from lifelong_cli.ops import incident as inc
from lifelong_cli.ops._base import jsonable
from lifelong_cli.ops.fallback import fallback
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.purge_data import purge_data
from lifelong_cli.ops.push import push
from lifelong_cli.ops.resume import resume
from lifelong_cli.ops.stop_training import stop_training
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate
from lifelong_cli.store import audit as audit_store
from lifelong_cli.store import batches, versions
from tests.helpers import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADINGS = ["Summary", "Key times", "Golden-set metric", "Data and versions affected", "Serving over time",
            "Timeline (audit log)", "Root cause", "Follow-ups"]


def _entries(ctx, incident_id: int | None = None) -> list[dict]:
    with ctx.store.tx(write=False) as t:
        return audit_store.query(t, incident_id=incident_id)


# -- open / note / close / list / show -------------------------------------------------------------

def test_open_note_close_list_show(ctx):
    r = inc.open_incident(ctx, title="labels flipped upstream", severity="sev1")
    assert r.changed and r.incident["status"] == "open" and r.incident["severity"] == "sev1"
    iid = r.incident["id"]
    assert r.incident["opened_by"] == "tester" and r.incident["closed_at"] is None
    assert inc.note(ctx, incident_id=iid, text="looking at batch 12").changed
    stop_training(ctx, reason="while we look")
    listed = inc.list_incidents(ctx).incidents
    assert [(i["id"], i["status"], i["title"]) for i in listed] == [(iid, "open", "labels flipped upstream")]
    shown = inc.show(ctx, incident_id=iid)
    assert shown.incident["status"] == "open" and f"incident close {iid}" in shown.next
    assert [(e["what"], e["reason"]) for e in shown.timeline] == [
        ("incident open", None), ("note", "looking at batch 12"), ("stop-training", "while we look")]
    assert [e["outcome"] for e in shown.timeline] == ["ok", "", "ok"]

    closed = inc.close(ctx, incident_id=iid, summary="upstream fixed")
    assert closed.changed and closed.incident["status"] == "closed" and closed.incident["summary"] == "upstream fixed"
    assert closed.incident["closed_by"] == "tester" and closed.incident["closed_at"] is not None
    resume(ctx, reason="after the incident")  # not part of the incident any more
    shown = inc.show(ctx, incident_id=iid)
    assert [e["what"] for e in shown.timeline] == ["incident open", "note", "stop-training", "incident close"]
    assert shown.next == ""
    assert inc.list_incidents(ctx, all_=False).incidents == []
    assert len(inc.list_incidents(ctx).incidents) == 1


def test_audit_entries_are_linked_while_open_and_not_after_close(ctx):
    stop_training(ctx, reason="before any incident")
    iid = inc.open_incident(ctx, title="t").incident["id"]
    resume(ctx, reason="during")
    inc.close(ctx, incident_id=iid)
    stop_training(ctx, reason="after")
    by_reason = {e["reason"]: e["incident_id"] for e in _entries(ctx) if e["verb"] in ("stop-training", "resume")}
    assert by_reason == {"before any incident": None, "during": iid, "after": None}


def test_close_is_idempotent(ctx):
    iid = inc.open_incident(ctx, title="t").incident["id"]
    first = inc.close(ctx, incident_id=iid, summary="first summary")
    again = inc.close(ctx, incident_id=iid, summary="another summary")
    assert first.changed and not again.changed and "already closed" in again.message
    assert again.incident["summary"] == "first summary" and again.incident["closed_at"] == first.incident["closed_at"]
    assert [e["verb"] for e in _entries(ctx)].count("incident close") == 1


def test_closing_an_older_incident_records_the_close_on_it_not_on_the_newer_one(ctx):
    old = inc.open_incident(ctx, title="older").incident["id"]
    new = inc.open_incident(ctx, title="newer").incident["id"]
    stop_training(ctx, reason="while both are open")  # linked to the newest open one
    inc.close(ctx, incident_id=old, summary="older done")
    assert [e["verb"] for e in _entries(ctx, old)] == ["incident open", "incident close"]
    assert [e["verb"] for e in _entries(ctx, new)] == ["incident open", "stop-training"]


def test_join_returns_the_open_incident(ctx):
    iid = inc.open_incident(ctx, title="first").incident["id"]
    joined = inc.open_incident(ctx, title="second", join=True)
    assert not joined.changed and joined.incident["id"] == iid and "joined" in joined.message
    assert len(inc.list_incidents(ctx).incidents) == 1


def test_bad_input_is_refused(ctx):
    with pytest.raises(UsageError, match="sev9"):
        inc.open_incident(ctx, title="t", severity="sev9")
    with pytest.raises(UsageError, match="title"):
        inc.open_incident(ctx, title="  ")
    assert inc.list_incidents(ctx).incidents == []
    iid = inc.open_incident(ctx, title="t").incident["id"]
    with pytest.raises(UsageError, match="empty"):
        inc.note(ctx, incident_id=iid, text=" ")
    for call in (lambda: inc.note(ctx, incident_id=99, text="x"), lambda: inc.close(ctx, incident_id=99),
                 lambda: inc.show(ctx, incident_id=99), lambda: inc.report(ctx, incident_id=99)):
        with pytest.raises(NotFoundError, match="no incident 99"):
            call()
    with pytest.raises(UsageError, match="--format 'pdf'"):
        inc.report(ctx, incident_id=iid, fmt="pdf")


def test_cli_incident_commands_and_exit_codes(workspace, cli_env):
    def cli(*args):
        return run_cli(list(args), cwd=workspace, env=cli_env)

    assert cli("incident", "open", "x", "--severity", "sev9").code == 2
    r = cli("incident", "open", "serving errors", "--severity", "sev2", "--json")
    assert r.code == 0
    iid = r.json()["incident"]["id"]
    assert cli("incident", "note", str(iid), "rolled back").code == 0
    r = cli("incident", "list")
    assert r.code == 0 and f"{iid:>4}  sev2  open" in r.stdout and "serving errors" in r.stdout
    r = cli("incident", "show", str(iid))
    assert r.code == 0 and "rolled back" in r.stdout and f"incident close {iid}" in r.stdout
    assert cli("incident", "show", "99").code == 4
    assert cli("incident", "close", str(iid), "--summary", "fine").code == 0
    r = cli("incident", "close", str(iid))
    assert r.code == 0 and "already closed" in r.stdout
    assert cli("incident", "list", "--open").stdout.strip() == "no incidents"
    assert cli("incident", "report", str(iid), "--format", "pdf").code == 2


# -- the postmortem draft -----------------------------------------------------------------------------

@pytest.fixture
def released(make_ctx, tmp_path):
    """v1 stable (first launch), v2 trained on batch 2, validated, pushed and in canary."""
    ctx = make_ctx(overrides={"training.epochs": "1"})
    for n in (1, 2):
        p = tmp_path / f"b{n}.csv"
        pcsv.write_csv(batch_table(n * 1000, 600, day=n, seed=n), p)
        ingest(ctx, path=str(p))
        train(ctx)
        assert validate(ctx, version=n).verdict == "passed"
        push(ctx, version=n)
        canary.start(ctx, version=n)
    dep = canary.status(ctx)
    assert (dep.stable, dep.version) == (1, 2)
    return ctx


class Clock:
    def __init__(self, start):
        self.t = start

    def __call__(self):
        return self.t


def _predictions(ctx, start, seconds: int) -> int:
    """One request every second from ``start``: stable v1 / canary v2 (some failing) at first, the
    fallback from 30 s to 120 s, then v1 again."""
    n = 0
    with ctx.store.tx() as t:
        for i in range(seconds):
            at = start + timedelta(seconds=i)
            if 30 <= i - 60 < 120:
                version, variant, ok = 1, "fallback", True
            else:
                canary_ = i % 5 == 0 and i - 60 < 90
                version, variant, ok = (2, "canary", i % 10 != 0) if canary_ else (1, "stable", True)
            t.insert("predictions", {"model": ctx.model, "ts": at, "request_id": uuid.uuid4().hex, "replica": "test", "version": version,
                                     "variant": variant, "n_rows": 1, "keys": None, "output": {"p": [0.5]},
                                     "latency_ms": 3.0, "ok": ok, "error": None if ok else "boom"})
            n += 1
    return n


def _golden(ctx, version: int) -> float:
    with ctx.store.tx(write=False) as t:
        gates = versions.latest_validation(t, ctx.model, version)["gates"]
    return next(g["figure"] for g in gates if g["name"] == "golden accuracy")


def test_report_md_and_html_with_key_times_and_valid_pngs(released, make_ctx, tmp_path, workspace, cli_env):
    import matplotlib.image as mpimg

    with released.store.tx(write=False) as t:
        batch2_at = batches.get(t, released.model, 2)["created_at"]
    clock = Clock(released.now() + timedelta(minutes=2))
    ctx = make_ctx(clock=clock)
    opened = clock.t
    iid = inc.open_incident(ctx, title="canary v2 misbehaves", severity="sev2").incident["id"]
    _predictions(ctx, opened - timedelta(seconds=60), 240)
    clock.t = opened + timedelta(seconds=30)
    fallback(ctx, on=True, reason="stop the bleeding")
    clock.t = opened + timedelta(seconds=60)
    canary.abort(ctx, reason="v2 errors")
    clock.t = opened + timedelta(seconds=90)
    purge_data(ctx, batch=2, reason="batch 2 was bad")
    inc.note(ctx, incident_id=iid, text="batch 2 purged; v1 is clean")
    clock.t = opened + timedelta(seconds=120)
    fallback(ctx, on=False, reason="v1 serves again")
    clock.t = opened + timedelta(seconds=150)
    inc.close(ctx, incident_id=iid, summary="Batch 2 was bad; v2 trained on it was aborted in canary.")

    out = tmp_path / "reports"
    md = inc.report(ctx, incident_id=iid, fmt="md", out_dir=str(out))
    # impact starts when the purged batch arrived; detection is the opening; then the first
    # mitigation (fallback on) and the recovery (fallback off)
    assert md.times["impact_start"] == jsonable(batch2_at)
    assert md.durations["time_to_detect_s"] == round((opened - batch2_at).total_seconds(), 1)
    assert md.durations["time_to_mitigate_s"] == 30.0 and md.durations["time_to_recover_s"] == 120.0
    assert md.golden["before"] == {"version": 1, "metric": _golden(ctx, 1)}
    assert md.golden["after"] == {"version": 1, "metric": _golden(ctx, 1)}
    worst = min((1, 2), key=lambda v: _golden(ctx, v))
    assert md.golden["worst_served"] == {"version": worst, "metric": _golden(ctx, worst)}

    text = Path(md.path).read_text()
    assert Path(md.path) == out / f"incident-{iid}.md"
    assert text.startswith(f"# Incident {iid}: canary v2 misbehaves — postmortem draft")
    positions = [text.index(f"\n## {h}\n") for h in HEADINGS]
    assert positions == sorted(positions)
    assert "Batch 2 was bad; v2 trained on it was aborted in canary." in text
    assert "time to mitigate 30 s" in text and "time to recover 2.0 min" in text
    purge_row = next(ln for ln in text.splitlines() if ln.startswith("| 1 | {'batch': 2}"))
    assert "| v2 |" in purge_row and "| v1 |" in purge_row and purge_row.endswith("| active |")
    for what in ("incident open", "fallback", "canary abort", "purge-data", "note", "incident close"):
        assert f"| {what} |" in text, what
    assert f"![traffic split](incident-{iid}-traffic.png)" in text
    assert f"![golden metric of stable](incident-{iid}-golden.png)" in text

    assert sorted(Path(p).name for p in md.plots) == [f"incident-{iid}-golden.png", f"incident-{iid}-traffic.png"]
    for p in md.plots:
        data = Path(p).read_bytes()
        assert data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR"
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300

    html = inc.report(ctx, incident_id=iid, fmt="html", out_dir=str(out))
    doc = Path(html.path).read_text()
    assert html.path.endswith(f"incident-{iid}.html") and doc.startswith("<!doctype html>")
    positions = [doc.index(f"<h2>{h}</h2>") for h in HEADINGS]
    assert positions == sorted(positions)
    assert f"<img src='incident-{iid}-traffic.png'" in doc and f"<img src='incident-{iid}-golden.png'" in doc
    assert "<script" not in doc

    # the CLI writes it too (default directory .llctl/reports)
    r = run_cli(["incident", "report", str(iid), "--format", "html"], cwd=workspace, env=cli_env)
    assert r.code == 0, r.stderr
    assert (workspace / ".llctl" / "reports" / f"incident-{iid}.html").is_file()
    assert "time to detect" in r.stdout and "to mitigate 30 s, to recover 120 s" in r.stdout


def test_report_without_traffic_has_no_traffic_plot(ctx, tmp_path):
    iid = inc.open_incident(ctx, title="quiet").incident["id"]
    inc.note(ctx, incident_id=iid, text="nothing served yet")
    rep = inc.report(ctx, incident_id=iid, out_dir=str(tmp_path))
    assert rep.plots == [] and not list(tmp_path.glob("*.png"))
    text = Path(rep.path).read_text()
    for h in HEADINGS:
        assert f"\n## {h}\n" in text
    assert "No data was purged." in text and "still open" in text
    assert rep.durations["time_to_mitigate_s"] is None


# -- one store, many models ---------------------------------------------------------------------------

@pytest.fixture
def other(ctx, make_ctx):
    """A second model, ``other``, in the same store."""
    from lifelong_cli.store import models

    with ctx.store.tx() as t:
        models.add(t, name="other", actor="tester", now=ctx.now(), data_prefix="other")
    return make_ctx(overrides={"model.name": "other"})


def test_a_models_incident_is_not_seen_by_another_model(ctx, other):
    opened = inc.open_incident(ctx, title="demo's labels flipped")
    iid = opened.incident["id"]
    assert opened.model == "demo" and opened.incident["model"] == "demo" and "model 'demo'" in opened.message
    assert inc.list_incidents(other).incidents == []
    for call in (lambda: inc.show(other, incident_id=iid), lambda: inc.note(other, incident_id=iid, text="x"),
                 lambda: inc.close(other, incident_id=iid), lambda: inc.report(other, incident_id=iid)):
        with pytest.raises(NotFoundError, match=f"model 'other' has no incident {iid}"):
            call()
    # other's actions are not linked to demo's incident; a join opens other's own
    stop_training(other, reason="other's own trouble")
    joined = inc.open_incident(other, title="other's", join=True)
    assert joined.changed and joined.incident["id"] != iid and joined.incident["model"] == "other"
    assert [e["verb"] for e in _entries(ctx, iid)] == ["incident open"]
    assert [i["id"] for i in inc.list_incidents(ctx).incidents] == [iid]
    assert inc.show(ctx, incident_id=iid).incident["status"] == "open"


def test_a_store_wide_incident_is_seen_and_linked_by_every_model(ctx, other, workspace, cli_env):
    r = run_cli(["incident", "open", "shared upstream broke", "--all-models", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 0, r.stderr
    doc = r.json()
    iid = doc["incident"]["id"]
    assert doc["model"] == "demo" and doc["incident"]["model"] is None and "all models" in doc["message"]
    stop_training(ctx, reason="demo stops")
    stop_training(other, reason="other stops")
    mine = inc.open_incident(other, title="other's own")  # a model's own incident wins over the store-wide one
    resume(other, reason="other resumes")
    assert [i["id"] for i in inc.list_incidents(ctx).incidents] == [iid]
    assert [i["id"] for i in inc.list_incidents(other).incidents] == [iid, mine.incident["id"]]
    shown = inc.show(other, incident_id=iid)
    assert [(e["what"], e["model"]) for e in shown.timeline] == [
        ("incident open", None), ("stop-training", "demo"), ("stop-training", "other")]
    assert [e["verb"] for e in _entries(other, mine.incident["id"])] == ["incident open", "resume"]
    listed = run_cli(["incident", "list"], cwd=workspace, env=cli_env).stdout
    assert "shared upstream broke  [all models]" in listed
    # closed from either model; the closing names no model
    closed = inc.close(other, incident_id=iid, summary="upstream fixed")
    assert closed.changed and "all models" in closed.message
    (entry,) = [e for e in _entries(ctx, iid) if e["verb"] == "incident close"]
    assert entry["model"] is None
