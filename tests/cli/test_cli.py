"""The CLI contract: exit codes, one JSON document on stdout (errors too), messages on stderr."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli


@pytest.fixture
def cli(workspace, cli_env):
    return lambda *args: run_cli(list(args), cwd=workspace, env=cli_env)


def test_stop_training_prints_what_changed_and_what_next(cli):
    r = cli("stop-training", "--reason", "bad upstream")
    assert r.code == 0
    assert r.stdout.startswith("model 'demo': training stopped by tester at ")
    assert "llctl resume" in r.stdout


def test_second_stop_says_who_stopped_already(cli):
    cli("--actor", "alice", "stop-training", "--reason", "first")
    r = cli("stop-training", "--reason", "second", "--json")
    assert r.code == 0
    doc = r.json()
    assert doc["changed"] is False and doc["stopped_by"] == "alice"


def test_status_json_is_exactly_one_document(cli):
    cli("stop-training", "--reason", "x")
    r = cli("status", "--json")
    assert r.code == 0
    doc = json.loads(r.stdout)
    assert doc["training"]["stopped"] is True and doc["training"]["stopped_by"] == "tester"


def test_status_human_shows_stopped_training(cli):
    cli("stop-training", "--reason", "nan burst")
    r = cli("status")
    assert r.code == 0 and "STOPPED" in r.stdout and "nan burst" in r.stdout


def test_audit_json_lists_entries(cli):
    cli("stop-training", "--reason", "x")
    cli("resume")
    r = cli("audit", "--json", "--verb", "stop-training")
    assert r.code == 0
    assert [e["verb"] for e in r.json()["entries"]] == ["stop-training"]


def test_missing_reason_is_usage_error_exit_2(cli):
    r = cli("stop-training")
    assert r.code == 2 and "--reason" in r.stderr and r.stdout == ""


def test_usage_error_under_json_is_a_json_error_document(cli):
    r = cli("stop-training", "--json")
    assert r.code == 2
    assert r.json()["error"]["kind"] == "usage"


def test_unknown_command_is_exit_2(cli):
    assert cli("frobnicate").code == 2


def test_watch_and_json_do_not_combine(cli):
    r = cli("status", "--watch", "--json")
    assert r.code == 2 and r.json()["error"]["kind"] == "usage"


def test_no_workspace_is_config_error_exit_6(tmp_path, cli_env):
    r = run_cli(["status", "--json"], cwd=tmp_path, env=cli_env)
    assert r.code == 6
    err = r.json()["error"]
    assert "llctl init" in err["hint"]
    assert "Traceback" not in r.stderr


def test_bad_config_value_names_key_exit_6(workspace, cli_env):
    (workspace / "llctl.yaml").write_text("drift:\n  alpha: 7\n")
    r = run_cli(["status"], cwd=workspace, env=cli_env)
    assert r.code == 6
    assert "drift.alpha" in r.stderr and "llctl.yaml" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_unreachable_store_is_exit_7_without_password(workspace, cli_env):
    env = dict(cli_env, LLCTL_STORE__URL="postgresql+psycopg://u:topsecret@127.0.0.1:1/x")
    r = run_cli(["stop-training", "--reason", "x", "--json"], cwd=workspace, env=env)
    assert r.code == 7
    assert "topsecret" not in r.stdout + r.stderr
    assert r.json()["error"]["kind"] == "unavailable"


def test_doctor_exit_3_on_findings(cli, workspace):
    assert cli("doctor").code == 0
    (workspace / ".llctl" / "artifacts").rmdir()
    r = cli("doctor", "--json")
    assert r.code == 3
    assert [c["name"] for c in r.json()["checks"] if not c["ok"]] == ["registry root"]


def test_config_show_masks_secrets_and_names_sources(cli, workspace, cli_env):
    env = dict(cli_env, LLCTL_REGISTRY__TRACKING_URI="http://u:pw123@mlflow:5000")
    r = run_cli(["config", "show", "--json"], cwd=workspace, env=env)
    assert r.code == 0
    doc = r.json()
    assert doc["config"]["registry"]["tracking_uri"] == "http://u:***@mlflow:5000"
    assert doc["sources"]["registry.tracking_uri"] == "environment variable LLCTL_REGISTRY__TRACKING_URI"


def test_init_force_without_yes_off_terminal_is_declined_exit_8(cli, workspace):
    before = (workspace / "llctl.yaml").read_text()
    r = cli("init", "--force")
    assert r.code == 8
    assert (workspace / "llctl.yaml").read_text() == before


def test_init_force_with_yes_keeps_a_backup(cli, workspace):
    (workspace / "llctl.yaml").write_text((workspace / "llctl.yaml").read_text() + "\n# mine\n")
    r = cli("init", "--force", "--yes")
    assert r.code == 0
    backups = list(workspace.glob("llctl.yaml.bak.*"))
    assert len(backups) == 1 and "# mine" in backups[0].read_text()


def test_dry_run_stop_changes_nothing(cli):
    r = cli("stop-training", "--reason", "x", "--dry-run")
    assert r.code == 0 and r.stdout.startswith("would stop training")
    assert cli("status", "--json").json()["training"]["stopped"] is False


def test_help_lists_exit_codes(cli):
    r = cli("--help")
    assert r.code == 0
    assert "8 declined" in r.stdout.replace("\n", " ") or "8 declined" in r.stdout


def test_stop_training_all_models_json_lists_each_model(cli, workspace, cli_env):
    assert run_cli(["--model", "other", "init", str(workspace)], cwd=workspace, env=cli_env).code == 0
    r = cli("stop-training", "--all-models", "--reason", "shared upstream", "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert [(m["model"], m["changed"]) for m in doc["models"]] == [("demo", True), ("other", True)]
    r = cli("--model", "other", "status", "--json")
    assert r.json()["training"]["stopped"] is True
