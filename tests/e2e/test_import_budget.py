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


def _probe(workspace, cli_env, args: list[str], heavy: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    p = subprocess.run([sys.executable, "-c", PROBE % heavy, *args], cwd=workspace, env=cli_env,
                       capture_output=True, text=True, timeout=120)
    return p, json.loads(p.stderr.strip().splitlines()[-1])


def _batch_csv(tmp_path, n: int, seed: int) -> str:
    import pyarrow.csv as pcsv

    from lifelong_cli.data.synthetic import batch_table

    path = tmp_path / f"batch-{seed}.csv"
    pcsv.write_csv(batch_table(seed * n, n, day=seed, seed=seed), path)
    return str(path)


def test_validate_loads_neither_torch_nor_onnx_nor_pandas_and_still_checks_parity(make_ctx, workspace, cli_env,
                                                                                   tmp_path):
    """The built-in MLP is scored from its state dict in numpy: validate needs onnxruntime and
    pyarrow only (torch alone costs more start-up than the whole validation)."""
    from lifelong_cli.ops.ingest import ingest
    from lifelong_cli.ops.train import train

    ctx = make_ctx(overrides={"training.epochs": "2"})
    ingest(ctx, path=_batch_csv(tmp_path, 1000, 1))
    version = train(ctx).version
    p, loaded = _probe(workspace, cli_env, ["validate", str(version), "--json"],
                       ["torch", "onnx", "pandas", "mlflow", "scipy", "alibi_detect", "ml_dtypes"])
    assert p.returncode in (0, 3), p.stderr
    assert loaded == [], f"validate imported {loaded}"
    parity = next(g for g in json.loads(p.stdout)["gates"] if g["name"] == "onnx parity")
    assert parity["passed"] is True and parity["figure"].startswith("max |onnx - state dict|"), parity


def test_ingest_does_not_import_pandas_for_pyarrow(workspace, cli_env, tmp_path):
    p, loaded = _probe(workspace, cli_env, ["ingest", _batch_csv(tmp_path, 500, 2), "--json"],
                       ["pandas", "torch", "onnx", "onnxruntime", "mlflow"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rows_accepted"] == 500
    assert loaded == [], f"ingest imported {loaded}"


def test_pandas_kept_out_of_pyarrow_still_imports_when_code_asks_for_it():
    """llctl's finder refuses only pyarrow's implicit import: `import pandas` and to_pandas() work."""
    script = """
import sys
from lifelong_cli.cli._lean_imports import keep_pandas_out
keep_pandas_out()
import io
import pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as pcsv
t = pcsv.read_csv(io.BytesIO(b"k,x\\na,1.5\\n,2.5\\n"))
t = t.append_column("s", pc.binary_join_element_wise("batch ", pc.cast(t["x"], pa.string()), ""))  # a Python scalar
assert "pandas" not in sys.modules, "pyarrow imported pandas"
import pandas as pd
df = t.to_pandas()
back = pa.Table.from_pandas(pd.DataFrame({"x": [1.0, None]}))
print(len(df), df["s"].tolist()[0], back.column("x").null_count, sep="|")
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().split("|") == ["2", "batch 1.5", "1"]
