"""`llctl playbook lint | list | show | run --dry-run` and the run's refusals, through the CLI.

Every broken playbook must be refused with exit 6 and one line naming the file and the line of the
mistake; the shipped playbooks must lint clean."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from lifelong_cli.context import AppContext
from lifelong_cli.incident.playbook import SHIPPED
from lifelong_cli.ops.init import init
from tests.helpers import run_bin, run_cli

SHIPPED_NAMES = ["bad-data", "bad-labels", "bad-launch", "drift-surge", "model-explosion", "roll-through",
                 "stale-model"]

# A valid playbook; each broken case below changes one thing in it. Line numbers are 1-based.
GOOD = textwrap.dedent("""\
    name: NAME
    description: a playbook for the lint tests
    when: never
    params:
      reason: {type: str, default: lint test}
      hours: {type: float, default: 1}
    steps:
      - name: stop
        run: stop-training
        with:
          reason: "{params.reason}"
          dry_run: true
      - name: look
        run: status
        check: {status.training.stopped: false}
      - name: relax
        run: slo-relax
        with: {policy: drift, hours: "{params.hours}", reason: "{params.reason}"}
        on_failure: continue
    """)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "tester"
    return env


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("lint")
    init(AppContext(cwd=base, env=_env(), actor="tester"), directory=str(base / "ws"))
    return base / "ws"


@pytest.fixture
def env() -> dict[str, str]:
    return _env()


def _write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.yaml"
    p.write_text(text.replace("NAME", name), encoding="utf-8")
    return p


def _shift(text: str) -> str:
    """Text indented as GOOD is in this file's source, indented as GOOD is after ``dedent``."""
    return "\n".join(ln[4:] if ln.startswith("    ") else ln for ln in text.split("\n"))


def _replace(old: str, new: str) -> str:
    """GOOD with ``old`` (indented as in the source above) replaced by ``new``."""
    old, new = _shift(old), _shift(new)
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


# (case, playbook text, line of the mistake, words the message must contain)
BROKEN = [
    ("unknown-verb", _replace("run: status", "run: statuss"), 14, ["unknown verb 'statuss'"]),
    ("unknown-argument", _replace("          dry_run: true\n", "          dry_run: true\n          force: true\n"), 13,
     ["stop-training takes no argument 'force'"]),
    ("unknown-argument-block-value", _replace("          dry_run: true\n",
                                              "          dry_run: true\n          force:\n            really: yes\n"),
     13, ["takes no argument 'force'"]),
    ("unknown-top-field", GOOD + "owner:\n  team: ml-platform\n", 20, ["unknown field 'owner'"]),
    ("unknown-step-field", _replace("        check: {status.training.stopped: false}\n",
                                    "        check: {status.training.stopped: false}\n        retries:\n          - 3\n"),
     16, ["step 2", "unknown field 'retries'"]),
    ("undeclared-parameter", _replace('          dry_run: true\n', '          dry_run: "{params.dry}"\n'), 12,
     ["{params.dry}", "undeclared parameter"]),
    ("undeclared-parameter-in-if", _replace("        run: status\n", "        run: status\n        if: {params.only: true}\n"),
     15, ["undeclared parameter", "params.only"]),
    ("later-step-reference", _replace('          reason: "{params.reason}"\n', '          reason: "{steps.look.result.message}"\n'),
     11, ["{steps.look.result.message}", "earlier step"]),
    ("later-step-in-if", _replace("        run: status\n", "        run: status\n        if: {steps.relax.result.policy: drift}\n"),
     15, ["steps.relax.result.policy", "earlier step"]),
    ("bad-on-failure", _replace("        on_failure: continue", "        on_failure: fallback"), 19,
     ["on_failure 'fallback'"]),
    ("unknown-operator", _replace("        check: {status.training.stopped: false}",
                                  "        check:\n          status.training.stopped:\n            '=~': false"), 17,
     ["unknown operator '=~'"]),
    ("missing-run", _replace("        run: status\n", ""), 13, ["step 2 (look)", "missing 'run'"]),
    ("unknown-param-type", _replace("{type: float, default: 1}", "{type: double, default: 1}"), 6,
     ["parameter 'hours'", "unknown type 'double'"]),
    ("bad-yaml", _replace("      - name: look\n", "      - name: look: [\n"), 13, ["not valid YAML"]),
    ("bad-yaml-indent", _replace("        run: status\n", "       run: status\n"), 14, ["not valid YAML"]),
]


def test_every_shipped_playbook_lints_clean(ws, env):
    r = run_cli(["playbook", "lint"], cwd=ws, env=env)
    assert r.code == 0, r.stdout + r.stderr
    assert f"{len(SHIPPED_NAMES)} playbook(s) checked, 0 problem(s)" in r.stdout
    files = [str(SHIPPED / f"{n}.yaml") for n in SHIPPED_NAMES]
    r = run_cli(["playbook", "lint", *files, "--json"], cwd=ws, env=env)
    assert r.code == 0 and r.json()["ok"] is True and sorted(r.json()["checked"]) == sorted(files)


def test_the_good_template_lints_clean(ws, env, tmp_path):
    p = _write(tmp_path, "good", GOOD)
    r = run_cli(["playbook", "lint", str(p)], cwd=ws, env=env)
    assert r.code == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("case", "text", "line", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_playbook_is_refused_with_its_file_and_line(ws, env, tmp_path, case, text, line, words):
    p = _write(tmp_path, case, text)
    r = run_cli(["playbook", "lint", str(p)], cwd=ws, env=env)
    assert r.code == 6, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith(f"error: {p}:{line}: "), (errors[0], text.splitlines()[line - 1])
    for w in words:
        assert w in errors[0], errors[0]
    assert "1 playbook(s) checked, 1 problem(s)" in r.stdout


def test_lint_checks_every_file_and_reports_each_problem(ws, env, tmp_path):
    good = _write(tmp_path, "fine", GOOD)
    bad1 = _write(tmp_path, "verb", BROKEN[0][1])
    bad2 = _write(tmp_path, "field", BROKEN[3][1])
    r = run_cli(["playbook", "lint", str(good), str(bad1), str(bad2), "--json"], cwd=ws, env=env)
    assert r.code == 6
    doc = r.json()
    assert doc["ok"] is False and len(doc["checked"]) == 3
    assert [p.split(":")[0] for p in doc["problems"]] == [str(bad1), str(bad2)]


def test_a_file_whose_name_differs_from_its_playbook_name_is_a_problem(ws, env, tmp_path):
    p = tmp_path / "renamed.yaml"
    p.write_text(GOOD.replace("NAME", "original"), encoding="utf-8")
    r = run_cli(["playbook", "lint", str(p)], cwd=ws, env=env)
    assert r.code == 6
    assert f"{p}:1: " in r.stderr and "'renamed'" in r.stderr and "'original'" in r.stderr


def test_a_broken_playbook_in_the_configured_directory_fails_lint_and_shows_in_list(ws, env, tmp_path):
    d = tmp_path / "pbs"
    _write(d, "mine", GOOD)
    bad = _write(d, "unknown-verb", BROKEN[0][1])
    s = ["--set", f"incident.playbooks_dir={d}"]
    r = run_cli([*s, "playbook", "lint"], cwd=ws, env=env)
    assert r.code == 6 and f"{bad}:14:" in r.stderr and f"{len(SHIPPED_NAMES) + 2} playbook(s) checked, 1 problem(s)" in r.stdout
    r = run_cli([*s, "playbook", "list", "--json"], cwd=ws, env=env)
    assert r.code == 0
    by_name = {p["name"]: p for p in r.json()["playbooks"]}
    assert by_name["mine"]["ok"] is True and by_name["unknown-verb"]["ok"] is False
    assert "unknown verb" in by_name["unknown-verb"]["error"]
    # running it is refused the same way, before anything happens
    before = _incidents(ws, env)
    r = run_cli([*s, "playbook", "run", "unknown-verb", "--yes"], cwd=ws, env=env)
    assert r.code == 6 and f"{bad}:14:" in r.stderr
    assert _incidents(ws, env) == before


def test_playbook_list_json_names_the_shipped_playbooks(ws, env):
    r = run_cli(["playbook", "list", "--json"], cwd=ws, env=env)
    assert r.code == 0
    pbs = r.json()["playbooks"]
    assert [p["name"] for p in pbs] == SHIPPED_NAMES
    for p in pbs:
        assert p["ok"] is True and p["description"].strip() and p["when"].strip()
        assert Path(p["path"]) == SHIPPED / f"{p['name']}.yaml"
    r = run_cli(["playbook", "list"], cwd=ws, env=env)
    assert r.code == 0 and len(r.stdout.strip().splitlines()) == len(SHIPPED_NAMES)


def test_playbook_show_bad_data(ws, env):
    r = run_cli(["playbook", "show", "bad-data"], cwd=ws, env=env)
    assert r.code == 0, r.stderr
    out = r.stdout
    assert out.startswith("bad-data: Bad data reached the store")
    for param in ("from=<time>", "to=<time>", "batch=<int>", "source=<str>", "where=<str>", "reason=<str>"):
        assert f"--param {param}" in out
    steps = [ln.strip() for ln in out.splitlines() if ln.startswith("  ") and ". " in ln and ": " in ln
             and not ln.strip().startswith("--param")]
    assert [s.split(".")[0] for s in steps] == [str(n) for n in range(1, 11)] + ["recovery"]
    assert "rollback: rollback" in out and "on failure: fallback" in out
    assert "recovery. fallback: fallback-on" in out
    doc = run_cli(["playbook", "show", "bad-data", "--json"], cwd=ws, env=env).json()
    assert doc["name"] == "bad-data" and len(doc["steps"]) == 11
    assert [s["run"] for s in doc["steps"]][:4] == ["stop-training", "purge-data", "rollback", "purge-data"]
    assert doc["steps"][-1]["recovery"] is True
    assert run_cli(["playbook", "show", "no-such-playbook"], cwd=ws, env=env).code == 4


def _audit_ids(ws: Path, env: dict[str, str]) -> list[int]:
    r = run_cli(["audit", "--json", "--limit", "1000"], cwd=ws, env=env)
    assert r.code == 0, r.stderr
    return [e["id"] for e in r.json()["entries"]]


def _incidents(ws: Path, env: dict[str, str]) -> list[dict]:
    r = run_cli(["incident", "list", "--json"], cwd=ws, env=env)
    assert r.code == 0, r.stderr
    return r.json()["incidents"]


def test_dry_run_prints_the_resolved_plan_and_changes_nothing(ws, env):
    before, incidents = _audit_ids(ws, env), _incidents(ws, env)
    r = run_cli(["playbook", "run", "bad-data", "--dry-run", "--param", "batch=1"], cwd=ws, env=env)
    assert r.code == 0, r.stderr
    out = r.stdout
    assert "plan for bad-data" in out and "'batch': 1" in out and "nothing changed" in out
    lines = [ln.strip() for ln in out.splitlines()]
    assert "1. stop: stop-training {'reason': 'bad data'}" in lines
    purge = next(ln for ln in lines if ln.startswith("4. purge: purge-data"))
    assert "'batch': 1," in purge and "'reason': 'bad data'" in purge and "{params." not in purge
    assert "5. resume: resume {'reason': 'bad data purged: bad data'}" in lines
    assert any(ln.startswith("7. validate: validate {'version': '{steps.train.result.version}'}") for ln in lines)
    doc = run_cli(["playbook", "run", "bad-data", "--dry-run", "--param", "batch=1", "--param", "canary_timeout=60",
                   "--json"], cwd=ws, env=env).json()
    assert doc["dry_run"] is True and doc["incident"] is None and len(doc["steps"]) == 10
    watch = doc["steps"][-1]
    assert watch["with"] == {"timeout": 60.0, "interval": 5.0}  # whole-value references keep their type
    assert _audit_ids(ws, env) == before
    assert _incidents(ws, env) == incidents
    st = run_cli(["status", "--json"], cwd=ws, env=env).json()
    assert st["training"]["stopped"] is False and st["data"]["active_purge_rules"] == 0


def test_dry_run_shows_which_steps_the_parameters_skip(ws, env):
    doc = run_cli(["playbook", "run", "drift-surge", "--dry-run", "--param", "batch=2", "--param", "decision=purge",
                   "--json"], cwd=ws, env=env).json()
    skipped = {s["name"]: s["skipped"] for s in doc["steps"]}
    assert skipped == {"report": False, "roll-through": True, "stop": False, "reject": False, "purge": False,
                       "resume": False, "train": False, "validate": False}
    doc = run_cli(["playbook", "run", "drift-surge", "--dry-run", "--param", "batch=2", "--param",
                   "decision=roll-through", "--from-step", "2", "--json"], cwd=ws, env=env).json()
    skipped = {s["name"]: s["skipped"] for s in doc["steps"]}
    assert skipped == {"report": True, "roll-through": False, "stop": True, "reject": True, "purge": True,
                       "resume": True, "train": False, "validate": False}


@pytest.mark.parametrize(("args", "words"), [
    (["drift-surge", "--param", "batch=3"], "needs --param decision"),
    (["drift-surge", "--param", "decision=purge"], "needs --param batch"),
    (["drift-surge", "--param", "batch=3", "--param", "decision=purge", "--param", "color=red"], "no parameter 'color'"),
    (["drift-surge", "--param", "batch=three", "--param", "decision=purge"], "expected int"),
    (["drift-surge", "--param", "batch=3", "--param", "decision=ignore"], "choose one of"),
    (["bad-data", "--param", "from=last tuesday"], "--param from"),
    (["bad-data", "--param", "batch"], "not k=v"),
    (["bad-data", "--from-step", "11"], "--from-step 11"),
])
def test_bad_parameters_are_usage_errors_and_change_nothing(ws, env, args, words):
    before, incidents = _audit_ids(ws, env), _incidents(ws, env)
    r = run_cli(["playbook", "run", *args, "--yes"], cwd=ws, env=env)
    assert r.code == 2, r.stdout + r.stderr
    assert words in r.stderr
    assert _audit_ids(ws, env) == before
    assert _incidents(ws, env) == incidents


def test_a_step_that_needs_confirmation_is_declined_off_a_terminal_without_yes(ws, env, tmp_path):
    d = tmp_path / "own"
    _write(d, "careful", textwrap.dedent("""\
        name: careful
        description: asks before stopping training
        steps:
          - name: look
            run: status
          - name: stop
            run: stop-training
            with: {reason: careful playbook}
            confirm: really stop training?
        """))
    s = ["--set", f"incident.playbooks_dir={d}"]
    assert not [i for i in _incidents(ws, env) if i["status"] == "open"]
    r = run_bin([*s, "playbook", "run", "careful"], cwd=ws, env=env)  # stdin is /dev/null: not a terminal
    assert r.code == 8, r.stdout + r.stderr
    assert "really stop training?" in r.stderr and "--yes --from-step 2" in r.stderr
    st = run_cli(["status", "--json"], cwd=ws, env=env).json()
    assert st["training"]["stopped"] is False  # the step did not run
    (opened,) = [i["id"] for i in _incidents(ws, env) if i["status"] == "open"]  # the run's incident, left open
    # with --yes it runs (continuing at the step that asked), inside the same incident
    r = run_cli([*s, "playbook", "run", "careful", "--yes", "--from-step", "2", "--json"], cwd=ws, env=env)
    assert r.code == 0, r.stdout + r.stderr
    doc = r.json()
    assert doc["incident"] == opened
    assert doc["ok"] is True and [x["status"] for x in doc["steps"]] == ["skipped", "ok"]
    st = run_cli(["status", "--json"], cwd=ws, env=env).json()
    assert st["training"]["stopped"] is True and st["incidents"][0]["id"] == doc["incident"]
    shown = run_cli(["incident", "show", str(doc["incident"]), "--json"], cwd=ws, env=env).json()
    notes = [e["reason"] for e in shown["timeline"] if e["what"] == "note"]
    assert any("needs confirmation" in n for n in notes) and any("step 2 (stop: stop-training)" in n for n in notes)
    # leave the shared workspace as it was found
    assert run_cli(["resume", "--reason", "test done"], cwd=ws, env=env).code == 0
    assert run_cli(["incident", "close", str(doc["incident"])], cwd=ws, env=env).code == 0
