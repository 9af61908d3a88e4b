"""status shows one model's state, says which model, and names the other models of the store."""

from __future__ import annotations

import pytest

from lifelong_cli.ops import incident as inc
from lifelong_cli.ops.status import status
from lifelong_cli.ops.stop_training import stop_training
from lifelong_cli.store import models
from tests.helpers import run_cli


@pytest.fixture
def other(ctx, make_ctx):
    """A second model, ``other``, in the same store."""
    with ctx.store.tx() as t:
        models.add(t, name="other", actor="tester", now=ctx.now(), data_prefix="other")
    return make_ctx(overrides={"model.name": "other"})


def test_a_single_model_store_names_its_model_and_no_other(ctx, workspace, cli_env):
    r = status(ctx)
    assert (r.model, r.other_models) == ("demo", [])
    out = run_cli(["status"], cwd=workspace, env=cli_env)
    assert out.code == 0, out.stderr
    assert "model demo" in out.stdout.splitlines()[0] and "other models" not in out.stdout


def test_status_shows_only_the_chosen_models_state(ctx, other, workspace, cli_env):
    stop_training(ctx, reason="demo only")
    demo_incident = inc.open_incident(ctx, title="demo's trouble").incident["id"]
    shared = inc.open_incident(other, title="shared upstream", store_wide=True).incident["id"]
    mine, theirs = status(ctx), status(other)
    assert (mine.model, mine.other_models) == ("demo", ["other"])
    assert (theirs.model, theirs.other_models) == ("other", ["demo"])
    assert mine.training["stopped"] is True and theirs.training["stopped"] is False
    assert [i["id"] for i in mine.incidents] == [demo_incident, shared]
    assert [(i["id"], i["model"]) for i in theirs.incidents] == [(shared, None)]
    assert not any("training is stopped" in s for s in theirs.next)

    r = run_cli(["--model", "other", "status"], cwd=workspace, env=cli_env)
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "model other" in lines[0]
    assert any("other models" in ln and "demo" in ln for ln in lines)
    assert "STOPPED" not in r.stdout and "demo's trouble" not in r.stdout and "shared upstream" in r.stdout
    doc = run_cli(["--model", "other", "status", "--json"], cwd=workspace, env=cli_env).json()
    assert doc["model"] == "other" and doc["other_models"] == ["demo"]


def test_status_in_a_store_of_several_models_needs_one_chosen(ctx, other, workspace, cli_env):
    (workspace / "llctl.yaml").write_text((workspace / "llctl.yaml").read_text().replace("name: demo", "name: nobody"))
    r = run_cli(["status"], cwd=workspace, env=cli_env)
    assert r.code == 6 and "demo, other" in r.stderr
