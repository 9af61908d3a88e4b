"""validate and golden import: gates with figures and thresholds, a stored verdict, exit 3 on rejection."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pcsv
import pytest

from lifelong_cli.context import AppContext
from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.ops.golden import golden_import
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.purge_data import purge_data
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate
from lifelong_cli.ops.versions import version_show
from tests.conftest import _clean_env
from tests.helpers import run_cli


@pytest.fixture
def fast(workspace, store_url):
    made = []

    def make() -> AppContext:
        c = AppContext(cwd=workspace, env=_clean_env(store_url), actor="t", overrides={"training.epochs": "2"})
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _batch(tmp: Path, n: int, *, flipped: bool = False) -> str:
    """A batch of the synthetic stream; ``flipped``: a broken upstream that inverts every label."""
    import pyarrow as pa
    import pyarrow.compute as pc

    p = tmp / f"b{n}{'x' if flipped else ''}.csv"
    t = batch_table(n * 1000, 1000, day=n, seed=n)
    if flipped:
        t = t.set_column(t.schema.get_field_index("label"), "label",
                         pc.if_else(pc.equal(t["label"], "1"), "0", "1").cast(pa.string()))
    pcsv.write_csv(t, p)
    return str(p)


def gate(r, name):
    return next(g for g in r.gates if g["name"] == name)


def test_first_version_passes_without_baseline_and_verdict_is_stored(fast, tmp_path):
    ctx = fast()
    ingest(ctx, path=_batch(tmp_path, 1))
    v = train(ctx).version
    r = validate(ctx)
    assert r.verdict == "passed" and r.version == v
    assert gate(r, "no regression")["passed"] is None
    assert gate(r, "onnx parity")["passed"] is True
    assert version_show(fast(), version=v).validation["verdict"] == "passed"


def test_version_trained_on_flipped_labels_is_rejected(fast, tmp_path):
    ctx = fast()
    for n in (1, 2):
        ingest(ctx, path=_batch(tmp_path, n))
        train(ctx)
    validate(ctx)
    ingest(ctx, path=_batch(tmp_path, 3, flipped=True))
    train(ctx, epochs=3)
    r = validate(ctx)
    assert r.verdict == "rejected"
    # the flipped batch is not in the golden set (it would vouch for itself); its own hold-out fails
    assert "new data hold-out" in r.failed
    new = gate(r, "new data hold-out")
    assert new["data"]["accuracy"] < new["data"]["golden_accuracy"] - 0.25


def test_corrupted_artifact_fails_integrity_and_cli_exits_3(fast, tmp_path, workspace, cli_env):
    ctx = fast()
    ingest(ctx, path=_batch(tmp_path, 1))
    v = train(ctx).version
    path = Path(version_show(ctx, version=v).version["artifacts"]["onnx"]["uri"])
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    r = run_cli(["validate", str(v), "--json"], cwd=workspace, env=cli_env)
    assert r.code == 3
    doc = r.json()
    assert doc["verdict"] == "rejected" and doc["failed"] == ["integrity"]
    assert "checksum" in doc["gates"][0]["detail"]


def test_golden_import_slices_and_purged_golden_rows_are_left_out(fast, tmp_path):
    ctx = fast()
    ingest(ctx, path=_batch(tmp_path, 1))
    train(ctx)
    g = tmp_path / "golden.csv"
    t = batch_table(90_000, 300, day=9, seed=9)
    import pyarrow as pa

    t = t.append_column("task", pa.array(["old" if i < 150 else "new" for i in range(300)]))
    pcsv.write_csv(t, g)
    gi = golden_import(ctx, path=str(g), slice_by="task")
    assert gi.rows == 300 and gi.slices == {"task=old": 150, "task=new": 150}
    before = validate(ctx).golden_rows
    purge_data(ctx, where="segment = 'a'", reason="pii in golden")
    after = validate(ctx).golden_rows
    assert after < before


def test_dry_run_reports_the_verdict_without_storing_it(fast, tmp_path):
    ctx = fast()
    ingest(ctx, path=_batch(tmp_path, 1))
    v = train(ctx).version
    r = validate(ctx, dry_run=True)
    assert r.verdict == "passed" and "not stored" in r.message
    assert version_show(fast(), version=v).validation is None


def test_verdicts_and_golden_sets_belong_to_their_model(fast, tmp_path, workspace, store_url):
    from lifelong_cli.ops.init import init

    a = fast()
    init(AppContext(cwd=workspace, env={**_clean_env(store_url), "LLCTL_MODEL": "other"}, actor="t"),
         directory=str(workspace))
    b = AppContext(cwd=workspace, env={**_clean_env(store_url), "LLCTL_MODEL": "other"}, actor="t",
                   overrides={"training.epochs": "2"})
    try:
        for ctx in (a, b):
            ingest(ctx, path=_batch(tmp_path, 1))
            assert train(ctx).version == 1
        g = tmp_path / "golden.csv"
        pcsv.write_csv(batch_table(90_000, 300, day=9, seed=9), g)
        golden_import(a, path=str(g))  # a golden set for demo only

        rb = validate(b)
        assert (rb.model, rb.version, rb.verdict) == ("other", 1, "passed") and rb.message.startswith("model 'other'")
        assert version_show(fast(), version=1).validation is None  # demo's v1 is still not validated
        ra = validate(a)
        assert ra.golden_rows == rb.golden_rows + 300
        assert version_show(b, version=1).validation["verdict"] == "passed"
    finally:
        b.close()
