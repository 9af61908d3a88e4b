"""The playbook engine (ops.playbook.run) on playbooks written for the test, against a real store:
templates keep types, checks and their operators, `if:` skips, on_failure continue / recovery,
--from-step, and the incident it records into."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from lifelong_cli.errors import CHECK_FAILED, NOT_FOUND, USAGE, UsageError
from lifelong_cli.ops import incident as inc
from lifelong_cli.ops.playbook import run
from lifelong_cli.ops.status import status
from lifelong_cli.store import audit as audit_store

PLAYBOOKS = {
    "types": """
        name: types
        description: every kind of reference and check
        params:
          reason: {type: str, default: typed}
          hours: {type: float, default: 1.5}
          dry: {type: bool, default: false}
          n: {type: int, default: 0}
        steps:
          - name: stop
            run: stop-training
            with: {reason: "{params.reason}", dry_run: "{params.dry}"}
            check: {status.training.stopped: true}
          - name: relax
            run: slo-relax
            with: {policy: drift, hours: "{params.hours}", reason: "{params.reason} for {params.hours} h"}
            check: {result.policy: drift}
          - name: note
            run: incident-note
            with: {incident_id: "{incident}", text: "changed={steps.stop.result.changed}, until {steps.relax.result.until}"}
          - name: look
            run: status
            check:
              result.training.stopped: {"==": true, "!=": false}
              result.training.versions: {">=": 0, "<": 1, "<=": 0, ">": -1}
              result.model: {in: [demo, other]}
              result.serving.stable_version: {not_in: [1, 2]}
              steps.stop.result.reason: typed
              steps.relax.result.policy: drift
              params.n: 0
    """,
    "strict": """
        name: strict
        description: a check that fails, and one that compares unlike types
        params:
          what: {type: str, default: count}
        steps:
          - name: count
            run: status
            if: {params.what: count}
            check: {result.training.versions: {">": 0}}
          - name: compare
            run: status
            if: {params.what: compare}
            check: {result.model: {">": 3}}
          - name: never
            run: stop-training
            with: {reason: should not run}
    """,
    "branch": """
        name: branch
        description: if on parameters and on live status
        params:
          decision: {type: str, required: true, choices: [stop, relax]}
        steps:
          - name: stop
            run: stop-training
            if: {params.decision: stop}
            with: {reason: branch}
          - name: relax
            run: slo-relax
            if: {params.decision: relax}
            with: {policy: drift, hours: 1, reason: branch}
          - name: after
            run: status
            if: {status.training.stopped: true}
    """,
    "recover": """
        name: recover
        description: a continued failure, then a failure with a recovery step
        steps:
          - name: first
            run: status
            check: {result.training.versions: {">": 0}}
            on_failure: continue
          - name: second
            run: status
            check: {status.training.stopped: true}
            on_failure: stop-it
          - name: third
            run: status
          - name: stop-it
            recovery: true
            run: stop-training
            with: {reason: "recovering in incident {incident}"}
    """,
    "refs": """
        name: refs
        description: a later step uses an earlier step's result
        steps:
          - name: one
            run: status
          - name: two
            run: incident-note
            with: {incident_id: "{incident}", text: "training stopped: {steps.one.result.training.stopped}"}
    """,
    "refused": """
        name: refused
        description: an op that refuses (nothing to fall back to in an empty workspace)
        steps:
          - name: stop
            run: stop-training
            with: {reason: refused test}
          - name: fallback
            run: fallback-on
          - name: resume
            run: resume
    """,
}


@pytest.fixture
def pctx(make_ctx, tmp_path):
    d = tmp_path / "playbooks"
    d.mkdir()
    for name, text in PLAYBOOKS.items():
        (d / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return make_ctx(overrides={"incident.playbooks_dir": str(d)})


def _notes(ctx, iid: int) -> list[str]:
    return [e["reason"] for e in inc.show(ctx, incident_id=iid).timeline if e["what"] == "note"]


def _audit(ctx, iid: int | None = None) -> list[dict]:
    """The model's audit entries (linked to ``iid``), without the workspace's `init`."""
    with ctx.store.tx(write=False) as t:
        return [e for e in audit_store.query(t, model=ctx.model, incident_id=iid) if e["verb"] != "init"]


def test_whole_value_references_keep_their_type_and_checks_pass(pctx):
    r = run(pctx, name="types", params={"dry": "false", "hours": "1.5"}, yes=True)
    assert r.ok and r.exit_code == 0, r.message
    stop, relax, note, look = r.steps
    assert [s["status"] for s in r.steps] == ["ok"] * 4
    assert stop["args"] == {"reason": "typed", "dry_run": False}  # a bool, not the text "False"
    assert relax["args"]["hours"] == 1.5 and isinstance(relax["args"]["hours"], float)
    assert relax["args"]["reason"] == "typed for 1.5 h"  # inside a longer string: text
    assert note["args"]["incident_id"] == r.incident and isinstance(note["args"]["incident_id"], int)
    assert note["args"]["text"] == f"changed=True, until {relax['result']['until']}"
    assert status(pctx).training["stopped"] is True  # dry_run false really stopped training
    with pctx.store.tx(write=False) as t:
        row = t.row("SELECT until, created_at FROM slo_relaxations", types={"until": "ts", "created_at": "ts"})
    assert row["until"] - row["created_at"] == timedelta(hours=1.5)
    # the ops' own audit entries are linked to the playbook's incident
    verbs = [e["verb"] for e in _audit(pctx, r.incident)]
    assert verbs == ["incident open", "stop-training", "slo relax"]
    notes = _notes(pctx, r.incident)
    assert notes[0].startswith("playbook types started")
    for n, (name, verb) in enumerate([("stop", "stop-training"), ("relax", "slo-relax"), ("note", "incident-note"),
                                      ("look", "status")], start=1):
        assert any(x.startswith(f"playbook types step {n} ({name}: {verb})") for x in notes), (n, notes)
    assert note["args"]["text"] in notes  # the note step's own note
    assert notes[-1] == "playbook types finished: 4 step(s) ok"


def test_a_bool_parameter_given_as_true_is_true(pctx):
    r = run(pctx, name="types", params={"dry": "yes"}, yes=True)
    assert r.steps[0]["args"]["dry_run"] is True
    assert not r.ok and r.failed_step == 1 and r.exit_code == CHECK_FAILED  # a dry run does not stop training
    assert "status.training.stopped is False, expected == True" in r.steps[0]["message"]
    assert status(pctx).training["stopped"] is False


def test_a_failed_check_stops_the_run_with_exit_3_and_says_why(pctx):
    r = run(pctx, name="strict", yes=True)
    assert not r.ok and r.exit_code == CHECK_FAILED and r.failed_step == 1 and r.resume_from == 1
    assert r.steps[0]["status"] == "check-failed"
    assert "result.training.versions is 0, expected > 0" in r.steps[0]["message"]
    assert [s["name"] for s in r.steps] == ["count"]  # nothing after it ran
    assert status(pctx).training["stopped"] is False
    assert "--from-step 1" in r.next
    notes = _notes(pctx, r.incident)
    assert any("check failed — result.training.versions is 0, expected > 0" in n for n in notes)
    assert notes[-1].startswith("playbook strict stopped at step 1 (count)")


def test_a_check_comparing_unlike_types_fails_instead_of_crashing(pctx):
    r = run(pctx, name="strict", params={"what": "compare"}, yes=True)
    assert [s["status"] for s in r.steps] == ["skipped", "check-failed"]
    assert r.exit_code == CHECK_FAILED and "result.model is 'demo', expected > 3" in r.steps[1]["message"]


@pytest.mark.parametrize("decision", ["stop", "relax"])
def test_if_skips_a_step_on_parameters_and_on_live_status(pctx, decision):
    r = run(pctx, name="branch", params={"decision": decision}, yes=True)
    assert r.ok, r.message
    got = {s["name"]: s["status"] for s in r.steps}
    if decision == "stop":
        assert got == {"stop": "ok", "relax": "skipped", "after": "ok"}
    else:
        assert got == {"stop": "skipped", "relax": "ok", "after": "skipped"}
        assert "status.training.stopped is False" in r.steps[2]["message"]
    verbs = [e["verb"] for e in _audit(pctx)]
    assert ("stop-training" in verbs) == (decision == "stop") and ("slo relax" in verbs) == (decision == "relax")
    notes = _notes(pctx, r.incident)
    skipped = [n for n in notes if "skipped — condition not met" in n]
    assert len(skipped) == sum(v == "skipped" for v in got.values())


def test_on_failure_continue_and_a_recovery_step_then_from_step_continues(pctx):
    r = run(pctx, name="recover", yes=True)
    assert not r.ok and r.exit_code == CHECK_FAILED
    assert [(s["name"], s["status"]) for s in r.steps] == [("first", "check-failed"), ("second", "check-failed"),
                                                           ("stop-it", "ok")]
    assert r.steps[2].get("recovery") is True and r.steps[2]["args"]["reason"] == f"recovering in incident {r.incident}"
    assert r.failed_step == 2 and r.resume_from == 2 and "--from-step 2" in r.next
    assert status(pctx).training["stopped"] is True  # the recovery step ran
    (stop,) = [e for e in _audit(pctx) if e["verb"] == "stop-training"]
    assert stop["incident_id"] == r.incident
    # the cause of step 2's failure is now gone (training is stopped): continue there
    again = run(pctx, name="recover", yes=True, from_step=2)
    assert again.ok and again.exit_code == 0 and again.incident == r.incident  # joined the open incident
    assert [(s["name"], s["status"]) for s in again.steps] == [("first", "skipped"), ("second", "ok"), ("third", "ok")]
    assert again.steps[0]["message"] == "before --from-step"
    assert len(inc.list_incidents(pctx).incidents) == 1


def test_a_continued_failure_is_not_reported_as_every_step_ok(pctx):
    from lifelong_cli.ops.stop_training import stop_training

    stop_training(pctx, reason="so that step 2 passes")
    r = run(pctx, name="recover", yes=True)
    assert r.ok and r.exit_code == 0
    assert [s["status"] for s in r.steps] == ["check-failed", "ok", "ok"]
    assert "2 step(s) ok, 1 failed and continued past (first)" in r.message
    assert _notes(pctx, r.incident)[-1] == "playbook recover finished: 2 step(s) ok, 1 failed and continued past (first)"


def test_from_step_past_a_step_whose_result_is_referenced_fails_cleanly(pctx):
    r = run(pctx, name="refs", yes=True, from_step=2)
    assert not r.ok and r.exit_code == USAGE and r.failed_step == 2
    assert r.steps[1]["status"] == "failed"
    assert "cannot resolve steps.one.result.training.stopped" in r.steps[1]["message"]
    assert any("cannot resolve steps.one" in n for n in _notes(pctx, r.incident))
    ok = run(pctx, name="refs", yes=True)
    assert ok.ok and "training stopped: False" in _notes(pctx, ok.incident)


def test_a_refused_op_stops_the_run_with_its_exit_code(pctx):
    r = run(pctx, name="refused", yes=True)
    assert not r.ok and r.exit_code == NOT_FOUND and r.failed_step == 2
    assert [(s["name"], s["status"]) for s in r.steps] == [("stop", "ok"), ("fallback", "failed")]
    assert "no version to take a fallback from" in r.steps[1]["message"]
    assert status(pctx).training["stopped"] is True  # step 3 (resume) did not run
    assert any("step 2 (fallback: fallback-on): FAILED" in n for n in _notes(pctx, r.incident))


def test_a_run_joins_the_open_incident_and_links_nothing_after_it_is_closed(pctx):
    opened = inc.open_incident(pctx, title="something is off", severity="sev3")
    iid = opened.incident["id"]
    r = run(pctx, name="branch", params={"decision": "stop"}, yes=True)
    assert r.incident == iid
    assert [e["verb"] for e in _audit(pctx, iid)] == ["incident open", "stop-training"]
    inc.close(pctx, incident_id=iid, summary="done")
    from lifelong_cli.ops.resume import resume

    resume(pctx, reason="after the incident")
    assert [e["verb"] for e in _audit(pctx, iid)] == ["incident open", "stop-training", "incident close"]
    (entry,) = [e for e in _audit(pctx) if e["verb"] == "resume"]
    assert entry["incident_id"] is None
    # the next run opens a new incident, with its own title and severity
    r2 = run(pctx, name="branch", params={"decision": "relax"}, yes=True, title="drift again", severity="sev4")
    assert r2.incident != iid
    shown = inc.show(pctx, incident_id=r2.incident).incident
    assert (shown["title"], shown["severity"], shown["status"]) == ("drift again", "sev4", "open")


def test_run_refuses_bad_from_step_and_parameters_before_opening_an_incident(pctx):
    with pytest.raises(UsageError, match="--from-step 4"):
        run(pctx, name="recover", from_step=4)  # the recovery step is not a main step
    with pytest.raises(UsageError, match="--from-step 0"):
        run(pctx, name="recover", from_step=0)
    with pytest.raises(UsageError, match="needs --param decision"):
        run(pctx, name="branch")
    with pytest.raises(UsageError, match="choose one of"):
        run(pctx, name="branch", params={"decision": "maybe"})
    assert inc.list_incidents(pctx).incidents == [] and _audit(pctx) == []


def test_a_step_that_needs_confirmation_is_declined_without_a_terminal(pctx, tmp_path, monkeypatch):
    import io

    from lifelong_cli.errors import DeclinedError

    d = Path(pctx.config.settings.incident.playbooks_dir)
    (d / "careful.yaml").write_text(textwrap.dedent("""\
        name: careful
        steps:
          - name: stop
            run: stop-training
            with: {reason: careful}
            confirm: true
        """), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    with pytest.raises(DeclinedError, match=r"step 1 \(stop\) needs confirmation: run step 1 \(stop\)\?"):
        run(pctx, name="careful")
    assert status(pctx).training["stopped"] is False
    assert run(pctx, name="careful", yes=True).ok
    assert status(pctx).training["stopped"] is True


def test_a_run_acts_on_its_model_and_records_into_that_models_incident(pctx, make_ctx):
    from lifelong_cli.store import models

    with pctx.store.tx() as t:
        models.add(t, name="other", actor="tester", now=pctx.now(), data_prefix="other")
    other = make_ctx(overrides={"incident.playbooks_dir": pctx.config.settings.incident.playbooks_dir,
                                "model.name": "other"})
    demo_incident = inc.open_incident(pctx, title="demo's").incident["id"]
    r = run(other, name="branch", params={"decision": "stop"}, yes=True)
    assert r.ok and r.model == "other" and r.message.startswith("model 'other': playbook branch finished")
    assert r.incident != demo_incident and inc.show(other, incident_id=r.incident).incident["model"] == "other"
    assert status(other).training["stopped"] is True and status(pctx).training["stopped"] is False
    assert [e["verb"] for e in _audit(other, r.incident)] == ["incident open", "stop-training"]
    assert [e["verb"] for e in _audit(pctx, demo_incident)] == ["incident open"]
