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
