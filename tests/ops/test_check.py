"""llctl check: each SLO policy violated → exit 3 naming it; --act runs the agreed action and audits
it; --relax reports a violation without counting it until the window ends.

The time-based policies are pushed over their thresholds with tiny limits (`--set slo.X=1e-7`):
the real clock then has passed them a moment after the state changed."""

from __future__ import annotations

from datetime import timedelta

import pyarrow.csv as pcsv
import pytest

from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.ops import canary
from lifelong_cli.ops.check import check as check_op
from lifelong_cli.ops.check import relax
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.push import push
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate
from tests.helpers import run_cli

TINY = "0.0000001"


def _release(ctx, tmp_path, n: int) -> None:
    p = tmp_path / f"b{n}.csv"
    pcsv.write_csv(batch_table(n * 1000, 600, day=n, seed=n), p)
    ingest(ctx, path=str(p))
    train(ctx)
    assert validate(ctx, version=n).verdict == "passed"
    push(ctx, version=n)


@pytest.fixture
def ws(make_ctx, tmp_path, workspace):
    """v1 stable (first launch)."""
    ctx = make_ctx(overrides={"training.epochs": "1"})
    _release(ctx, tmp_path, 1)
    canary.start(ctx, version=1)
    return workspace


@pytest.fixture
def v2(ws, make_ctx, tmp_path):
    """And v2, trained on batch 2, validated and pushed (not launched)."""
    _release(make_ctx(overrides={"training.epochs": "1"}), tmp_path, 2)
    return 2


@pytest.fixture
def cli(ws, cli_env):
    def call(*args: str, expect: int | None = None):
        r = run_cli(list(args), cwd=ws, env=cli_env)
        if expect is not None:
            assert r.code == expect, f"llctl {' '.join(args)} exited {r.code}: {r.stdout}{r.stderr}"
        return r

    return call


def _violated_line(out: str, policy: str) -> str:
    return next(ln for ln in out.splitlines() if ln.strip().startswith(policy + " "))


def _audit(cli, verb: str) -> list[dict]:
    return cli("audit", "--verb", verb, "--json", expect=0).json()["entries"]


def test_all_policies_hold_on_a_healthy_workspace(cli):
    r = cli("check", expect=0)
    assert "all SLO policies hold" in r.stdout
    doc = cli("check", "--json", expect=0).json()
    assert doc["ok"] is True and doc["violated"] == []
    assert [p["policy"] for p in doc["policies"]] == ["staleness", "fallback", "golden", "drift", "canary_hold", "stopped",
                                                  "holds"]
    assert _audit(cli, "check") == []  # a clean check is not an event


def _break(cli, tmp_path, policy: str, request) -> list[str]:
    """Put the workspace in violation of ``policy``; the --set flags that make it count."""
    if policy == "staleness":
        return ["--set", f"slo.max_staleness_hours={TINY}"]
    if policy == "fallback":
        cli("fallback", "on", "--reason", "test", expect=0)
        return ["--set", f"slo.max_fallback_minutes={TINY}"]
    if policy == "golden":
        return ["--set", "slo.golden_floor.accuracy=0.999"]
    if policy == "drift":
        p = tmp_path / "broken.csv"  # x1 arrives x100: every recent batch drifted
        pcsv.write_csv(batch_table(9000, 600, day=3, seed=3, broken=True), p)
        r = cli("ingest", str(p), "--json")
        assert r.json()["drift"]["drifted"] is True, r.stdout
        return ["--set", "slo.max_drifted_batches=1"]
    if policy == "canary_hold":
        cli("canary", "start", str(request.getfixturevalue("v2")), expect=0)
        return ["--set", f"slo.max_canary_hold_minutes={TINY}"]
    if policy == "stopped":
        cli("stop-training", "--reason", "test", expect=0)
        return ["--set", f"slo.max_stopped_hours={TINY}"]
    raise AssertionError(policy)


POLICIES = ["staleness", "fallback", "golden", "drift", "canary_hold", "stopped"]


@pytest.mark.parametrize("policy", POLICIES)
def test_each_violated_policy_exits_3_and_is_named(cli, tmp_path, policy, request):
    flags = _break(cli, tmp_path, policy, request)
    if policy in ("staleness", "golden", "drift"):  # only counted with the tighter limit
        assert cli("check", expect=0)
    r = cli(*flags, "check", expect=3)
    assert f"SLO violated: {policy}" in r.stdout
    assert "VIOLATED" in _violated_line(r.stdout, policy)
    doc = cli(*flags, "check", "--json", expect=3).json()
    assert doc["ok"] is False and doc["violated"] == [policy]
    (p,) = [p for p in doc["policies"] if p["policy"] == policy]
    assert p["ok"] is False and p["violated"] is True and p["relaxed_until"] is None
    entries = _audit(cli, "check")
    assert len(entries) == 2 and entries[-1]["outcome"] == "violated"
    assert [v["policy"] for v in entries[-1]["detail"]["violated"]] == [policy]
    assert doc["actions"] == []  # without --act nothing is done


def test_a_purged_drifted_batch_no_longer_counts(cli, tmp_path, request):
    flags = _break(cli, tmp_path, "drift", request)
    cli(*flags, "check", expect=3)
    drifted = cli("status", "--json", expect=0).json()["drift"]
    assert drifted["drifted"] is True
    cli("purge-data", "--batch", str(drifted["batch"]), "--reason", "broken upstream", "--yes", expect=0)
    cli(*flags, "check", expect=0)


def test_act_aborts_a_held_canary_and_audits_it(cli, tmp_path, request):
    flags = _break(cli, tmp_path, "canary_hold", request)
    r = cli(*flags, "check", "--act", expect=3)
    acted = next(ln for ln in r.stdout.splitlines() if "acted on canary_hold: canary-abort: " in ln)
    assert "canary v2 aborted" in acted and "model 'demo'" in acted
    st = cli("status", "--json", expect=0).json()["serving"]
    assert st["canary_version"] is None and st["stable_version"] == 1
    (abort,) = _audit(cli, "canary abort")
    assert abort["outcome"] == "ok" and abort["reason"].startswith("SLO canary_hold violated: canary v2 at 5%")
    cli(*flags, "check", expect=0)  # nothing held any more


def test_act_turns_the_fallback_on_when_so_configured(cli, tmp_path, request):
    flags = [*_break(cli, tmp_path, "staleness", request), "--set", "slo.actions.staleness=fallback-on"]
    doc = cli(*flags, "check", "--act", "--json", expect=3).json()
    assert doc["actions"] == [{"policy": "staleness", "action": "fallback-on", "ok": True,
                               "message": doc["actions"][0]["message"]}]
    assert cli("status", "--json", expect=0).json()["serving"]["fallback"] is True
    (fb,) = _audit(cli, "fallback")
    assert fb["detail"]["on"] is True and fb["reason"].startswith("SLO staleness violated: stable v1 is")


def test_act_opens_an_incident_that_links_the_rest(cli, tmp_path, request):
    flags = _break(cli, tmp_path, "stopped", request)
    doc = cli(*flags, "check", "--act", "--json", expect=3).json()
    assert [(a["policy"], a["action"], a["ok"]) for a in doc["actions"]] == [("stopped", "open-incident", True)]
    (i,) = cli("incident", "list", "--json", expect=0).json()["incidents"]
    assert i["status"] == "open" and i["title"].startswith("SLO violated: stopped — training stopped for")
    # acting again joins it instead of opening another
    cli(*flags, "check", "--act", expect=3)
    assert len(cli("incident", "list", "--json", expect=0).json()["incidents"]) == 1
    timeline = cli("incident", "show", str(i["id"]), "--json", expect=0).json()["timeline"]
    assert [e["what"] for e in timeline] == ["incident open", "check"]


def test_act_with_the_rollback_action_rolls_serving_back(cli, v2):
    cli("canary", "start", "2", expect=0)
    cli("canary", "promote", "--json", expect=0)  # v2 stable, v1 the last good before it
    flags = ["--set", "slo.golden_floor.accuracy=0.999"]
    doc = cli(*flags, "check", "--act", "--json", expect=3).json()
    assert [(a["policy"], a["action"], a["ok"]) for a in doc["actions"]] == [("golden", "rollback-last-good", True)]
    assert cli("status", "--json", expect=0).json()["serving"]["stable_version"] == 1
    (rb,) = _audit(cli, "rollback")
    assert rb["reason"].startswith("SLO golden violated") and rb["detail"]["previous_stable"] == 2


def test_relax_reports_a_violation_without_counting_it(cli, tmp_path, request):
    flags = _break(cli, tmp_path, "stopped", request)
    cli(*flags, "check", expect=3)
    r = cli("check", "--relax", "stopped", "--hours", "2", "--reason", "planned maintenance", expect=0)
    assert "SLO policy stopped relaxed until" in r.stdout
    r = cli(*flags, "check", "--act", expect=0)
    assert "relaxed" in _violated_line(r.stdout, "stopped") and "all SLO policies hold" in r.stdout
    doc = cli(*flags, "check", "--json", expect=0).json()
    (p,) = [p for p in doc["policies"] if p["policy"] == "stopped"]
    assert p["ok"] is False and p["violated"] is False and p["relaxed_until"]
    assert doc["actions"] == [] and cli("incident", "list", "--json").json()["incidents"] == []
    (entry,) = _audit(cli, "slo relax")
    assert entry["reason"] == "planned maintenance" and entry["args"] == {"policy": "stopped", "hours": 2.0}
    # relaxing one policy does not relax another
    cli(*flags, "--set", f"slo.max_staleness_hours={TINY}", "check", expect=3)


@pytest.mark.parametrize("args", [
    ["--relax", "latency", "--hours", "2", "--reason", "x"],
    ["--relax", "drift", "--hours", "2"],
    ["--relax", "drift", "--hours", "0", "--reason", "x"],
    ["--relax", "drift", "--hours", "400", "--reason", "x"],
])
def test_bad_relax_is_a_usage_error(workspace, cli_env, args):
    r = run_cli(["check", *args], cwd=workspace, env=cli_env)
    assert r.code == 2, r.stdout + r.stderr
    entries = run_cli(["audit", "--json"], cwd=workspace, env=cli_env).json()["entries"]
    assert [e["verb"] for e in entries] == ["init"]


def test_a_relaxation_ends_when_its_window_does(make_ctx, ws):
    from lifelong_cli.context import utcnow
    from lifelong_cli.ops.stop_training import stop_training

    limits = {"slo.max_stopped_hours": "1"}
    ctx = make_ctx(overrides=limits)
    stop_training(ctx, reason="test")
    relax(ctx, policy="stopped", hours=2, reason="maintenance")
    for hours, violated in ((1.5, []), (1.99, []), (2.01, ["stopped"])):
        later = make_ctx(overrides=limits, clock=lambda h=hours: utcnow() + timedelta(hours=h))
        assert check_op(later).violated == violated, hours


def test_policies_and_relaxations_are_per_model(make_ctx, workspace):
    from lifelong_cli.ops.stop_training import stop_training
    from lifelong_cli.store import models

    limits = {"slo.max_stopped_hours": TINY}
    demo = make_ctx(overrides=limits)
    with demo.store.tx() as t:
        models.add(t, name="other", actor="tester", now=demo.now(), data_prefix="other")
    other = make_ctx(overrides={**limits, "model.name": "other"})
    stop_training(demo, reason="demo only")
    r = check_op(demo)
    assert (r.model, r.violated) == ("demo", ["stopped"]) and r.message == "model 'demo': SLO violated: stopped"
    assert check_op(other).violated == [] and check_op(other).message == "model 'other': all SLO policies hold"
    stop_training(other, reason="other too")
    relaxed = relax(other, policy="stopped", hours=1, reason="other's maintenance")
    assert relaxed.model == "other" and relaxed.message.startswith("model 'other': SLO policy stopped relaxed")
    assert check_op(other).violated == [] and check_op(demo).violated == ["stopped"]  # demo's is not relaxed
