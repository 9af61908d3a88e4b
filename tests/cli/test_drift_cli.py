"""`llctl drift` through the real CLI: reference vs batch quantiles, null rates, ratio of medians, and the
likely cause of a drift (a ×1000 unit change), on a workspace made by `llctl init`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lifelong_cli.context import AppContext
from tests.helpers import run_cli

HEADER = "example_id,event_time,label,x1,x2,x3,segment"


def write_batch(path: Path, n: int, start: int, *, seed: int, x3_scale: float = 1.0, x1_shift: float = 0.0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [HEADER]
    for i in range(start, start + n):
        t = f"2024-01-{1 + i // 1440:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00Z"
        lines.append(f"e{i},{t},{i % 2},{rng.normal(0, 1) + x1_shift:.5f},{rng.normal(5, 2):.5f},"
                     f"{rng.lognormal(-2, 0.5) * x3_scale:.6g},{rng.choice(['a', 'b', 'c'])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def cli(tmp_path, cli_env):
    """A workspace made by the real `llctl init` (on the test's store), and llctl run in it."""
    assert run_cli(["init", "ws"], cwd=tmp_path, env=cli_env).code == 0
    ws = tmp_path / "ws"
    return lambda *args, width=100: run_cli([str(a) for a in args], cwd=ws, env={**cli_env, "COLUMNS": str(width)})


@pytest.fixture
def unit_change_batch(cli, tmp_path) -> int:
    """Batch 1 the reference, batch 2 the same upstream with x3 sent ×1000; returns batch 2's id."""
    assert cli("ingest", write_batch(tmp_path / "ref.csv", 400, 0, seed=1), "--json").code == 0
    r = cli("ingest", write_batch(tmp_path / "cur.csv", 300, 400, seed=2, x3_scale=1000), "--json")
    assert r.code in (0, 3), r.stderr  # 3: held for its drift
    return r.json()["batch"]


def test_drift_json_names_the_unit_change_with_its_figures(cli, unit_change_batch):
    r = cli("drift", "--batch", unit_change_batch, "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["batch"] == unit_change_batch and doc["drifted"] is True
    assert [(c["feature"], c["cause"]) for c in doc["likely_causes"]] == [("x3", "unit_change")]
    assert doc["likely_causes"][0]["figures"]["factor"] == 1000.0
    x3 = doc["report"]["columns"]["x3"]
    assert x3["median_ratio"] == pytest.approx(1000, rel=0.2)
    assert x3["reference"]["p50"] == pytest.approx(np.exp(-2), rel=0.2)
    assert {"p1", "p50", "p99", "null_rate"} <= set(x3["batch"])
    assert x3["likely_cause"]["cause"] == "unit_change"
    assert doc["report"]["columns"]["x1"]["likely_cause"] is None
    assert "likely a unit change ×1000" in doc["hint"]


def test_drift_human_output_shows_medians_ratio_and_likely_cause(cli, unit_change_batch):
    doc = cli("drift", "--batch", unit_change_batch, "--json").json()["report"]["columns"]["x3"]
    r = cli("drift", "--batch", unit_change_batch)
    assert r.code == 0, r.stderr
    out = r.stdout
    assert f"batch {unit_change_batch}: DRIFT" in out
    assert f"{doc['reference']['p50']:.4g}" in out and f"{doc['batch']['p50']:.4g}" in out
    assert f"×{doc['median_ratio']:.4g}" in out
    assert "p1" in out and "p99" in out and "null" in out
    assert "likely cause:" in out
    cause_line = next(line for line in out.splitlines() if line.startswith("  x3: median"))
    assert "likely a unit change" in cause_line
    tables = out.split("likely cause:")[0].splitlines()[1:]  # below the summary line, above the causes
    assert tables and max(len(line.rstrip()) for line in tables) <= 100


def test_drift_on_a_narrow_terminal_drops_p1_and_p99(cli, unit_change_batch):
    r = cli("drift", "--batch", unit_change_batch, width=70)
    assert r.code == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "feature" in line and "p50" in line)
    assert "p1 " not in header and "p99" not in header
    tables = r.stdout.split("likely cause:")[0].splitlines()[1:]
    assert tables and max(len(line.rstrip()) for line in tables) <= 70


def test_a_seasonal_shift_names_no_cause(cli, tmp_path):
    assert cli("ingest", write_batch(tmp_path / "ref.csv", 400, 0, seed=1), "--json").code == 0
    r = cli("ingest", write_batch(tmp_path / "cur.csv", 300, 400, seed=2, x1_shift=1.0), "--json")
    batch = r.json()["batch"]
    doc = cli("drift", "--batch", batch, "--json").json()
    assert doc["drifted"] is True and doc["report"]["drifted_features"] == ["x1"]
    assert doc["likely_causes"] == []
    out = cli("drift", "--batch", batch).stdout
    assert "x1: none named" in out


def test_a_report_stored_before_the_summaries_still_displays(cli, cli_env, tmp_path, unit_change_batch):
    """Batches ingested by an older llctl have a drift document without columns and likely causes."""
    ctx = AppContext(cwd=tmp_path / "ws", env=cli_env, actor="tester")
    try:
        with ctx.store.tx() as t:
            row = t.row("SELECT drift FROM batches WHERE id = :id", {"id": unit_change_batch}, types={"drift": "json"})
            old = {k: v for k, v in row["drift"].items() if k not in ("columns", "likely_causes")}
            t.execute("UPDATE batches SET drift = :d WHERE id = :id", {"d": old, "id": unit_change_batch})
    finally:
        ctx.close()
    r = cli("drift", "--batch", unit_change_batch)
    assert r.code == 0, r.stderr
    assert "Traceback" not in r.stderr and "KeyError" not in r.stdout + r.stderr
    assert "x3" in r.stdout and "ks" in r.stdout and "statistic" in r.stdout
    doc = cli("drift", "--batch", unit_change_batch, "--json").json()
    assert doc["likely_causes"] == [] and "columns" not in doc["report"]
