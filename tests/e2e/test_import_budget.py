"""Emergency verbs and status must not load heavy modules (DESIGN §4: fast start)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "mlflow", "pandas", "pyarrow", "onnxruntime", "alibi_detect", "onnx", "scipy", "alembic"]

PROBE = """
import json, sys
from lifelong_cli.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = %r
print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.__stderr__)
"""


@pytest.mark.parametrize("args", [
    ["stop-training", "--reason", "budget"],
    ["resume"],
    ["status"],
    ["status", "--json"],
    ["--help"],
    ["stop-training", "--help"],
    ["fallback", "off"],
    ["rollback", "--last-good", "--dry-run"],
    ["audit"],
])
def test_verb_loads_no_heavy_module(workspace, cli_env, args):
    p = subprocess.run([sys.executable, "-c", PROBE % HEAVY, *args], cwd=workspace, env=cli_env,
                       capture_output=True, text=True, timeout=60)
    loaded = json.loads(p.stderr.strip().splitlines()[-1])  # the probe's line (a refusal prints its error above)
    assert loaded == [], f"{args} imported {loaded}"
