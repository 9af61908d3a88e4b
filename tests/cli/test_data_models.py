"""The data verbs in a store with two models, through the CLI: each verb names the model it acted
on, another model's batch or rule is not found (exit 4), and `purge-data --source X --all-models`
makes one rule per model (human output and --json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli

HEADER = "example_id,event_time,label,x1,x2,x3,segment"


def write_csv(path: Path, n: int, start: int = 0) -> Path:
    rows = [f"k{i},2026-11-01T00:00:00Z,{i % 2},{i}.5,-{i},,a" for i in range(start, start + n)]
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def cli(workspace, cli_env):
    """`llctl` in the workspace, whose model is "demo"; the store also holds "other"."""
    def run(*args):
        return run_cli([str(a) for a in args], cwd=workspace, env=cli_env)

    r = run("--model", "other", "init", workspace)
    assert r.code == 0, r.stderr
    return run


def test_ingest_and_purge_name_their_model_and_see_only_its_batches(cli, tmp_path):
    p = write_csv(tmp_path / "a.csv", 20)
    a = cli("ingest", p, "--source", "crm", "--json").json()
    b = cli("--model", "other", "ingest", p, "--source", "crm", "--json").json()
    assert (a["model"], a["status"], b["model"], b["status"]) == ("demo", "accepted", "other", "accepted")
    assert b["rows_accepted"] == 20 and b["rows_duplicate"] == 0

    r = cli("--model", "other", "purge-data", "--batch", a["batch"], "--reason", "x")
    assert r.code == 4 and f"error: model 'other' has no batch {a['batch']}" in r.stderr
    r = cli("purge-data", "--batch", a["batch"], "--reason", "bad", "--json")
    assert r.code == 0, r.stderr
    rule = r.json()
    assert (rule["model"], rule["rows_affected"]) == ("demo", 20)
    r = cli("--model", "other", "purge-data", "--undo", rule["rule"], "--reason", "x")
    assert r.code == 4 and f"model 'other' has no purge rule {rule['rule']}" in r.stderr
    r = cli("--model", "other", "quarantine", "show", a["batch"])
    assert r.code == 4


def test_purge_data_all_models_makes_one_rule_per_model(cli, tmp_path):
    p = write_csv(tmp_path / "a.csv", 20)
    assert cli("ingest", p, "--source", "crm").code == 0
    assert cli("--model", "other", "ingest", p, "--source", "crm").code == 0
    assert cli("--model", "other", "ingest", write_csv(tmp_path / "b.csv", 5, start=100), "--source", "web").code == 0

    r = cli("purge-data", "--all-models", "--source", "crm", "--reason", "crm export broken")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("  model 'demo': purge rule ") and ": hid 20 row(s)" in lines[0]
    assert lines[1].startswith("  model 'other': purge rule ") and ": hid 20 row(s)" in lines[1]
    assert lines[2].startswith("source 'crm': hid 40 row(s) in 2 of 2 model(s) (demo, other)")

    doc = cli("purge-data", "--all-models", "--source", "web", "--reason", "web too", "--json").json()
    assert [(m["model"], m["rows_affected"], m["spec"]) for m in doc["models"]] == \
        [("demo", 0, {"source": "web"}), ("other", 5, {"source": "web"})]
    assert doc["rows_affected"] == 5 and all(isinstance(m["rule"], int) for m in doc["models"])

    audit = cli("audit", "--verb", "purge-data", "--json").json()
    entries = audit["entries"] if isinstance(audit, dict) else audit
    assert sorted((e["model"], e["args"]["source"]) for e in entries) == [("demo", "crm"), ("demo", "web")]

    r = cli("purge-data", "--all-models", "--batch", 1, "--reason", "x")
    assert r.code == 2 and "--all-models takes --source" in r.stderr
    r = cli("purge-data", "--all-models", "--reason", "x")
    assert r.code == 2 and "--all-models needs --source" in r.stderr
