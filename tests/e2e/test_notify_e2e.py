"""Issue 13's 'done when' for notifications, with the real binary: a local webhook receiver gets the
canary abort, the SLO violation, the rollback `check --act` does about it, and the incident opened
and closed around it — generic JSON, Slack and PagerDuty (trigger, then resolve with the same
dedup_key) — while the secret URL and key appear in no output."""

from __future__ import annotations

import json
import time

import pyarrow.csv as pcsv
import pytest
import yaml

from lifelong_cli.data.synthetic import batch_table
from tests.helpers import run_bin
from tests.notify_receiver import Receiver

SECRET = "hooks-secret-path-0xdeadbeef"
PD_KEY = "PDROUTINGKEY0123456789abcdef"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.mark.slow
def test_release_rollback_and_incident_reach_webhook_slack_and_pagerduty(tmp_path, cli_env, receiver):
    env = {**cli_env, "HOOK_URL": receiver.url(f"/ok/hook/{SECRET}"), "SLACK_URL": receiver.url(f"/ok/slack/{SECRET}"),
           "PD_URL": receiver.url("/ok/pd"), "PD_KEY": PD_KEY}
    outputs = []

    def llctl(*args: str, expect: int = 0) -> dict | None:
        r = run_bin(["--set", "training.epochs=1", *args], cwd=ws, env=env, timeout=300)
        outputs.append(r)
        assert r.code == expect, f"llctl {' '.join(args)} exited {r.code}: {r.stdout}{r.stderr}"
        return json.loads(r.stdout) if "--json" in args else None

    ws = tmp_path / "ws"
    assert run_bin(["init", str(ws)], cwd=tmp_path, env=env).code == 0
    doc = yaml.safe_load((ws / "llctl.yaml").read_text())
    doc["notify"] = {"targets": [
        {"name": "team", "kind": "webhook", "url_env": "HOOK_URL"},
        {"name": "chat", "kind": "slack", "url_env": "SLACK_URL", "events": ["incident.opened", "rollback"]},
        {"name": "pager", "kind": "pagerduty", "url_env": "PD_URL", "routing_key_env": "PD_KEY", "timeout": "2s",
         "events": ["incident.opened", "incident.closed"]},
    ]}
    (ws / "llctl.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for n in (1, 2):
        pcsv.write_csv(batch_table(n * 1000, 600, day=n, seed=n), tmp_path / f"b{n}.csv")

    llctl("ingest", str(tmp_path / "b1.csv"))
    llctl("train")
    llctl("validate", "1")
    llctl("push", "1")
    llctl("canary", "start", "1")  # the first launch: v1 stable
    llctl("ingest", str(tmp_path / "b2.csv"))
    llctl("train")
    llctl("validate", "2")
    llctl("push", "2")
    llctl("canary", "start", "2")
    llctl("canary", "abort", "--reason", "looks off")
    llctl("canary", "start", "2")
    llctl("canary", "promote", "--force", "--reason", "ship it")
    acted = llctl("--set", "slo.golden_floor.accuracy=0.999", "check", "--act", "--json", expect=3)
    assert [(a["action"], a["ok"]) for a in acted["actions"]] == [("rollback-last-good", True)]
    llctl("incident", "open", "v2 shipped below the golden floor", "--severity", "sev2")
    llctl("incident", "close", "1", "--summary", "rolled back to v1")

    hook = receiver.wait_for(f"/ok/hook/{SECRET}", 5, timeout=60)
    assert [b["event"] for b in hook] == ["canary.aborted", "slo.violated", "rollback", "incident.opened",
                                          "incident.closed"]
    aborted, violated, rolled, opened, closed = hook
    assert aborted["summary"] == "model 'demo': canary v2 aborted at 5%: looks off"
    assert violated["detail"]["violated"][0]["policy"] == "golden"
    assert rolled["detail"]["target"] == 1 and rolled["detail"]["previous_stable"] == 2
    assert rolled["summary"].startswith("model 'demo': serving rolled back to v1 (was v2): SLO golden violated")
    assert opened["detail"]["incident"] == closed["detail"]["incident"] == 1
    assert all(b["actor"] == "tester" and b["model"] == "demo" for b in hook)

    slack = receiver.wait_for(f"/ok/slack/{SECRET}", 2, timeout=30)
    assert [s["text"].split(":")[1].strip() for s in slack] == ["serving rolled back to v1 (was v2)",
                                                                 "incident 1 opened (sev2)"]
    pd = receiver.wait_for("/ok/pd", 2, timeout=30)
    assert [(p["event_action"], p["dedup_key"], p["routing_key"]) for p in pd] == [
        ("trigger", "llctl/demo/incident/1", PD_KEY), ("resolve", "llctl/demo/incident/1", PD_KEY)]
    assert pd[0]["payload"]["severity"] == "error" and pd[0]["payload"]["custom_details"]["event"] == "incident.opened"

    # every delivery is on record, linked to the incident when one was open
    end = time.monotonic() + 30
    while True:
        entries = json.loads(run_bin(["audit", "--verb", "notify", "--json"], cwd=ws, env=env).stdout)["entries"]
        if len(entries) >= 9 or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert len(entries) == 9 and {e["outcome"] for e in entries} == {"ok"}
    timeline = llctl("incident", "show", "1", "--json")["timeline"]
    assert ("notify", "incident.opened") in [(e["what"], e["args"].get("event")) for e in timeline]
    status = llctl("notify", "status", "--json")
    assert status["pending"] == 0 and status["failed"] == 0 and len(status["targets"]) == 3
    for r in outputs:
        assert SECRET not in r.stdout + r.stderr and PD_KEY not in r.stdout + r.stderr
