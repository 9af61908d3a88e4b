"""Every delivery of a label is kept; one rule decides the effective label; purging a relabel
restores the labels it replaced; counts agree with what train reads (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from lifelong_cli.data import reader as rd
from lifelong_cli.errors import NotFoundError
from lifelong_cli.ops.holds import data_holds, data_reject, data_release
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.labels import labels_show
from lifelong_cli.ops.purge_data import purge_data, undo_purge
from lifelong_cli.ops.status import status
from lifelong_cli.ops.train import train
from tests.helpers import run_cli
from tests.ops.test_ingest_purge import make_rows, read, write_csv

N = 400


def labels_file(path, keys, label_of):
    path.write_text("example_id,label\n" + "".join(f"{k},{label_of(k)}\n" for k in keys))
    return str(path)


def first(k: str) -> int:
    return int(k[1:]) % 2


def relabelled(k: str) -> int:
    i = int(k[1:])
    return 1 - first(k) if i % 4 == 0 else first(k)  # a quarter of the labels changed


class Released:
    def __init__(self, decision):
        self.batch, self.rows_trainable, self.rows_holdout = (decision.released_as, decision.rows_trainable,
                                                               decision.rows_holdout)
        self.labels_changed, self.redelivery_of = 0, None


@pytest.fixture
def stream(ctx, tmp_path):
    """N unlabelled examples, then labels L1, then a re-delivery L2 with a quarter of them changed:
    held (it contradicts the labels in use), then released (the relabel was right)."""
    keys = [f"k{i}" for i in range(N)]
    ex = ingest(ctx, path=str(write_csv(tmp_path / "e.csv", make_rows(0, N, labelled=False))))
    l1 = ingest(ctx, path=labels_file(tmp_path / "l1.csv", keys, first), kind="labels", source="labeller")
    held = ingest(ctx, path=labels_file(tmp_path / "l2.csv", keys, relabelled), kind="labels", source="relabeller")
    assert held.status == "held"
    return keys, ex, l1, Released(data_release(ctx, batch=held.batch, reason="the relabel is right"))


def labels_now(ctx) -> dict[str, str]:
    t = read(ctx, holdout="include")
    return dict(zip(t["example_id"].to_pylist(), t["label"].to_pylist(), strict=True))


def test_the_newest_delivery_wins_and_a_purge_of_it_restores_the_one_before(ctx, stream):
    keys, ex, l1, l2 = stream
    assert l2.labels_changed == 0 and l2.redelivery_of is None
    now = labels_now(ctx)
    assert all(now[k] == str(relabelled(k)) for k in keys)
    assert l2.rows_trainable + l2.rows_holdout == N  # every example now uses L2's label

    p = purge_data(ctx, batch=l2.batch, reason="relabel was wrong")
    assert p.rows_affected == N and p.rows_relabelled == N and p.batches_affected == [l2.batch]
    now = labels_now(ctx)
    assert len(now) == N and all(now[k] == str(first(k)) for k in keys)  # L1 again: nothing hidden
    h = labels_show(ctx, key="k4")
    assert (h.effective, h.effective_batch) == ("0", l1.batch)
    assert [(d["batch"], d["status"]) for d in h.deliveries] == [
        (ex.batch, "no label"), (l1.batch, "in use"), (l2.batch, f"dropped by purge rule {p.rule}")]

    undo_purge(ctx, rule_id=p.rule, reason="it was right after all")
    assert all(labels_now(ctx)[k] == str(relabelled(k)) for k in keys)


def test_purging_the_delivery_not_in_use_changes_nothing_and_reingesting_it_restores_it(ctx, stream, tmp_path):
    keys, ex, l1, l2 = stream
    p = purge_data(ctx, batch=l1.batch, reason="old labels", dry_run=True)
    assert p.rows_affected == 0  # L2 is in use for every example: dropping L1 changes no label
    again = ingest(ctx, path=labels_file(tmp_path / "l1.csv", keys, first), kind="labels", source="labeller")
    assert again.status == "accepted" and again.redelivery_of == l1.batch
    assert again.labels_changed == N // 4  # the quarter of the examples whose label L2 changed
    assert again.rows_trainable + again.rows_holdout == N
    assert all(labels_now(ctx)[k] == str(first(k)) for k in keys)
    h = labels_show(ctx, key="k8")
    assert [d["status"] for d in h.deliveries] == ["no label", f"replaced by batch {again.batch}",
                                                   f"replaced by batch {again.batch}", "in use"]
    assert labels_show(ctx, key="k1").effective_batch == again.batch
    # the same file once more: its labels are the ones in use now, so it is a duplicate
    third = ingest(ctx, path=labels_file(tmp_path / "l1.csv", keys, first), kind="labels", source="labeller")
    assert third.status == "duplicate" and third.batch == l1.batch


def test_a_labels_only_source_purge_drops_its_deliveries(ctx, stream):
    keys, ex, l1, l2 = stream
    p = purge_data(ctx, source="relabeller", reason="that upstream is broken")
    assert p.rows_relabelled == N
    assert all(labels_now(ctx)[k] == str(first(k)) for k in keys)


def test_a_purge_with_a_condition_drops_only_the_matching_deliveries(ctx, stream):
    keys, ex, l1, l2 = stream
    p = purge_data(ctx, batch=l2.batch, where="segment == 'a'", reason="the relabel of segment a only")
    seg_a = {f"k{i}" for i in range(N) if i % 3 == 0}
    assert p.rows_affected == len(seg_a)
    now = labels_now(ctx)
    assert all(now[k] == str(first(k) if k in seg_a else relabelled(k)) for k in keys)


def test_hard_purge_of_a_relabel_removes_its_rows_and_keeps_the_examples(ctx, stream):
    keys, ex, l1, l2 = stream
    p = purge_data(ctx, batch=l2.batch, reason="remove the relabel", hard=True)
    assert l2.batch in p.segments_rewritten and ex.batch not in p.segments_rewritten
    assert all(labels_now(ctx)[k] == str(first(k)) for k in keys)
    h = labels_show(ctx, key="k4")
    assert [d["batch"] for d in h.deliveries] == [ex.batch, l1.batch]  # L2's row is gone from its segment


def test_labels_of_purged_examples_are_not_counted_trainable_and_train_agrees(ctx, tmp_path):
    ex = ingest(ctx, path=str(write_csv(tmp_path / "e.csv", make_rows(0, N, labelled=False))))
    purge_data(ctx, batch=ex.batch, reason="bad examples")
    lab = ingest(ctx, path=labels_file(tmp_path / "l.csv", [f"k{i}" for i in range(N)], first), kind="labels")
    assert (lab.rows_trainable, lab.rows_holdout, lab.labels_waiting) == (0, 0, 0)
    ex2 = ingest(ctx, path=str(write_csv(tmp_path / "e2.csv", make_rows(N, N))))
    r = train(ctx)
    assert r.rows_new == ex2.rows_trainable  # what ingest said is what train read


def test_labels_show_through_the_cli(ctx, stream, workspace, cli_env):
    keys, ex, l1, l2 = stream
    r = run_cli(["labels", "show", "k4", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["effective"] == "1" and doc["effective_batch"] == l2.batch
    assert [d["source"] for d in doc["deliveries"]] == ["default", "labeller", "relabeller"]
    human = run_cli(["labels", "show", "k4"], cwd=workspace, env=cli_env)
    assert human.code == 0 and "in use" in human.stdout and "replaced" in human.stdout
    missing = run_cli(["labels", "show", "nope"], cwd=workspace, env=cli_env)
    assert missing.code == 4 and "no example or label with key 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    with pytest.raises(NotFoundError):
        labels_show(ctx, key="nope")
    assert pc.sum(read(ctx, holdout="include")[rd.LABEL_BATCH].is_valid()).as_py() == N


def test_a_relabel_that_contradicts_the_labels_in_use_is_held_until_released(ctx, tmp_path, workspace, cli_env):
    keys = [f"k{i}" for i in range(N)]
    ingest(ctx, path=str(write_csv(tmp_path / "e.csv", make_rows(0, N, labelled=False))))
    l1 = ingest(ctx, path=labels_file(tmp_path / "l1.csv", keys, first), kind="labels", source="labeller")
    assert l1.status == "accepted"  # labels for unlabelled examples contradict nothing
    r = run_cli(["ingest", labels_file(tmp_path / "l2.csv", keys, relabelled), "--kind", "labels", "--source", "up-b",
                 "--json"], cwd=workspace, env=cli_env)
    assert r.code == 3, r.stderr  # a check said no: stored, not trainable
    doc = json.loads(r.stdout)
    assert doc["status"] == "held" and "changes 100 of the 400 labels in use" in doc["message"]
    assert all(labels_now(ctx)[k] == str(first(k)) for k in keys)  # nothing of it is read
    held = data_holds(ctx).holds
    assert [(h["batch"], h["cause"], h["changed"], h["compared"]) for h in held] == [(doc["batch"], "label conflict", 100, 400)]
    assert status(ctx).data["batches_held"] == 1
    h = labels_show(ctx, key="k0")
    assert [d["status"] for d in h.deliveries][-1] == "on hold: label conflict" and h.effective == "0"
    again = ingest(ctx, path=labels_file(tmp_path / "l2.csv", keys, relabelled), kind="labels", source="up-b")
    assert again.status == "duplicate" and again.batch == doc["batch"]  # re-ingesting a held file changes nothing
    with pytest.raises(Exception, match="--reason is required"):
        data_release(ctx, batch=doc["batch"], reason="")
    d = data_release(ctx, batch=doc["batch"], reason="upstream confirmed")
    assert d.changed and d.released_as > doc["batch"] and d.rows_trainable + d.rows_holdout == N
    assert all(labels_now(ctx)[k] == str(relabelled(k)) for k in keys)  # the released labels win
    assert data_release(ctx, batch=doc["batch"], reason="twice").changed is False  # idempotent
    assert data_holds(ctx).holds == []


def test_a_rejected_hold_is_kept_and_never_read(ctx, tmp_path):
    keys = [f"k{i}" for i in range(N)]
    ingest(ctx, path=str(write_csv(tmp_path / "e.csv", make_rows(0, N, labelled=False))))
    ingest(ctx, path=labels_file(tmp_path / "l1.csv", keys, first), kind="labels")
    held = ingest(ctx, path=labels_file(tmp_path / "l2.csv", keys, lambda k: 1 - first(k)), kind="labels")
    assert held.status == "held" and held.rows_trainable == 0
    d = data_reject(ctx, batch=held.batch, reason="inverted labels")
    assert d.decision == "rejected" and d.released_as is None
    assert all(labels_now(ctx)[k] == str(first(k)) for k in keys)
    assert data_holds(ctx).holds == [] and status(ctx).data["batches_held"] == 0
