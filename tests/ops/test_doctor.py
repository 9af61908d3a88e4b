"""doctor reports a healthy workspace as such and names each problem with what to do."""

from __future__ import annotations

import shutil

from lifelong_cli.context import AppContext
from lifelong_cli.ops.doctor import doctor
from lifelong_cli.ops.fsutil import TMP_SUFFIX


def test_fresh_workspace_passes_every_check(ctx):
    r = doctor(ctx)
    assert r.ok, [c for c in r.checks if not c.ok]
    assert {c.name for c in r.checks} >= {"config", "store", "migrations", "singletons", "audit log"}


def test_missing_data_root_is_a_finding_with_a_hint(ctx, workspace):
    shutil.rmtree(workspace / ".llctl" / "data")
    r = doctor(ctx)
    assert not r.ok
    (f,) = r.findings
    assert f.name == "data root" and "llctl init" in f.hint


def test_leftover_temp_file_is_reported(ctx, workspace):
    (workspace / ".llctl" / "data" / f".seg.parquet.x{TMP_SUFFIX}").write_bytes(b"partial")
    r = doctor(ctx)
    assert [f.name for f in r.findings] == ["data root"]


def test_store_without_schema_says_run_db_upgrade(tmp_path):
    (tmp_path / "llctl.yaml").write_text("model: {name: m}\nstore: {url: 'sqlite:///empty.db'}\n")
    (tmp_path / ".llctl" / "data").mkdir(parents=True)
    (tmp_path / ".llctl" / "artifacts").mkdir(parents=True)
    ctx = AppContext(cwd=tmp_path, env={}, actor="t")
    r = doctor(ctx)
    ctx.close()
    (f,) = r.findings
    assert f.name == "migrations" and "llctl db upgrade" in f.hint


def test_a_segment_no_batch_refers_to_is_reported(ctx, workspace):
    seg = workspace / ".llctl" / "data" / "segments" / "examples"
    seg.mkdir(parents=True, exist_ok=True)
    (seg / "0123abcd.parquet").write_bytes(b"PAR1")
    r = doctor(ctx)
    assert [f.name for f in r.findings] == ["unreferenced segments"]
