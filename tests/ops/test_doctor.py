"""doctor reports a healthy workspace as such and names each problem with what to do."""

from __future__ import annotations

import shutil

from lifelong_cli.context import AppContext
from lifelong_cli.fsutil import TMP_SUFFIX
from lifelong_cli.ops.doctor import doctor
from lifelong_cli.store import batches, models


def test_fresh_workspace_passes_every_check(ctx):
    r = doctor(ctx)
    assert r.ok, [c for c in r.checks if not c.ok]
    assert {c.name for c in r.checks} >= {"config", "store", "migrations", "model", "singletons", "audit log"}
    assert next(c for c in r.checks if c.name == "model").detail == "'demo'"


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


def _batch(ctx, model: str, segment: str) -> None:
    with ctx.store.tx() as t:
        batches.add(t, model, kind="examples", source="s", content_hash=segment[-12:], status="accepted",
                    created_at=ctx.now(), created_by="t", segment_path=segment, rows_read=0, rows_accepted=0,
                    rows_quarantined=0, rows_duplicate=0, rows_trainable=0)


def test_the_models_rows_are_checked_and_another_models_files_are_not_stray(ctx, make_ctx, workspace):
    with ctx.store.tx() as t:
        models.add(t, name="other", actor="tester", now=ctx.now(), data_prefix="other")
    other = make_ctx(overrides={"model.name": "other"})
    seg = workspace / ".llctl" / "data" / "other" / "segments" / "examples" / "present.parquet"
    seg.parent.mkdir(parents=True)
    seg.write_bytes(b"PAR1")
    _batch(ctx, "other", str(seg))  # other's file, referenced by other's batch: not stray for demo's doctor
    _batch(ctx, "other", str(seg.with_name("gone.parquet")))  # other's batch whose file is missing
    mine = doctor(ctx)
    assert mine.ok, mine.findings
    assert "the store also holds other" in next(c for c in mine.checks if c.name == "model").detail
    assert "model 'demo': 0 batch(es)" in next(c for c in mine.checks if c.name == "segments").detail
    theirs = doctor(other)
    (f,) = theirs.findings
    assert f.name == "segments" and f.detail.startswith("model 'other': batches [2] have no segment file")


def test_a_model_that_cannot_be_chosen_is_a_finding(ctx, workspace):
    with ctx.store.tx() as t:
        models.add(t, name="other", actor="tester", now=ctx.now(), data_prefix="other")
    (workspace / "llctl.yaml").write_text((workspace / "llctl.yaml").read_text().replace("name: demo", "name: nobody"))
    nobody = AppContext(cwd=workspace, env=dict(ctx.env), actor="t")
    r = doctor(nobody)
    nobody.close()
    (f,) = r.findings
    assert f.name == "model" and "demo, other" in f.detail and "--model" in f.hint
