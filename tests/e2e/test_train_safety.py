"""A running `llctl train`, with the real binary: stop-training ends it within 2 s without a
version, and kill -9 leaves no version and no half-written artifact, after which training works."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lifelong_cli.context import AppContext, utcnow
from lifelong_cli.store import control
from tests.helpers import llctl_bin, run_bin

HEARTBEAT = ["--set", "training.heartbeat_seconds=0.2"]


def _ingest(workspace: Path, env: dict[str, str], path: Path, rows: int, *, start: int, day: int, seed: int) -> int:
    import pyarrow.csv as pcsv

    from lifelong_cli.data.synthetic import batch_table

    pcsv.write_csv(batch_table(start, rows, day=day, seed=seed), path)
    r = run_bin(["ingest", str(path), "--json"], cwd=workspace, env=env)
    assert r.code == 0, r.stdout + r.stderr
    return r.json()["batch"]


def _control(workspace: Path, env: dict[str, str], model: str | None = None) -> control.ControlState:
    ctx = AppContext(cwd=workspace, env=env, actor="tester")
    try:
        with ctx.store.tx(write=False) as t:
            return control.get(t, model or ctx.model)
    finally:
        ctx.close()


def _versions(workspace: Path, env: dict[str, str]) -> dict:
    r = run_bin(["versions", "--json"], cwd=workspace, env=env)
    assert r.code == 0, r.stdout + r.stderr
    return r.json()


@contextmanager
def _training(workspace: Path, env: dict[str, str], *, epochs: int, extra: tuple[str, ...] = (),
              in_loop: bool = True) -> Iterator[subprocess.Popen]:
    """A long `llctl train` in the background; yields once it holds the training lease (from then on
    `status` shows it running) and, with ``in_loop``, is inside the training loop (its first
    heartbeat has renewed the lease)."""
    args = ["--set", f"training.epochs={epochs}", *HEARTBEAT, *extra, "train", "--json"]
    p = subprocess.Popen([llctl_bin(), *args], cwd=workspace, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            st = _control(workspace, env)
            if (st.lease_holder and st.lease_holder.endswith(f" pid {p.pid}")
                    and (not in_loop or st.lease_heartbeat_at > st.lease_acquired_at)):
                break
            time.sleep(0.02)
        assert p.poll() is None, f"train ended before it could be interrupted: {p.communicate()}"
        assert time.monotonic() < deadline, "train did not take the lease (or reach its loop) within 60 s"
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.output = p.communicate(timeout=30)  # (stdout, stderr), for the test to read afterwards


def _objects(workspace: Path) -> dict[str, Path]:
    """Visible (finished) artifact files of the local registry, by name."""
    root = workspace / ".llctl" / "artifacts"
    return {f.name: f for f in root.rglob("*") if f.is_file() and not f.name.endswith(".llctl-tmp")}


@pytest.mark.slow
def test_stop_training_ends_a_running_train_within_2s_without_a_version(tmp_path, workspace, cli_env):
    _ingest(workspace, cli_env, tmp_path / "big.csv", 20_000, start=0, day=1, seed=1)

    with _training(workspace, cli_env, epochs=50) as p:
        stop = run_bin(["stop-training", "--reason", "x", "--json"], cwd=workspace, env=cli_env)
        returned = time.monotonic()
        assert stop.code == 0, stop.stdout + stop.stderr
        p.wait(timeout=30)
        took = time.monotonic() - returned
    out, err = p.output
    print(f"train exited {took:.2f} s after stop-training returned")
    assert took < 2.0, f"train exited {took:.2f} s after stop-training returned"
    assert stop.json()["lease_holder"].endswith(f" pid {p.pid}")  # stop saw the running trainer

    assert p.returncode == 5, out + err
    doc = json.loads(out)["error"]
    assert doc["type"] == "TrainingHaltedError" and doc["exit_code"] == 5
    assert "no version written" in doc["message"] and "tester" in doc["message"] and "(x)" in doc["message"]

    listed = _versions(workspace, cli_env)
    assert (listed["versions"], listed["head"]) == ([], None)
    st = _control(workspace, cli_env)
    assert st.stopped and (st.lease_holder, st.lease_token) == (None, None)
    assert not _objects(workspace), "an artifact of the stopped run"


@pytest.mark.slow
def test_stop_training_just_after_train_takes_the_lease_ends_it_within_2s(tmp_path, workspace, cli_env):
    """From the moment it holds the lease a trainer is running (`status` says so, and stop-training
    tells the engineer it "stops at its next step"): a stop then must not wait for it to import its
    libraries, read and transform the data and start the loop."""
    _ingest(workspace, cli_env, tmp_path / "big.csv", 20_000, start=0, day=1, seed=1)

    with _training(workspace, cli_env, epochs=50, in_loop=False) as p:
        stop = run_bin(["stop-training", "--reason", "x", "--json"], cwd=workspace, env=cli_env)
        returned = time.monotonic()
        assert stop.code == 0, stop.stdout + stop.stderr
        assert stop.json()["lease_holder"].endswith(f" pid {p.pid}")
        p.wait(timeout=60)
        took = time.monotonic() - returned
    out, err = p.output
    print(f"train exited {took:.2f} s after stop-training returned")
    assert p.returncode == 5, out + err
    assert json.loads(out)["error"]["type"] == "TrainingHaltedError"
    assert _versions(workspace, cli_env)["versions"] == []
    assert took < 2.0, f"train exited {took:.2f} s after stop-training returned"


@pytest.mark.slow
def test_kill_9_mid_train_leaves_no_version_and_the_next_train_succeeds(tmp_path, workspace, cli_env):
    ttl = ["--set", "training.lease_ttl_seconds=2"]
    _ingest(workspace, cli_env, tmp_path / "first.csv", 1_000, start=0, day=1, seed=1)
    r = run_bin(["--set", "training.epochs=1", "train", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 0 and r.json()["version"] == 1, r.stdout + r.stderr
    # long enough to be killed mid-run (5k rows x 200 epochs), short enough for the one-epoch retrain after
    big = _ingest(workspace, cli_env, tmp_path / "big.csv", 5_000, start=100_000, day=2, seed=2)
    before_versions = _versions(workspace, cli_env)
    before_objects = _objects(workspace)

    with _training(workspace, cli_env, epochs=200, extra=tuple(ttl)) as p:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL

    # nothing of the killed run is visible: no version, no new or half-written artifact
    assert _versions(workspace, cli_env) == before_versions
    after_objects = _objects(workspace)
    assert set(after_objects) == set(before_objects)
    for name, f in after_objects.items():
        assert hashlib.sha256(f.read_bytes()).hexdigest() == name, f"{f} does not match its content hash"
    dead = _control(workspace, cli_env)
    assert dead.lease_holder.endswith(f" pid {p.pid}")  # it died holding the lease

    # once the dead holder's lease has expired, doctor says so (temp files may be reported too)
    wait = (dead.lease_expires_at - utcnow()).total_seconds() + 0.3
    time.sleep(max(0.0, wait))
    d = run_bin(["doctor", "--json"], cwd=workspace, env=cli_env)
    assert d.code in (0, 3), d.stdout + d.stderr
    checks = {c["name"]: c for c in json.loads(d.stdout)["checks"]}
    assert "expired lease" in checks["training lease"]["detail"]
    findings = [c for c in checks.values() if not c["ok"]]
    assert all("unfinished temp file" in c["detail"] for c in findings), findings

    # and the next train takes the lease over and trains v2 from v1 on the big batch
    r = run_bin(["--set", "training.epochs=1", *ttl, "train", "--json"], cwd=workspace, env=cli_env)
    assert r.code == 0, r.stdout + r.stderr
    doc = r.json()
    assert (doc["status"], doc["version"], doc["parent"], doc["seq_from"], doc["seq_to"]) == \
        ("trained", 2, 1, big, big)
    listed = _versions(workspace, cli_env)
    assert [v["id"] for v in listed["versions"]] == [2, 1] and listed["head"] == 2
    st = _control(workspace, cli_env)
    assert (st.lease_holder, st.lease_token) == (None, None)


@pytest.mark.slow
def test_stop_training_of_one_model_ends_its_train_and_not_the_other_models(tmp_path, workspace, cli_env):
    other = {**cli_env, "LLCTL_MODEL": "other"}
    added = run_bin(["init", str(workspace), "--json"], cwd=tmp_path, env=other)  # a second model, same store
    assert added.code == 0 and added.json()["model_added"], added.stdout + added.stderr
    _ingest(workspace, cli_env, tmp_path / "demo.csv", 20_000, start=0, day=1, seed=1)
    _ingest(workspace, other, tmp_path / "other.csv", 20_000, start=500_000, day=1, seed=2)

    with _training(workspace, other, epochs=50) as theirs, _training(workspace, cli_env, epochs=50) as mine:
        stop = run_bin(["stop-training", "--reason", "demo only", "--json"], cwd=workspace, env=cli_env)
        assert stop.code == 0, stop.stdout + stop.stderr
        assert stop.json()["model"] == "demo" and stop.json()["lease_holder"].endswith(f" pid {mine.pid}")
        mine.wait(timeout=30)
        time.sleep(1.0)  # several of its heartbeats: had it seen a stop, it would be ending now
        assert theirs.poll() is None, "the other model's train ended when demo's training was stopped"
        st = _control(workspace, other)
        assert not st.stopped and st.lease_holder.endswith(f" pid {theirs.pid}")
        assert st.lease_heartbeat_at > st.lease_acquired_at
        stop = run_bin(["stop-training", "--reason", "now other too"], cwd=workspace, env=other)
        assert stop.code == 0 and "other" in stop.stdout, stop.stdout + stop.stderr
        theirs.wait(timeout=30)
    out, err = mine.output
    assert mine.returncode == 5 and "model 'demo'" in json.loads(out)["error"]["message"], out + err
    out, err = theirs.output
    assert theirs.returncode == 5 and "now other too" in json.loads(out)["error"]["message"], out + err
    assert _versions(workspace, cli_env)["versions"] == [] and _versions(workspace, other)["versions"] == []
