"""Batches held at ingest before anything trains on them: the label audit (per source and class:
class shares, agreement with the stable version), large drift, replays — and what follows a hold:
train says what it skipped, `check` has an SLO for a hold left too long, `data release
--roll-through` accepts a real shift, the bad-labels playbook rejects the batch (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from lifelong_cli.ops.canary import start as canary_start
from lifelong_cli.ops.check import check
from lifelong_cli.ops.holds import data_holds, data_release
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.push import push
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate
from tests.helpers import run_cli

FAST = {"training.epochs": "3"}
N = 600


def _stream(seed: int = 0, n: int = 12 * N):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=2, n_informative=2, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=2.0, random_state=seed)
    return x, y


X, Y = _stream()


def examples(path, lo: int, hi: int, *, prefix: str = "k", scale: float = 1.0, stuck: float | None = None,
             rows_from: int | None = None) -> str:
    """Examples ``lo``..``hi`` of the stream (features of rows ``rows_from``.. when replaying them)."""
    src = lo if rows_from is None else rows_from
    lines = ["example_id,event_time,label,x1,x2,x3,segment"]
    for i in range(lo, hi):
        j = src + (i - lo)
        x1 = stuck if stuck is not None else X[j, 0] * scale
        lines.append(f"{prefix}{i},2026-11-01T{i % 24:02d}:00:00Z,,{x1:.5f},{X[j, 1]:.5f},,{'abc'[j % 3]}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def labels(path, lo: int, hi: int, *, prefix: str = "k", flip: tuple[int, int, float] | None = None,
           drop_class: int | None = None, invert: bool = False, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = ["example_id,label"]
    for i in range(lo, hi):
        y = int(Y[i])
        if drop_class is not None and y == drop_class:
            continue
        if flip and y == flip[0] and rng.random() < flip[2]:
            y = flip[1]
        if invert:
            y = (y + 1) % 3
        lines.append(f"{prefix}{i},{y}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def ctx(make_ctx, workspace):
    cfg = workspace / "llctl.yaml"  # three classes, for the CLI runs too
    cfg.write_text(cfg.read_text().replace('label_categories: ["0", "1"]', 'label_categories: ["0", "1", "2"]'))
    return make_ctx(overrides=FAST)


def batch(ctx, tmp_path, i: int, source: str, **label_faults):
    """Examples then labels of batch ``i`` from ``source``: the labels batch's ingest result."""
    lo, hi = i * N, (i + 1) * N
    ex = ingest(ctx, path=examples(tmp_path / f"e{i}.csv", lo, hi), source=source)
    assert ex.status == "accepted", ex.message
    return ingest(ctx, path=labels(tmp_path / f"l{i}.csv", lo, hi, seed=i, **label_faults), kind="labels",
                  source=source)


@pytest.fixture
def served(ctx, tmp_path):
    """Four clean batches from two sources, v1 trained, validated and stable."""
    for i in range(4):
        r = batch(ctx, tmp_path, i, "up-a" if i % 2 == 0 else "up-b")
        assert r.status == "accepted", r.message
    v = train(ctx)
    assert v.status == "trained"
    assert validate(ctx, version=v.version).verdict == "passed"
    push(ctx, version=v.version)
    canary_start(ctx, version=v.version)
    return v.version


def test_clean_labels_pass_the_audit_with_its_figures(ctx, served, tmp_path):
    for i in (4, 5, 6, 7):
        r = batch(ctx, tmp_path, i, "up-a" if i % 2 == 0 else "up-b")
        assert r.status == "accepted", r.message
        tests = {t["test"] for t in r.label_audit["tests"]}
        assert tests == {"class shares", "agreement"} and not r.label_audit["failed"]
        assert r.label_audit["reference"]["scope"] == "source"


def test_a_partial_flip_in_one_source_is_held_naming_source_class_and_rates(ctx, served, tmp_path):
    r = batch(ctx, tmp_path, 4, "up-b", flip=(2, 0, 0.3))
    assert r.status == "held" and r.hold["cause"] == "label audit"
    assert r.rows_trainable == 0
    failed = [t for t in r.hold["tests"] if t["test"] == "agreement"]
    assert failed and failed[0]["predicted"] == "2" and failed[0]["top_label"] == "0"
    assert failed[0]["now"] - failed[0]["before"] >= 0.15
    assert r.hold["reason"].startswith("up-b: predicted 2 but labelled 0")
    held = data_holds(ctx).holds
    assert [h["batch"] for h in held] == [r.batch] and held[0]["cause"] == "label audit"
    # what train reads leaves it out, and says so
    t = train(ctx)
    assert any(s.get("batch") == r.batch and "label audit" in s["why"] for s in t.skipped)
    assert f"on hold (label audit: {r.batch})" in t.message


def test_a_full_inversion_and_a_class_no_longer_labelled_are_held(ctx, served, tmp_path):
    inv = batch(ctx, tmp_path, 4, "up-a", invert=True)
    assert inv.status == "held" and inv.hold["cause"] == "label audit"
    gone = batch(ctx, tmp_path, 5, "up-b", drop_class=1)
    assert gone.status == "held"
    shares = next(t for t in gone.label_audit["tests"] if t["test"] == "class shares")
    assert shares["failed"] and shares["class"] == "1" and shares["now"] == 0.0


def test_the_first_labels_of_a_model_are_not_judged(ctx, tmp_path):
    r = batch(ctx, tmp_path, 0, "up-a", invert=True)
    assert r.status == "accepted" and "not_judged" in r.label_audit


def test_label_audit_accept_stores_the_verdict_without_holding(ctx, make_ctx, tmp_path):
    ctx = make_ctx(overrides={**FAST, "data.label_audit.on_fail": "accept"})
    for i in range(4):
        batch(ctx, tmp_path, i, "up-a")
    v = train(ctx)
    validate(ctx, version=v.version)
    push(ctx, version=v.version)
    canary_start(ctx, version=v.version)
    r = batch(ctx, tmp_path, 4, "up-a", invert=True)
    assert r.status == "accepted" and r.label_audit["failed"] and "hold" not in r.label_audit


def test_a_unit_change_is_held_and_roll_through_accepts_the_shift(ctx, served, tmp_path):
    r = ingest(ctx, path=examples(tmp_path / "u.csv", 4 * N, 5 * N, scale=100.0), source="up-a")
    assert r.status == "held" and r.hold["cause"] == "drift" and r.hold["features"] == ["x1"]
    assert "x1: spread ×" in r.hold["reason"]
    rel = data_release(ctx, batch=r.batch, reason="the upstream now sends centimetres", roll_through=True, hours=6)
    assert rel.released_as is not None and rel.roll_through_until is not None
    nxt = ingest(ctx, path=examples(tmp_path / "u2.csv", 5 * N, 6 * N, scale=100.0), source="up-a")
    assert nxt.status == "accepted" and nxt.drift["rolled_through"]
    pol = {p["policy"]: p for p in check(ctx).policies}
    assert pol["drift"]["relaxed_until"] is not None


def test_a_stuck_feature_and_a_replay_are_held(ctx, served, tmp_path):
    stuck = ingest(ctx, path=examples(tmp_path / "s.csv", 4 * N, 5 * N, stuck=0.25), source="up-a")
    assert stuck.status == "held" and stuck.hold["cause"] == "drift" and "stuck" in stuck.hold["reason"]
    replay = ingest(ctx, path=examples(tmp_path / "r.csv", 5 * N, 6 * N, prefix="again-", rows_from=2 * N),
                    source="up-a")
    assert replay.status == "held" and replay.hold["cause"] == "replay"
    assert replay.hold["replayed_share"] == 1.0
    ok = ingest(ctx, path=examples(tmp_path / "c.csv", 6 * N, 7 * N), source="up-a")
    assert ok.status == "accepted" and ok.hold is None


def test_a_dry_run_says_it_would_hold(ctx, served, tmp_path):
    ingest(ctx, path=examples(tmp_path / "e4.csv", 4 * N, 5 * N), source="up-b")
    r = ingest(ctx, path=labels(tmp_path / "l4.csv", 4 * N, 5 * N, invert=True), kind="labels", source="up-b",
               dry_run=True)
    assert r.dry_run and r.hold is not None and "would HOLD" in r.message
    assert data_holds(ctx).holds == []


def test_check_has_an_slo_for_a_hold_left_too_long(make_ctx, served, tmp_path, ctx):
    r = batch(ctx, tmp_path, 4, "up-a", invert=True)
    assert r.status == "held"
    pol = {p["policy"]: p for p in check(ctx).policies}
    assert pol["holds"]["ok"] is True and "1 batch(es) on hold" in pol["holds"]["figure"]
    later = make_ctx(overrides=FAST, clock=lambda: r_time() + timedelta(hours=25))
    res = check(later)
    assert "holds" in res.violated and not res.ok


def r_time():
    from lifelong_cli.context import utcnow

    return utcnow()


def test_the_bad_labels_playbook_rejects_the_held_batch_through_the_cli(ctx, served, tmp_path, workspace, cli_env):
    r = batch(ctx, tmp_path, 4, "up-b", flip=(2, 0, 0.4))
    assert r.status == "held"
    out = run_cli(["playbook", "run", "bad-labels", "--param", f"batch={r.batch}", "--param", "reason=relabel bug",
                   "--param", "canary_timeout=1", "--param", "canary_interval=0.2", "--yes", "--json"],
                  cwd=workspace, env=cli_env)
    doc = json.loads(out.stdout)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["reject"]["status"] == "ok" and steps["stop"]["status"] == "skipped"
    assert data_holds(ctx).holds == []
    holds = run_cli(["data", "holds", "--json"], cwd=workspace, env=cli_env)
    assert json.loads(holds.stdout)["holds"] == []


def test_a_labels_batch_held_through_the_cli_exits_3_with_its_reason(ctx, served, tmp_path, workspace, cli_env):
    ingest(ctx, path=examples(tmp_path / "e4.csv", 4 * N, 5 * N), source="up-b")
    out = run_cli(["ingest", labels(tmp_path / "l4.csv", 4 * N, 5 * N, flip=(2, 0, 0.4)), "--kind", "labels",
                   "--source", "up-b"], cwd=workspace, env=cli_env)
    assert out.code == 3, out.stdout + out.stderr
    assert "HELD" in out.stdout and "up-b: predicted 2 but labelled 0" in out.stdout.replace("\n", " ")


def test_drift_surge_runs_join_one_open_incident(ctx, served, tmp_path):
    from lifelong_cli.ops.incident import list_incidents
    from lifelong_cli.ops.playbook import run as run_playbook

    r = ingest(ctx, path=examples(tmp_path / "u.csv", 4 * N, 5 * N, scale=100.0), source="up-a")
    assert r.status == "held"
    ids = set()
    for _ in range(3):
        res = run_playbook(ctx, name="drift-surge", params={"batch": str(r.batch), "decision": "roll-through"},
                           yes=True)
        ids.add(res.incident)
    assert len(ids) == 1
    assert len([i for i in list_incidents(ctx).incidents if i["closed_at"] is None]) == 1
