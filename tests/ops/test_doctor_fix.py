"""doctor --fix: removes what interrupted writes left behind (after showing it, audited once), leaves
young files and everything a batch, a golden set or a version refers to, and then doctor passes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lifelong_cli.fsutil import TMP_SUFFIX
from lifelong_cli.ops.doctor import doctor, doctor_fix, find_leftovers
from lifelong_cli.ops.golden import golden_import
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.registry.local import LocalRegistry
from lifelong_cli.store import audit, batches
from tests.helpers import read_all_rows, run_bin
from tests.ops.test_ingest_purge import make_rows, write_csv


def _old(p: Path, seconds: float = 3600) -> Path:
    """Backdate a file's mtime (a leftover of a crash an hour ago)."""
    t = time.time() - seconds
    os.utime(p, (t, t))
    return p


def _leftovers(ws: Path) -> dict[str, Path]:
    seg = ws / ".llctl" / "data" / "segments" / "examples"
    seg.mkdir(parents=True, exist_ok=True)
    spool = ws / ".llctl" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    obj = ws / ".llctl" / "artifacts" / "objects" / "ab"
    obj.mkdir(parents=True, exist_ok=True)
    files = {
        "segment temp": seg / f".0a1b.parquet.x1{TMP_SUFFIX}",
        "orphan segment": seg / "0a1b.parquet",
        "orphan quarantine": ws / ".llctl" / "data" / "quarantine" / "0c2d.parquet",
        "spool temp": spool / f".stdin.x2{TMP_SUFFIX}",
        "registry temp": obj / f".abcd.x3{TMP_SUFFIX}",
    }
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"PAR1 partial")
        _old(p)
    return files


def _fix_entries(ctx) -> list[dict]:
    with ctx.store.tx(write=False) as t:
        return audit.query(t, verb="doctor fix")


def test_fix_removes_old_leftovers_writes_one_audit_entry_and_doctor_then_passes(ctx, workspace):
    files = _leftovers(workspace)
    assert {f.name for f in doctor(ctx).findings} == {"data root", "registry root", "spool", "unreferenced segments"}
    r = doctor_fix(ctx, min_age_seconds=600)
    assert r.ok and not r.dry_run and not r.failed
    assert sorted(x.path for x in r.removed) == sorted(str(p) for p in files.values())
    assert r.bytes_removed == sum(len(b"PAR1 partial") for _ in files)
    assert not any(p.exists() for p in files.values())
    (entry,) = _fix_entries(ctx)
    assert entry["model"] is None and entry["outcome"] == "ok"
    assert sorted(x["path"] for x in entry["detail"]["removed"]) == sorted(str(p) for p in files.values())
    assert entry["detail"]["bytes"] == r.bytes_removed
    assert doctor(ctx).ok


def test_files_younger_than_min_age_are_kept(ctx, workspace):
    files = _leftovers(workspace)
    young = workspace / ".llctl" / "data" / "segments" / "examples" / f".running.parquet.y{TMP_SUFFIX}"
    young.write_bytes(b"being written")
    r = doctor_fix(ctx, min_age_seconds=600)
    assert young.exists() and [x.path for x in r.kept_too_young] == [str(young)]
    assert not any(p.exists() for p in files.values())
    assert not r.ok  # the young temp file is still a finding


def test_dry_run_removes_nothing_and_audits_nothing(ctx, workspace):
    files = _leftovers(workspace)
    r = doctor_fix(ctx, min_age_seconds=0, dry_run=True)
    assert r.dry_run and len(r.removed) == len(files) and not r.ok
    assert all(p.exists() for p in files.values())
    assert _fix_entries(ctx) == []


def test_nothing_to_remove_is_not_audited(ctx):
    r = doctor_fix(ctx, min_age_seconds=0)
    assert r.ok and r.removed == [] and r.message == "nothing to remove"
    assert _fix_entries(ctx) == []


def test_only_the_confirmed_plan_is_removed(ctx, workspace):
    files = _leftovers(workspace)
    plan, _ = find_leftovers(ctx, min_age_seconds=0)
    keep = files["orphan segment"]
    r = doctor_fix(ctx, min_age_seconds=0, only=[x.path for x in plan if x.path != str(keep)])
    assert keep.exists() and str(keep) not in {x.path for x in r.removed}
    assert len(r.removed) == len(files) - 1


def test_negative_min_age_is_a_usage_error(ctx):
    from lifelong_cli.errors import UsageError

    with pytest.raises(UsageError, match="--min-age"):
        doctor_fix(ctx, min_age_seconds=-1)


def test_segments_of_batches_and_golden_sets_and_registry_objects_are_never_removed(ctx, workspace, tmp_path):
    ing = ingest(ctx, path=str(write_csv(tmp_path / "b1.csv", make_rows(0, 200) + [["bad", "x", 1, "y", 0, "", "a"]])),
                 source="s")
    gold = golden_import(ctx, path=str(write_csv(tmp_path / "g.csv", make_rows(5000, 50))))
    obj = LocalRegistry(workspace / ".llctl" / "artifacts").put("model.pt", b"weights of a version")
    with ctx.store.tx(write=False) as t:
        rows = batches.segment_paths(t)
    kept = [Path(p) for b in rows for p in (b["segment_path"], b["quarantine_path"]) if p] + [Path(obj.uri)]
    assert len(kept) >= 4  # examples segment, its quarantine file, the golden segment, the registry object
    for p in kept:
        _old(p)  # as old as any leftover: age alone must not make them removable
    files = _leftovers(workspace)
    before = read_all_rows(workspace, ctx.env).num_rows
    r = doctor_fix(ctx, min_age_seconds=0)
    assert {x.path for x in r.removed} == {str(p) for p in files.values()}
    assert all(p.exists() for p in kept)
    assert read_all_rows(workspace, ctx.env).num_rows == before == ing.rows_accepted
    assert gold.status == "accepted" and r.ok


def test_cli_without_a_terminal_and_without_yes_is_declined(workspace, cli_env):
    files = _leftovers(workspace)
    r = run_bin(["doctor", "--fix", "--min-age", "0s"], cwd=workspace, env=cli_env)
    assert r.code == 8, r.stdout + r.stderr
    assert "to remove: unreferenced segment" in r.stderr and "--yes" in r.stderr
    assert all(p.exists() for p in files.values())
    r = run_bin(["doctor", "--fix", "--yes", "--min-age", "0s", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 0, r.stdout + r.stderr
    doc = r.json()
    assert doc["ok"] and len(doc["removed"]) == len(files)
    assert run_bin(["doctor"], cwd=workspace, env=cli_env).code == 0


def test_cli_min_age_must_be_a_duration_and_fix_flags_need_fix(workspace, cli_env):
    r = run_bin(["doctor", "--fix", "--min-age", "ten"], cwd=workspace, env=cli_env)
    assert r.code == 2 and "--min-age 'ten' is not a duration" in r.stderr
    r = run_bin(["doctor", "--yes"], cwd=workspace, env=cli_env)
    assert r.code == 2 and "go with --fix" in r.stderr


def test_a_snapshot_built_from_a_segment_a_hard_purge_rewrote_is_stale_and_removed(ctx, workspace, tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    ingest(ctx, path=str(write_csv(tmp_path / "b1.csv", make_rows(0, 50))), source="s")
    with ctx.store.tx(write=False) as t:
        (b,) = batches.segment_paths(t)
    snaps = Path(ctx.data_root) / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)

    def snapshot(name: str, path: str) -> Path:
        p = snaps / name
        pq.write_table(pa.table({"example_id": ["k1"]}).replace_schema_metadata(
            {"llctl": json.dumps({"batches": {str(b["id"]): path}})}), p)
        return p

    current = snapshot("holdout-1-current.parquet", b["segment_path"])
    stale = snapshot("holdout-1-stale.parquet", b["segment_path"] + ".before-hard-purge")
    (f,) = doctor(ctx).findings
    assert f.name == "snapshots" and "no longer name" in f.detail and "hard" in f.hint and "--fix" in f.hint
    r = doctor_fix(ctx, min_age_seconds=0)
    assert [(x.path, x.kind) for x in r.removed] == [(str(stale), "stale snapshot")]
    assert current.exists() and not stale.exists() and r.ok
