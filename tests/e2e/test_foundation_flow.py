"""The foundation's 'done when', with the real binary: init, stop, status, audit, resume."""

from __future__ import annotations

import json

from tests.helpers import run_bin


def test_init_stop_status_audit_resume_with_the_real_binary(tmp_path, cli_env):
    ws = tmp_path / "w"
    r = run_bin(["init", str(ws)], cwd=tmp_path, env=cli_env)
    assert r.code == 0, r.stderr
    r = run_bin(["stop-training", "--reason", "x"], cwd=ws, env=cli_env)
    assert r.code == 0 and "training stopped by tester" in r.stdout
    r = run_bin(["status", "--json"], cwd=ws, env=cli_env)
    assert r.code == 0 and json.loads(r.stdout)["training"]["stopped"] is True
    r = run_bin(["audit", "--json"], cwd=ws, env=cli_env)
    entries = json.loads(r.stdout)["entries"]
    assert [(e["verb"], e["reason"]) for e in entries if e["verb"] == "stop-training"] == [("stop-training", "x")]
    r = run_bin(["resume"], cwd=ws, env=cli_env)
    assert r.code == 0 and "training resumed" in r.stdout
    assert json.loads(run_bin(["status", "--json"], cwd=ws, env=cli_env).stdout)["training"]["stopped"] is False
    # re-running init on an existing workspace is safe and keeps its config
    cfg = (ws / "llctl.yaml").read_text()
    assert run_bin(["init", str(ws)], cwd=tmp_path, env=cli_env).code == 0
    assert (ws / "llctl.yaml").read_text() == cfg


def test_python_dash_m_entry_point_works(tmp_path, cli_env):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "lifelong_cli", "--version"], capture_output=True, text=True,
                       env=cli_env, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("llctl ")


def test_a_second_workspace_on_the_same_store_is_a_second_model_with_its_own_stop_flag(tmp_path, cli_env, store_url):
    """The bug that started issue 10: a workspace for model 'other' on a team's store saw the first
    model's state, and its stop-training stopped the first model's training too."""
    url = store_url or f"sqlite:///{tmp_path}/shared.db"
    env = {k: v for k, v in cli_env.items() if k != "LLCTL_STORE__URL"}
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_bin(["init", str(first), "--store-url", url], cwd=tmp_path, env=env).code == 0
    r = run_bin(["--model", "other", "init", str(second), "--store-url", url, "--json"], cwd=tmp_path, env=env)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["model"], doc["model_added"], doc["other_models"]) == ("other", True, ["demo"])

    r = run_bin(["stop-training", "--reason", "stopping model other only", "--json"], cwd=second, env=env)
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["model"] == "other"
    status = {ws.name: json.loads(run_bin(["status", "--json"], cwd=ws, env=env).stdout) for ws in (first, second)}
    assert status["second"]["training"]["stopped"] is True
    assert status["first"]["training"]["stopped"] is False
    for ws in (first, second):
        r = run_bin(["versions", "--json"], cwd=ws, env=env)
        assert r.code == 0 and json.loads(r.stdout)["versions"] == [], r.stderr
    assert json.loads(run_bin(["versions", "--json"], cwd=second, env=env).stdout)["model"] == "other"
    names = [m["name"] for m in json.loads(run_bin(["models", "--json"], cwd=first, env=env).stdout)["models"]]
    assert names == ["demo", "other"]
