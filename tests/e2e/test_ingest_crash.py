"""kill -9 in the middle of an ingest, with the real binary: no batch and no segment becomes
visible to readers, `doctor` reports the leftover temp file, and re-running the ingest succeeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lifelong_cli.context import AppContext
from tests.helpers import llctl_bin, read_all_rows, run_bin

ROWS = 1_500_000


def _write_big_csv(path: Path, n: int):
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(42)
    table = pa.table({
        "example_id": pa.array(np.char.add("k", np.arange(n).astype(str))),
        "event_time": pa.array((1_704_067_200 + np.arange(n)).astype(str)),
        "label": pa.array(np.array(["0", "1"])[rng.integers(0, 2, n)]),
        "x1": rng.normal(size=n), "x2": rng.uniform(-999, 999, size=n), "x3": rng.normal(size=n),
        "segment": pa.array(np.array(["a", "b", "c"])[rng.integers(0, 3, n)]),
    })
    pcsv.write_csv(table, path)
    return table


def _batches(workspace: Path, env: dict[str, str]) -> list[dict]:
    from lifelong_cli.store import batches

    ctx = AppContext(cwd=workspace, env=env, actor="tester")
    try:
        with ctx.store.tx(write=False) as t:
            return batches.every(t, ctx.model)
    finally:
        ctx.close()


def _segments_dir(workspace: Path, env: dict[str, str]) -> Path:
    """Where the workspace model's segments go: its data directory (data root, then the model's prefix)."""
    ctx = AppContext(cwd=workspace, env=env, actor="tester")
    try:
        return Path(ctx.data_root) / "segments"
    finally:
        ctx.close()


def _status_data(workspace: Path, env: dict[str, str]) -> dict:
    r = run_bin(["status", "--json"], cwd=workspace, env=env)
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)["data"]


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_no_batch_and_the_rerun_succeeds(tmp_path, workspace, cli_env):
    started = time.monotonic()
    path = tmp_path / "big.csv"
    expected = _write_big_csv(path, ROWS)
    segments = _segments_dir(workspace, cli_env)
    assert segments.is_relative_to(workspace / ".llctl" / "data")

    p = subprocess.Popen([llctl_bin(), "ingest", str(path), "--json"], cwd=workspace, env=cli_env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        tmp_files: list[Path] = []
        while time.monotonic() < deadline and p.poll() is None:
            tmp_files = [f for f in segments.rglob("*.llctl-tmp") if f.stat().st_size > 0]
            if tmp_files:
                break
            time.sleep(0.02)
        assert p.poll() is None, f"ingest finished before it could be killed: {p.communicate()}"
        assert tmp_files, "no segment temp file appeared within 30 s"
        time.sleep(0.3)  # let it write a little more of the segment
        assert p.poll() is None, "ingest finished before it could be killed"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for stream in (p.stdout, p.stderr):
            stream.close()
    assert p.returncode == -signal.SIGKILL

    # nothing of the killed ingest is visible
    data = _status_data(workspace, cli_env)
    assert (data["batches"], data["rows_accepted"]) == (0, 0)
    assert _batches(workspace, cli_env) == []
    assert read_all_rows(workspace, cli_env).num_rows == 0
    assert not list(segments.rglob("*.parquet")), "a finished segment file without a batch"
    leftovers = list(segments.rglob("*.llctl-tmp"))
    assert leftovers

    # doctor's job: report the leftover, with what to do
    r = run_bin(["doctor", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 3, r.stdout + r.stderr
    findings = [c for c in json.loads(r.stdout)["checks"] if not c["ok"]]
    assert [f["name"] for f in findings] == ["data root"]
    assert "unfinished temp file" in findings[0]["detail"] and findings[0]["hint"]

    # the same ingest again runs to completion
    r = run_bin(["ingest", str(path), "--json"], cwd=workspace, env=cli_env, timeout=120)
    assert r.code == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert (doc["status"], doc["rows_read"], doc["rows_accepted"], doc["rows_quarantined"], doc["rows_duplicate"]) == \
        ("accepted", ROWS, ROWS, 0, 0)
    assert _status_data(workspace, cli_env)["rows_accepted"] == ROWS
    (batch,) = _batches(workspace, cli_env)
    assert batch["status"] == "accepted" and Path(batch["segment_path"]).is_file()

    # and the one reader returns exactly those rows
    got = read_all_rows(workspace, cli_env)
    assert got.num_rows == ROWS
    got = got.sort_by("example_id")
    want = expected.sort_by("example_id")
    assert got["example_id"].to_pylist() == want["example_id"].to_pylist()
    for c in ("label", "segment"):
        assert got[c].equals(want[c]), c
    for c in ("x1", "x2", "x3"):
        assert got[c].to_numpy().tolist() == want[c].to_numpy().tolist(), c
    assert got["event_time"][0].as_py().timestamp() == 1_704_067_200

    assert time.monotonic() - started < 60
