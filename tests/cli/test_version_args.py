"""Version arguments accept what outputs print (`v4`) as well as the bare number."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize("arg", ["v7", "V7", "7"])
def test_a_version_written_as_printed_is_looked_up(workspace, cli_env, arg):
    r = run_cli(["versions", "show", arg], cwd=workspace, env=cli_env)
    assert r.code == 4 and "7" in r.stderr and "Traceback" not in r.stderr  # no such version: looked up, not refused


@pytest.mark.parametrize("arg", ["vv7", "v-7", "v", "v7.0"])
def test_a_malformed_version_is_a_usage_error(workspace, cli_env, arg):
    r = run_cli(["versions", "show", arg], cwd=workspace, env=cli_env)
    assert r.code == 2 and "Traceback" not in r.stderr
