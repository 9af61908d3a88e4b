"""The six shipped playbooks, end to end through the CLI (`llctl playbook run NAME --param ... --yes`),
each in the situation it is written for, checking the state it leaves behind. The canary steps run
against a real `llctl serve` subprocess under simulated traffic with feedback.

One workspace is prepared per module (in-process: the training stack is imported once) and copied
for each test: v1 and v2 trained on clean batches 1 and 2, validated and pushed; v1 launched first,
v2 promoted through a canary, so v2 is stable and v1 the last good version before it. Each test
then adds its own trouble (a batch with flipped labels, a drifted batch, a canary, ...)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifelong_cli.context import AppContext
from tests.helpers import copy_workspace, free_port, llctl_bin, run_bin, run_cli

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
TOKEN = "e2e-playbooks-token"
FEATURES = ["x1", "x2", "x3", "segment"]
ROWS = 1500
# A canary judged in a few seconds: 30 requests a side (and at each step), 20 labels, 0.5 s steps.
FAST_CANARY = ["--set", "canary.min_requests=30", "--set", "canary.min_labelled=20",
               "--set", "canary.min_step_seconds=0.5"]
WATCH = ["--param", "canary_interval=0.5", "--param", "canary_timeout=120"]
TINY = "0.0000001"


# -- data -------------------------------------------------------------------------------------------

def _table(start: int, *, day: int, seed: int, flip: bool = False, broken: bool = False, shift: float = 0.0):
    """A synthetic batch (lifelong_cli.data.synthetic); ``shift`` moves x1 and the labels with it: a
    real change in the world (drift that the model can learn), not a broken upstream."""
    import numpy as np
    import pyarrow as pa

    from lifelong_cli.data.synthetic import batch_table

    t = batch_table(start, ROWS, day=day, seed=seed, flip=flip, broken=broken)
    if shift:
        rng = np.random.default_rng(seed + 1000)
        x1 = np.asarray(t["x1"].to_pylist(), float) + shift
        x2 = np.asarray(t["x2"].to_pylist(), float)
        label = ((x1 + 0.5 * x2 + rng.normal(0, 0.5, ROWS)) > 0).astype(int).astype(str)
        t = t.set_column(t.schema.get_field_index("x1"), "x1", pa.array(x1.round(5).astype(str)))
        t = t.set_column(t.schema.get_field_index("label"), "label", pa.array(label))
    return t


def _csv(path: Path, table) -> Path:
    import pyarrow.csv as pcsv

    pcsv.write_csv(table, path)
    return path


@dataclass(frozen=True)
class Prepared:
    ws: Path
    flipped: Path    # batch 3 from a broken labelling pipeline: every label inverted
    clean3: Path     # batch 3, clean
    clean4: Path     # batch 4, clean
    broken: Path     # batch 3 from a broken upstream: x1 in the wrong unit, some text in it
    shifted: Path    # batch 3 after a real change in the world: x1 moved, labels with it
    traffic: Path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "oncall"
    env["LLCTL_ADMIN_TOKEN"] = TOKEN
    return env


def _prepare(base: Path) -> Prepared:
    from lifelong_cli.ops import canary
    from lifelong_cli.ops.ingest import ingest
    from lifelong_cli.ops.init import init
    from lifelong_cli.ops.push import push
    from lifelong_cli.ops.train import train
    from lifelong_cli.ops.validate import validate

    data = base / "data"
    data.mkdir()
    ws = base / "ws"
    init(AppContext(cwd=base, env=_env(), actor="oncall"), directory=str(ws))
    ctx = AppContext(cwd=ws, env=_env(), actor="oncall", overrides={"training.epochs": "2"})
    try:
        for n in (1, 2):
            ingest(ctx, path=str(_csv(data / f"b{n}.csv", _table(n * 10_000, day=n, seed=n))), source="crm")
            assert train(ctx).version == n
            assert validate(ctx, version=n).verdict == "passed"
            push(ctx, version=n)
            canary.start(ctx, version=n)  # v1: first launch; v2: a canary...
        canary.promote(ctx, reason="prepared")  # ...promoted: v2 stable, v1 the last good before it
    finally:
        ctx.close()
    return Prepared(
        ws,
        flipped=_csv(data / "b3-flipped.csv", _table(30_000, day=3, seed=3, flip=True)),
        clean3=_csv(data / "b3.csv", _table(30_000, day=3, seed=3)),
        clean4=_csv(data / "b4.csv", _table(40_000, day=4, seed=4)),
        broken=_csv(data / "b3-broken.csv", _table(30_000, day=3, seed=3, broken=True)),
        shifted=_csv(data / "b3-shifted.csv", _table(30_000, day=3, seed=3, shift=1.5)),
        traffic=_csv(data / "traffic.csv", _table(90_000, day=9, seed=9)),
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Prepared:
    return _prepare(tmp_path_factory.mktemp("playbooks"))


@pytest.fixture
def ws(prepared: Prepared, tmp_path: Path) -> Path:
    return copy_workspace(prepared.ws, tmp_path / "ws")


@pytest.fixture
def env() -> dict[str, str]:
    return _env()


@pytest.fixture
def cli(ws, env):
    """``cli(*args, expect=0)``: the llctl entry point, in this process (the training stack is
    imported once for the module)."""
    def call(*args: str, expect: int | None = 0):
        r = run_cli(list(args), cwd=ws, env=env)
        if expect is not None:
            assert r.code == expect, f"llctl {' '.join(args)} exited {r.code}, not {expect}:\n{r.stdout}\n{r.stderr}"
        return r

    return call


def _rows(ws: Path, env: dict[str, str], sql: str, **params: Any) -> list[dict[str, Any]]:
    ctx = AppContext(cwd=ws, env=env, actor="test")
    try:
        with ctx.store.tx(write=False) as t:
            return t.rows(sql, params, types={"spec": "json", "blast_radius": "json"})
    finally:
        ctx.close()


# -- serving ----------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def predict(self, row: dict[str, Any]) -> dict[str, Any]:
        import httpx

        r = httpx.post(f"{self.url}/v1/predict", json={"row": row}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def serve(tmp_path: Path, env) -> Iterator:
    """``serve(ws)``: a `llctl serve` subprocess on a free port, ready; stopped when the test ends."""
    import httpx

    started: list[Server] = []

    def start(ws: Path) -> Server:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as f:
            proc = subprocess.Popen([llctl_bin(), "--set", "serving.log_flush_ms=200", "serve", "--host", HOST,
                                     "--port", str(port)], cwd=ws, env=env, stdin=subprocess.DEVNULL, stdout=f,
                                    stderr=subprocess.STDOUT)
        srv = Server(proc, f"http://{HOST}:{port}", log)
        started.append(srv)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"llctl serve exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"llctl serve not ready within 60 s: {log.read_text()}"
            try:
                if httpx.get(f"{srv.url}/readyz", timeout=2).status_code == 200:
                    return srv
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    yield start
    for srv in started:
        if srv.proc.poll() is None:
            srv.proc.terminate()
            try:
                srv.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                srv.proc.kill()
                srv.proc.wait(timeout=15)


@contextmanager
def traffic(srv: Server, prepared: Prepared):
    """Simulated users: 4 clients at up to 100 requests/s each, every answer's true label sent back
    as feedback; every request routed on a key of its own, so canary and stable see the same rows."""
    from lifelong_cli.serving.loadgen import Traffic, read_rows

    rows = read_rows(str(prepared.traffic), numeric={"x1", "x2", "x3"})
    t = Traffic(srv.url, rows, features=FEATURES, label="label", threads=4, rate_per_thread=100).start()
    try:
        yield t
    finally:
        tally = t.stop()
    assert tally.ok > 0 and tally.failed == 0, (tally.statuses, tally.errors[:3])


# -- what every playbook run leaves ---------------------------------------------------------------

def _run(cli, name: str, *args: str, flags: tuple[str, ...] | list[str] = (), expect: int = 0) -> dict[str, Any]:
    """`llctl [FLAGS] playbook run NAME ARGS --yes --json`: the run's result."""
    return cli(*flags, "playbook", "run", name, *args, "--yes", "--json", expect=expect).json()


def _statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in doc["steps"]}


def _incident(cli, doc: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The run's incident (open): its notes and the verbs of its linked audit entries."""
    shown = cli("incident", "show", str(doc["incident"]), "--json").json()
    assert shown["incident"]["status"] == "open"
    notes = [e["reason"] for e in shown["timeline"] if e["what"] == "note"]
    verbs = [e["what"] for e in shown["timeline"] if e["what"] != "note"]
    name = doc["playbook"]
    assert notes[0].startswith(f"playbook {name} started")
    for s in doc["steps"]:  # every step that was reached is on the incident's timeline
        if s["message"] != "before --from-step":
            assert any(n.startswith(f"playbook {name} step {s['n']} ({s['name']}: {s['run']}") for n in notes), (s, notes)
    return notes, verbs


def _status(cli) -> dict[str, Any]:
    return cli("status", "--json").json()


def _check(cli, *flags: str, expect: int) -> dict[str, Any]:
    doc = cli(*flags, "check", "--json", expect=expect).json()
    return {p["policy"]: p for p in doc["policies"]}


# -- bad-data ---------------------------------------------------------------------------------------

def test_bad_data_purges_rolls_back_and_releases_a_clean_version(prepared, ws, cli, serve):
    # batch 3: labels inverted upstream, and the label audit told to let them through (as if it missed them)
    cli("--set", "data.label_audit.on_fail=accept", "ingest", str(prepared.flipped), "--source", "labeller")
    assert cli("train", "--json").json()["version"] == 3             # v3 trained on it
    cli("validate", "3", expect=None)                               # (the gates may or may not notice)
    cli("ingest", str(prepared.clean4), "--source", "crm")          # batch 4: the upstream is fixed
    srv = serve(ws)
    with traffic(srv, prepared):
        doc = _run(cli, "bad-data", "--param", "batch=3", "--param", "reason=labels inverted upstream",
                   *WATCH, "--title", "labels inverted in batch 3",
                   flags=FAST_CANARY)
    assert doc["ok"] is True and doc["exit_code"] == 0, doc["message"]
    assert _statuses(doc) == {n: "ok" for n in ("stop", "blast-radius", "rollback", "purge", "resume", "train", "validate",
                                                "push", "canary", "watch")}
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["blast-radius"]["result"]["blast_radius"] == {"affected_versions": [3], "last_clean_version": 2}
    assert steps["rollback"]["args"]["to"] == 2
    assert steps["train"]["result"]["version"] == 4 and steps["train"]["result"]["parent"] == 2
    assert steps["watch"]["result"]["state"] == "promoted"

    st = _status(cli)
    assert st["serving"]["stable_version"] == 4 and st["serving"]["canary_version"] is None
    assert st["training"]["head_version"] == 4 and st["training"]["stopped"] is False
    assert st["data"]["active_purge_rules"] == 1 and st["serving"]["fallback"] is False
    (rule,) = _rows(ws, _env(), "SELECT spec, active, reason FROM purge_rules")
    assert rule["spec"] == {"batch": 3} and rule["active"] and rule["reason"] == "labels inverted upstream"
    # neither stable nor the training head trained on batch 3: its blast radius is v3 alone
    radius = cli("purge-data", "--batch", "3", "--reason", "check", "--dry-run", "--json").json()
    assert radius["blast_radius"]["affected_versions"] == [3] and radius["rows_affected"] == 0
    assert radius["rows_already_hidden"] > 0
    (v4,) = _rows(ws, _env(), "SELECT parent_id, promoted_at FROM model_versions WHERE id = 4")
    assert v4["parent_id"] == 2 and v4["promoted_at"] is not None

    notes, verbs = _incident(cli, doc)
    assert notes[-1] == "playbook bad-data finished: 10 step(s) ok"
    for verb in ("incident open", "stop-training", "rollback", "purge-data", "resume", "validate", "push", "canary start",
                 "canary step", "canary promote"):
        assert verb in verbs, (verb, verbs)
    shown = cli("incident", "show", str(doc["incident"]), "--json").json()["incident"]
    assert shown["title"] == "labels inverted in batch 3"


# -- model-explosion ------------------------------------------------------------------------------

def test_model_explosion_falls_back_rolls_back_and_stops_training(ws, cli, serve):
    srv = serve(ws)
    assert srv.predict({"x1": 0.3, "x2": -1.2, "x3": None, "segment": "b"})["version"] == 2
    doc = _run(cli, "model-explosion", "--param", "reason=v2 answers NaN")
    assert doc["ok"] is True, doc["message"]
    assert _statuses(doc) == {"fallback": "ok", "rollback": "ok", "stop": "ok"}
    st = _status(cli)
    assert st["serving"]["fallback"] is True and st["serving"]["fallback_strategy"] == "majority"
    assert st["serving"]["stable_version"] == 1 and st["training"]["head_version"] == 1   # the last good
    assert st["training"]["stopped"] is True and st["training"]["stop_reason"] == "v2 answers NaN"
    (v2,) = _rows(ws, _env(), "SELECT demoted_at, demoted_reason FROM model_versions WHERE id = 2")
    assert v2["demoted_at"] is not None and "v2 answers NaN" in v2["demoted_reason"]
    assert srv.predict({"x1": 0.3, "x2": -1.2, "x3": None, "segment": "b"})["variant"] == "fallback"
    _, verbs = _incident(cli, doc)
    assert verbs == ["incident open", "fallback", "rollback", "stop-training"]


# -- bad-launch ---------------------------------------------------------------------------------------

def _launch_v3(prepared, cli) -> None:
    cli("ingest", str(prepared.clean3), "--source", "crm")
    assert cli("train", "--json").json()["version"] == 3
    cli("validate", "3")
    cli("push", "3")
    cli("canary", "start", "3")


def test_bad_launch_aborts_a_running_canary_and_keeps_the_last_good_stable(prepared, ws, cli, env):
    _launch_v3(prepared, cli)
    assert _status(cli)["serving"]["canary_version"] == 3
    r = run_bin(["playbook", "run", "bad-launch", "--param", "reason=v3 slow", "--yes", "--json"], cwd=ws, env=env)
    assert r.code == 0, r.stdout + r.stderr
    doc = r.json()
    assert _statuses(doc) == {"abort": "ok", "rollback": "skipped"}
    st = _status(cli)["serving"]
    assert st["canary_version"] is None and st["canary_state"] == "aborted"
    assert st["stable_version"] == 2  # the last good: not rolled back past it
    (v2,) = _rows(ws, env, "SELECT demoted_at FROM model_versions WHERE id = 2")
    assert v2["demoted_at"] is None
    (abort,) = cli("audit", "--verb", "canary abort", "--json").json()["entries"]
    assert abort["reason"] == "v3 slow" and abort["args"]["version"] == 3
    _, verbs = _incident(cli, doc)
    assert verbs == ["incident open", "canary abort"]


def test_bad_launch_rolls_back_a_version_already_promoted(prepared, ws, cli):
    _launch_v3(prepared, cli)
    cli("canary", "promote")
    assert _status(cli)["serving"]["stable_version"] == 3
    doc = _run(cli, "bad-launch", "--param", "reason=v3 errors after promotion")
    assert doc["ok"] is True and _statuses(doc) == {"abort": "ok", "rollback": "ok"}
    st = _status(cli)
    assert st["serving"]["stable_version"] == 2 and st["training"]["head_version"] == 3  # serving only
    (v3,) = _rows(ws, _env(), "SELECT demoted_at FROM model_versions WHERE id = 3")
    assert v3["demoted_at"] is not None
    _, verbs = _incident(cli, doc)
    assert verbs == ["incident open", "rollback"]


# -- roll-through ---------------------------------------------------------------------------------------

def test_roll_through_relaxes_drift_and_releases_a_version_trained_on_the_new_world(prepared, ws, cli, serve):
    drift_counts = ["--set", "slo.max_drifted_batches=1"]
    r = cli("ingest", str(prepared.shifted), "--source", "crm", "--json", expect=3).json()  # held for its drift
    assert r["status"] == "held" and r["drift"]["drifted"] is True and "x1" in r["drift"]["drifted_features"]
    assert _check(cli, *drift_counts, expect=3)["drift"]["violated"] is True
    srv = serve(ws)
    with traffic(srv, prepared):
        doc = _run(cli, "roll-through", "--param", "batch=3", "--param", "reason=holiday sale", "--param", "hours=12",
                   *WATCH, flags=FAST_CANARY)
    assert doc["ok"] is True, doc["message"]
    assert _statuses(doc) == {"release": "ok", "relax-drift": "skipped", "resume": "skipped", "train": "ok",
                              "validate": "ok", "push": "ok", "canary": "ok", "watch": "ok"}
    st = _status(cli)
    assert st["serving"]["stable_version"] == 3 and st["training"]["head_version"] == 3
    assert st["training"]["stopped"] is False and st["data"]["active_purge_rules"] == 0
    drift = _check(cli, *drift_counts, expect=0)["drift"]
    assert drift["ok"] is False and drift["violated"] is False and drift["relaxed_until"]
    (relax,) = cli("audit", "--verb", "slo relax", "--json").json()["entries"]
    assert relax["reason"] == "holiday sale" and relax["args"] == {"policy": "drift", "hours": 12.0}
    _, verbs = _incident(cli, doc)
    assert "slo relax" in verbs and "canary promote" in verbs and "stop-training" not in verbs


# -- drift-surge -------------------------------------------------------------------------------------

def test_drift_surge_purge_removes_the_broken_batch(prepared, ws, cli):
    drift_counts = ["--set", "slo.max_drifted_batches=1"]
    r = cli("ingest", str(prepared.broken), "--source", "crm", "--json", expect=3).json()
    assert r["batch"] == 3 and r["status"] == "held" and r["drift"]["drifted"] is True
    assert _check(cli, *drift_counts, expect=3)["drift"]["violated"] is True
    doc = _run(cli, "drift-surge", "--param", "batch=3", "--param", "decision=purge", "--param", "reason=x1 in cm")
    assert doc["ok"] is True, doc["message"]
    assert _statuses(doc) == {"report": "ok", "roll-through": "skipped", "stop": "ok", "reject": "ok", "purge": "ok",
                              "resume": "ok", "train": "ok", "validate": "skipped"}
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["report"]["result"]["drifted"] is True
    assert steps["train"]["result"]["status"] == "nothing-new"  # batch 3 was all that was new
    st = _status(cli)
    assert st["training"]["stopped"] is False and st["training"]["versions"] == 2
    assert st["data"]["active_purge_rules"] == 1 and st["drift"]["purged"] is True
    assert _check(cli, *drift_counts, expect=0)["drift"]["ok"] is True  # a purged batch does not count
    assert cli("audit", "--verb", "slo relax", "--json").json()["entries"] == []
    _, verbs = _incident(cli, doc)
    assert {"stop-training", "purge-data", "resume"} <= set(verbs)


def test_drift_surge_roll_through_keeps_the_batch_and_trains_on_it(prepared, ws, cli):
    drift_counts = ["--set", "slo.max_drifted_batches=1"]
    held = cli("ingest", str(prepared.shifted), "--source", "crm", "--json", expect=3).json()
    assert held["status"] == "held" and held["drift"]["drifted"] is True
    doc = _run(cli, "drift-surge", "--param", "batch=3", "--param", "decision=roll-through", "--param", "hours=6")
    assert doc["ok"] is True, doc["message"]
    assert _statuses(doc) == {"report": "ok", "roll-through": "ok", "stop": "skipped", "reject": "skipped",
                              "purge": "skipped", "resume": "skipped", "train": "ok", "validate": "ok"}
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["train"]["result"]["version"] == 3 and steps["validate"]["result"]["verdict"] == "passed"
    st = _status(cli)
    assert st["data"]["active_purge_rules"] == 0 and st["training"]["head_version"] == 3
    assert st["serving"]["stable_version"] == 2  # drift-surge trains and validates; releasing is separate
    drift = _check(cli, *drift_counts, expect=0)["drift"]
    assert drift["violated"] is False and drift["relaxed_until"]
    _, verbs = _incident(cli, doc)
    assert "slo relax" in verbs and "purge-data" not in verbs and "stop-training" not in verbs


# -- stale-model -------------------------------------------------------------------------------------

def test_stale_model_resumes_training_and_releases_a_new_version(prepared, ws, cli, serve):
    cli("stop-training", "--reason", "upstream maintenance")
    cli("ingest", str(prepared.clean3), "--source", "crm")
    stale = ["--set", f"slo.max_staleness_hours={TINY}"]
    assert _check(cli, *stale, expect=3)["staleness"]["violated"] is True
    srv = serve(ws)
    with traffic(srv, prepared):
        doc = _run(cli, "stale-model", *WATCH, flags=[*stale, *FAST_CANARY])
    assert doc["ok"] is True, doc["message"]
    assert _statuses(doc) == {"why": "ok", "slo": "ok", "resume": "ok", "train": "ok", "validate": "ok", "push": "ok",
                              "canary": "ok", "watch": "ok"}
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["why"]["result"]["training"]["stopped"] is True
    assert "staleness" in steps["slo"]["result"]["violated"]
    st = _status(cli)
    assert st["training"]["stopped"] is False and st["serving"]["stable_version"] == 3
    assert st["serving"]["fallback"] is False
    _, verbs = _incident(cli, doc)
    assert {"resume", "validate", "push", "canary start", "canary promote"} <= set(verbs)


def test_stale_model_with_nothing_new_falls_back_and_fails(ws, cli):
    doc = _run(cli, "stale-model", expect=3)
    assert doc["ok"] is False and doc["exit_code"] == 3
    assert [(s["name"], s["status"]) for s in doc["steps"]] == [
        ("why", "ok"), ("slo", "ok"), ("resume", "skipped"), ("train", "check-failed"), ("fallback", "ok")]
    assert doc["steps"][-1]["recovery"] is True
    assert doc["resume_from"] == 4 and "--from-step 4" in doc["next"]
    assert "result.status is 'nothing-new', expected == 'trained'" in doc["message"]
    st = _status(cli)
    assert st["serving"]["fallback"] is True and st["serving"]["stable_version"] == 2
    assert st["training"]["versions"] == 2
    notes, verbs = _incident(cli, doc)
    assert verbs == ["incident open", "fallback"]
    assert any("step 4 (train: train): check failed" in n for n in notes)
    assert notes[-1].startswith("playbook stale-model stopped at step 4 (train)")
    (fb,) = cli("audit", "--verb", "fallback", "--json").json()["entries"]
    assert fb["reason"] == "stale model and no new version: stale model"
