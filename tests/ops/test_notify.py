"""Notifications: the emergency verbs and incidents reach a real local receiver as generic webhook,
Slack and PagerDuty Events v2 payloads; a failing, hanging or absent receiver never slows down or
fails the verb, its failure is recorded, and the secret URL is never shown."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lifelong_cli.context import AppContext
from lifelong_cli.notify import events_for
from lifelong_cli.ops import fallback as fallback_op
from lifelong_cli.ops import incident as incident_op
from lifelong_cli.ops.resume import resume
from lifelong_cli.ops.stop_training import stop_training
from tests.helpers import free_port, run_bin, run_cli
from tests.notify_receiver import Receiver

SECRET = "s3cr3t-token-in-the-url"
PD_KEY = "R0UT1NGKEY0123456789"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def configure(workspace: Path, targets: list[dict]) -> None:
    path = workspace / "llctl.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["notify"] = {"targets": targets}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def wait_audit(ctx_env: dict, workspace: Path, n: int, timeout: float = 20.0) -> list[dict]:
    """The first ``n`` audit entries of verb `notify` (written by the detached sender)."""
    end = time.monotonic() + timeout
    while True:
        r = run_cli(["audit", "--verb", "notify", "--json"], cwd=workspace, env=ctx_env)
        entries = r.json()["entries"]
        if len(entries) >= n or time.monotonic() > end:
            assert len(entries) >= n, f"{len(entries)} notify entries after {timeout} s: {entries}"
            return entries
        time.sleep(0.1)


@pytest.fixture
def three_targets(workspace, cli_env, receiver):
    """A generic webhook (every event), Slack (incidents and rollbacks) and PagerDuty (incidents,
    fallback) at the local receiver; the URLs and key in the environment only."""
    configure(workspace, [
        {"name": "hook", "kind": "webhook", "url_env": "T_HOOK_URL", "retries": 0},
        {"name": "slack", "kind": "slack", "url_env": "T_SLACK_URL", "events": ["incident.opened", "incident.closed", "rollback"]},
        {"name": "pd", "kind": "pagerduty", "url_env": "T_PD_URL", "routing_key_env": "T_PD_KEY",
         "events": ["incident.opened", "incident.closed", "fallback.on", "fallback.off"]},
    ])
    env = {**cli_env, "T_HOOK_URL": receiver.url(f"/ok/hook?token={SECRET}"), "T_SLACK_URL": receiver.url("/ok/slack"),
           "T_PD_URL": receiver.url("/ok/pd"), "T_PD_KEY": PD_KEY}
    return env


@pytest.fixture
def trained(make_ctx, tmp_path):
    """v1 trained (a fallback to serve from)."""
    import pyarrow.csv as pcsv

    from lifelong_cli.data.synthetic import batch_table
    from lifelong_cli.ops.ingest import ingest
    from lifelong_cli.ops.train import train

    ctx = make_ctx(overrides={"training.epochs": "1"})
    pcsv.write_csv(batch_table(1000, 600, day=1, seed=1), tmp_path / "b1.csv")
    ingest(ctx, path=str(tmp_path / "b1.csv"))
    return train(ctx).version


def _ctx(workspace, env) -> AppContext:
    return AppContext(cwd=workspace, env=env, actor="tester")


@pytest.mark.slow
def test_emergency_verbs_and_incidents_reach_each_target_in_its_shape(workspace, trained, three_targets, receiver):
    ctx = _ctx(workspace, three_targets)
    try:
        stop_training(ctx, reason="labels look flipped")
        opened = incident_op.open_incident(ctx, title="labels flipped upstream", severity="sev1")
        fallback_op.fallback(ctx, on=True, strategy="majority", reason="bad model")
        fallback_op.fallback(ctx, on=False, reason="fixed")
        incident_op.close(ctx, incident_id=opened.incident["id"], summary="upstream fixed")
        resume(ctx, reason="fixed")
    finally:
        ctx.close()
    iid = opened.incident["id"]
    hook = receiver.wait_for(f"/ok/hook?token={SECRET}", 6)
    assert [b["event"] for b in hook] == ["training.stopped", "incident.opened", "fallback.on", "fallback.off",
                                          "incident.closed", "training.resumed"]  # in the order they happened
    for b in hook:
        assert {"event", "model", "summary", "detail", "at", "actor", "links"} <= set(b)
        assert b["model"] == "demo" and b["actor"] == "tester"
    assert hook[0]["summary"] == "model 'demo': training stopped by tester: labels look flipped"
    assert hook[1]["detail"]["incident"] == iid and hook[1]["severity"] == "critical"
    assert hook[1]["links"]["incident"] == f"llctl --model demo incident show {iid}"

    slack = receiver.wait_for("/ok/slack", 2)
    assert [s["text"] for s in slack] == [f"[llctl] model 'demo': incident {iid} opened (sev1): labels flipped upstream",
                                          f"[llctl] model 'demo': incident {iid} closed: upstream fixed"]
    assert all(s["blocks"][0]["type"] == "section" and s["blocks"][0]["text"]["type"] == "mrkdwn" for s in slack)

    pd = receiver.wait_for("/ok/pd", 4)
    assert [(p["event_action"], p["dedup_key"]) for p in pd] == [
        ("trigger", f"llctl/demo/incident/{iid}"), ("trigger", "llctl/demo/fallback"),
        ("resolve", "llctl/demo/fallback"), ("resolve", f"llctl/demo/incident/{iid}")]
    assert all(p["routing_key"] == PD_KEY for p in pd)
    trigger = pd[0]["payload"]
    assert trigger["severity"] == "critical" and trigger["summary"].endswith("labels flipped upstream")
    assert {"summary", "source", "severity", "custom_details"} <= set(trigger)
    assert "payload" not in pd[3]  # a resolve names only its dedup_key

    entries = wait_audit(three_targets, workspace, 6 + 2 + 4)
    assert {e["outcome"] for e in entries} == {"ok"}
    assert all(SECRET not in json.dumps(e) and PD_KEY not in json.dumps(e) for e in entries)
    assert not list((workspace / ".llctl" / "notify" / "outbox").glob("*.json"))  # all sent


def test_no_targets_no_events_and_noops_send_nothing(workspace, three_targets, receiver):
    ctx = _ctx(workspace, three_targets)
    try:
        fallback_op.fallback(ctx, on=False, reason="already off")  # a no-op: no event
        incident_op.open_incident(ctx, title="x")
    finally:
        ctx.close()
    assert [b["event"] for b in receiver.wait_for(f"/ok/hook?token={SECRET}", 1)] == ["incident.opened"]
    time.sleep(0.5)
    assert len(receiver.bodies(f"/ok/hook?token={SECRET}")) == 1


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/fail", "/hang", None])
def test_a_failing_receiver_neither_slows_nor_fails_the_verb_and_is_recorded(workspace, cli_env, receiver, path):
    url = receiver.url(f"{path}?token={SECRET}") if path else f"http://127.0.0.1:{free_port()}/refused?token={SECRET}"
    baseline = []
    for _ in range(2):  # the same verb without notifications (the machine may be busy: the better of two)
        t0 = time.monotonic()
        assert run_bin(["stop-training", "--reason", "baseline"], cwd=workspace, env=cli_env).code == 0
        baseline.append(time.monotonic() - t0)
        run_bin(["resume", "--reason", "baseline"], cwd=workspace, env=cli_env)

    configure(workspace, [{"name": "flaky", "kind": "webhook", "url_env": "T_URL", "timeout": "1s", "retries": 1}])
    env = {**cli_env, "T_URL": url}
    t0 = time.monotonic()
    r = run_bin(["stop-training", "--reason", "receiver down"], cwd=workspace, env=env)
    took = time.monotonic() - t0
    assert r.code == 0, r.stderr
    # the margin covers a busy machine (the sender starting up beside the verb), not the delivery itself
    assert took < max(baseline) + 1.0, f"stop-training took {took:.2f} s with a broken receiver (baseline {baseline})"
    (e,) = wait_audit(env, workspace, 1, timeout=30)
    assert e["outcome"] == "failed" and e["detail"]["target"] == "flaky" and e["detail"]["event"] == "training.stopped"
    assert e["detail"]["attempts"] == 2
    expected = {"/fail": "HTTP 500", "/hang": "timed out", None: "ConnectionRefusedError"}[path]
    assert expected in e["detail"]["error"]
    if path == "/hang":  # two attempts of 1 s each, after the verb had long returned
        assert e["detail"]["ms"] >= 2000 and took < 2.0 + max(baseline)
    status = run_bin(["notify", "status"], cwd=workspace, env=env)
    doctor = run_bin(["doctor"], cwd=workspace, env=env)
    assert doctor.code == 3 and "notifications: last delivery to flaky failed" in doctor.stdout
    assert "failed training.stopped -> flaky" in status.stdout
    for out in (r, status, doctor, run_bin(["audit", "--json"], cwd=workspace, env=env),
                run_bin(["config", "show"], cwd=workspace, env=env)):
        assert SECRET not in out.stdout + out.stderr


def test_handing_an_event_over_takes_milliseconds_even_when_the_receiver_hangs(workspace, cli_env, receiver):
    """What a verb pays after its commit: an outbox file and a detached sender, not the network."""
    from lifelong_cli.ops._base import notify_after_commit

    configure(workspace, [{"name": "hang", "kind": "webhook", "url_env": "T_URL", "timeout": "5s", "retries": 0}])
    ctx = _ctx(workspace, {**cli_env, "T_URL": receiver.url("/hang")})
    try:
        ctx.config.settings  # noqa: B018 (loaded by the verb before it commits)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            notify_after_commit(ctx, "rollback", model="demo", args={}, reason="x", outcome="ok",
                                detail={"target": 1, "previous_stable": 2})
            times.append(time.perf_counter() - t0)
    finally:
        ctx.close()
    assert sorted(times)[2] < 0.1, times  # the median: a busy CI machine may stall any one call
    assert len(receiver.wait_for("/hang", 1)) == 1  # and the sender did try


def test_an_unset_variable_is_a_recorded_failure_naming_it(workspace, cli_env):
    configure(workspace, [{"name": "hook", "kind": "webhook", "url_env": "T_NOT_SET"}])
    r = run_cli(["stop-training", "--reason", "x"], cwd=workspace, env=cli_env)
    assert r.code == 0
    (e,) = wait_audit(cli_env, workspace, 1)
    assert e["outcome"] == "failed" and e["detail"]["error"] == "environment variable T_NOT_SET is not set"
    d = run_cli(["doctor", "--json"], cwd=workspace, env=cli_env).json()
    (c,) = [c for c in d["checks"] if c["name"] == "notifications"]
    assert not c["ok"] and "T_NOT_SET not set here" in c["detail"]


def test_notify_test_reports_each_target_and_exits_7_when_one_fails(workspace, cli_env, receiver):
    configure(workspace, [{"name": "good", "kind": "slack", "url_env": "T_GOOD"},
                          {"name": "bad", "kind": "webhook", "url_env": "T_BAD", "retries": 0},
                          {"name": "pd", "kind": "pagerduty", "url_env": "T_PD", "routing_key_env": "T_KEY"}])
    env = {**cli_env, "T_GOOD": receiver.url(f"/ok?token={SECRET}"), "T_BAD": receiver.url(f"/fail?token={SECRET}"),
           "T_PD": receiver.url("/ok/pd"), "T_KEY": PD_KEY}
    r = run_cli(["notify", "test", "--json"], cwd=workspace, env=env)
    assert r.code == 7
    doc = r.json()
    assert [(d["target"], d["ok"], d["status"]) for d in doc["deliveries"]] == [
        ("good", True, 200), ("bad", False, 500), ("pd", True, 200)]
    # the test alert is resolved at once: nobody stays paged
    assert [(p["event_action"], p["dedup_key"]) for p in receiver.bodies("/ok/pd")] == [
        ("trigger", doc["deliveries"][2]["dedup_key"]), ("resolve", doc["deliveries"][2]["dedup_key"])]
    assert SECRET not in r.stdout + r.stderr
    (slack,) = receiver.bodies(f"/ok?token={SECRET}")
    assert slack["text"].startswith("[llctl] model 'demo': test notification from llctl")
    one = run_cli(["notify", "test", "--target", "good"], cwd=workspace, env=env)
    assert one.code == 0 and "good (slack): ok, HTTP 200" in one.stdout
    missing = run_cli(["notify", "test", "--target", "nope"], cwd=workspace, env=env)
    assert missing.code == 4 and "no notification target 'nope'; targets: good, bad, pd" in missing.stderr


def test_a_url_written_in_the_config_is_refused_without_echoing_it(workspace, cli_env):
    configure(workspace, [{"name": "hook", "kind": "webhook", "url": f"https://hooks.example/{SECRET}"}])
    r = run_cli(["status"], cwd=workspace, env=cli_env)
    assert r.code == 6
    assert "notify.targets.0" in r.stderr and "url_env" in r.stderr and SECRET not in r.stderr + r.stdout


@pytest.mark.parametrize("target, message", [
    ({"name": "pd", "kind": "pagerduty"}, "a pagerduty target needs routing_key_env"),
    ({"name": "h", "kind": "webhook", "url_env": "X", "events": ["incident.open"]}, "unknown event(s) incident.open"),
    ({"name": "h", "kind": "webhook", "url_env": "X", "timeout": "2 weeks"}, "timeout"),
])
def test_bad_targets_are_config_errors(workspace, cli_env, target, message):
    configure(workspace, [target])
    r = run_cli(["notify", "status"], cwd=workspace, env=cli_env)
    assert r.code == 6 and message in r.stderr, r.stderr


def test_stop_training_with_targets_loads_no_heavy_module(workspace, three_targets, receiver):
    probe = ("import sys\nfrom lifelong_cli.cli.app import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
             "    pass\nheavy = ['torch', 'mlflow', 'pandas', 'pyarrow', 'onnxruntime', 'scipy', 'sqlalchemy', 'httpx']\n"
             "print(sorted(m for m in heavy if m in sys.modules), file=sys.__stderr__)")
    for args in (["stop-training", "--reason", "x"], ["incident", "open", "x"]):
        p = subprocess.run([sys.executable, "-c", probe, *args], cwd=workspace, env=three_targets, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and p.stderr.strip().splitlines()[-1] == "[]", p.stderr
    assert [b["event"] for b in receiver.wait_for(f"/ok/hook?token={SECRET}", 2)] == ["training.stopped", "incident.opened"]


def test_check_violation_and_holds_map_to_events():
    assert [e["event"] for e in events_for("check", "violated", {"act": True},
                                           {"violated": [{"policy": "golden"}]})] == ["slo.violated"]
    assert [e["event"] for e in events_for("ingest", "held", {}, {"batch": 4})] == ["batch.held"]
    assert events_for("ingest", "accepted", {}, {"batch": 4}) == []
    assert events_for("rollback", "refused", {}, {}) == []
    assert events_for("stop-training", "noop", {}, {}) == []
    assert events_for("canary abort", "ok", {}, {"version": 3})[0]["event"] == "canary.aborted"


def test_flush_sends_what_a_dead_sender_left_in_the_outbox(workspace, cli_env, receiver):
    from lifelong_cli.notify import make_event, write_outbox

    configure(workspace, [{"name": "hook", "kind": "webhook", "url_env": "T_URL"}])
    env = {**cli_env, "T_URL": receiver.url("/ok/left")}
    ctx = _ctx(workspace, env)
    try:  # queued, but no sender started (as if it had been killed by a reboot)
        targets = [t.model_dump() for t in ctx.config.settings.notify.targets]
        write_outbox(ctx.config.state_dir, make_event(ctx, {"event": "rollback", "key": "rollback/x"}, model="demo",
                                                      args={}, reason="left", detail={"target": 1}, verb="rollback",
                                                      outcome="ok", targets=targets))
    finally:
        ctx.close()
    d = run_cli(["doctor", "--json"], cwd=workspace, env=env).json()
    assert [c["ok"] for c in d["checks"] if c["name"] == "notifications"] == [True]  # not stale yet (5 min)
    r = run_cli(["notify", "flush", "--json"], cwd=workspace, env=env)
    assert r.code == 0 and (r.json()["sent"], r.json()["pending"]) == (1, 0)
    (body,) = receiver.bodies("/ok/left")
    assert body["event"] == "rollback" and body["reason"] == "left"
    assert [e["outcome"] for e in wait_audit(env, workspace, 1)] == ["ok"]
