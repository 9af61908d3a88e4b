"""The release plane end to end: real `llctl serve` replicas (subprocesses) answering real HTTP,
driven by the real binary — push, canary start/step/watch/promote/abort, rollback, fallback — under
simulated traffic with feedback (lifelong_cli.serving.loadgen).

One workspace is prepared per module (in-process, to pay the training stack's import once) and
copied for each test: v1 stable (first launch); v2 trained on more clean data and validated; v3
trained on a batch with flipped labels (validate rejects it); v4 = v2 with a NaN weight (every
answer is non-finite: the replica answers 500); v5 = v2 with extra input-dependent compute whose
result is multiplied by zero (same answers, several times the latency). v4 and v5 are put in the
local registry and given a version row and a 'passed' verdict by hand, as a broken exporter would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lifelong_cli.context import AppContext
from tests.helpers import copy_workspace, free_port, llctl_bin, run_bin, run_cli

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
TOKEN = "e2e-admin-token"
FEATURES = ["x1", "x2", "x3", "segment"]
NUMERIC = {"x1", "x2", "x3"}
# Small windows so a canary is judged in seconds: 50 requests a side (and at the step), 30 labels, 1 s steps.
FAST_CANARY = ["--set", "canary.min_requests=50", "--set", "canary.min_step_seconds=1",
               "--set", "canary.min_labelled=30"]
# Canary traffic is paced (4 x 50 requests/s) so the replica is not saturated: its latency figure then
# measures the model, not how busy a 2-core machine was during one step or another.
CANARY_RATE = 50.0
GOOD_ROW = {"x1": 0.3, "x2": -1.2, "x3": None, "segment": "b"}


# -- the prepared workspace ---------------------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    ws: Path
    traffic_csv: Path
    good: int = 2      # trained on more clean data, validated
    flipped: int = 3   # trained on flipped labels, rejected by validate
    nan: int = 4       # outputs NaN
    slow: int = 5      # same outputs, much slower


def _env(store_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "tester"
    if store_url:
        env["LLCTL_STORE__URL"] = store_url
    return env


def _write_batch(path: Path, start: int, *, day: int, seed: int, rows: int = 2000, flip: bool = False) -> Path:
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from lifelong_cli.data.synthetic import batch_table

    t = batch_table(start, rows, day=day, seed=seed)
    if flip:  # a broken labelling upstream: every label is the other class
        i = t.schema.get_field_index("label")
        t = t.set_column(i, "label", pc.if_else(pc.equal(t["label"], "1"), "0", "1"))
    pcsv.write_csv(t, path)
    return path


def _cli(ws: Path, env: dict[str, str], *args: str, expect: int = 0):
    r = run_cli(list(args), cwd=ws, env=env)
    assert r.code == expect, f"llctl {' '.join(args)} exited {r.code}: {r.stdout}{r.stderr}"
    return r


def _version(ws: Path, env: dict[str, str], version: int, model: str | None = None) -> dict[str, Any]:
    from lifelong_cli.store import versions

    ctx = AppContext(cwd=ws, env=env, actor="tester")
    try:
        with ctx.store.tx(write=False) as t:
            return versions.require(t, model or ctx.model, version)
    finally:
        ctx.close()


def _copy_version(ws: Path, env: dict[str, str], base: int, *, note: str, onnx_bytes: bytes | None = None,
                  model: str | None = None, pushed: bool = False) -> int:
    """A new version of ``model`` (default: the workspace's) whose artifacts are the workspace model's
    ``base``'s — with the ONNX model replaced by ``onnx_bytes``, put through the local registry — and a
    'passed' verdict (as if validation had been fooled)."""
    from lifelong_cli.registry.local import LocalRegistry
    from lifelong_cli.store import versions

    ctx = AppContext(cwd=ws, env=env, actor="tester")
    try:
        row = _version(ws, env, base)
        artifacts = dict(row["artifacts"])
        if onnx_bytes is not None:
            artifacts["onnx"] = LocalRegistry(Path(ctx.registry_root)).put("onnx", onnx_bytes).to_dict()
        model = model or ctx.model
        with ctx.store.tx() as t:
            v = versions.add(t, model, parent_id=base if model == ctx.model else None, created_at=ctx.now(),
                             created_by="tester", strategy=row["strategy"], seq_from=row["seq_from"],
                             seq_to=row["seq_to"], watermark=row["watermark"], rows_trained=row["rows_trained"],
                             config_hash=row["config_hash"], lineage={**row["lineage"], "note": note},
                             metrics=row["metrics"], artifacts=artifacts)
            versions.record_verdict(t, model, v, now=ctx.now(), actor="tester", verdict="passed", gates=[])
            if pushed:
                versions.mark_pushed(t, model, v, now=ctx.now(), actor="tester", forced=False)
        return v
    finally:
        ctx.close()


def _register(ws: Path, env: dict[str, str], base: int, onnx_bytes: bytes, note: str) -> int:
    return _copy_version(ws, env, base, note=note, onnx_bytes=onnx_bytes)


def _onnx_of(ws: Path, env: dict[str, str], version: int):
    import onnx

    return onnx.load_from_string(Path(_version(ws, env, version)["artifacts"]["onnx"]["uri"]).read_bytes())


def _with_nan_weight(model):
    """The last layer's bias set to NaN: every score is NaN."""
    import numpy as np
    from onnx import numpy_helper

    last_gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    for i, init in enumerate(model.graph.initializer):
        if init.name == last_gemm.input[2]:
            nan = np.full(numpy_helper.to_array(init).shape, np.nan, dtype=np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(nan, init.name))
            return model
    raise AssertionError("no bias initializer on the last Gemm")


def _with_slow_path(model, *, rows: int = 256, width: int = 1024, matmuls: int = 6):
    """Add input-dependent work whose result is multiplied by 0 and added to the scores: the answers
    are unchanged, each request costs ``matmuls`` x [rows, width] @ [width, width] more."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    out = g.output[0].name
    producer = next(n for n in g.node if out in n.output)
    producer.output[list(producer.output).index(out)] = "slow_scores_in"
    g.initializer.extend([
        numpy_helper.from_array(np.full((width, width), 1.0 / width, np.float32), "slow_w"),
        numpy_helper.from_array(np.array([rows, width], np.int64), "slow_shape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "slow_zero"),
    ])
    nodes = [helper.make_node("IsNaN", ["x1"], ["slow_isnan"]),
             helper.make_node("Where", ["slow_isnan", "slow_zero", "x1"], ["slow_x"]),
             helper.make_node("ReduceSum", ["slow_x"], ["slow_s"], keepdims=1),
             helper.make_node("Expand", ["slow_s", "slow_shape"], ["slow_0"])]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"slow_{i}", "slow_w"], [f"slow_{i + 1}"]))
    nodes += [helper.make_node("ReduceSum", [f"slow_{matmuls}"], ["slow_sum"], keepdims=1),
              helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nil"]),
              helper.make_node("Add", ["slow_scores_in", "slow_nil"], [out])]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def _prepare(base: Path) -> Prepared:
    from lifelong_cli.ops.init import init

    data = base / "data"
    data.mkdir()
    ws = base / "ws"
    env = _env()
    ctx = AppContext(cwd=base, env=env, actor="tester")
    init(ctx, directory=str(ws))
    ctx.close()
    # fixed passes at the full learning rate: v3 learns its flipped labels as a broken upstream's
    # model would (the shipped defaults' gentler continued training would blur the canary it makes)
    fit = ["--set", "training.epochs=2", "--set", "training.continued_lr_factor=1.0"]
    _cli(ws, env, "ingest", str(_write_batch(data / "b1.csv", 0, day=1, seed=11)), "--source", "crm")
    _cli(ws, env, *fit, "train")
    _cli(ws, env, "validate", "1")
    _cli(ws, env, "push", "1")
    _cli(ws, env, "canary", "start", "1")  # first launch: v1 stable
    _cli(ws, env, "ingest", str(_write_batch(data / "b2.csv", 2000, day=2, seed=12)), "--source", "crm")
    _cli(ws, env, *fit, "train")
    _cli(ws, env, "validate", "2")
    # the label audit would hold this batch at ingest; let it through, to make the model a broken upstream would
    _cli(ws, env, "--set", "data.label_audit.on_fail=accept", "ingest",
         str(_write_batch(data / "b3.csv", 4000, day=3, seed=13, flip=True)), "--source", "crm")
    _cli(ws, env, *fit, "--set", "training.strategy=naive", "train")
    _cli(ws, env, "validate", "3", expect=3)
    p = Prepared(ws, _write_batch(data / "traffic.csv", 100_000, day=4, seed=14))
    assert _register(ws, env, p.good, _with_nan_weight(_onnx_of(ws, env, p.good)).SerializeToString(), "nan") == p.nan
    assert _register(ws, env, p.good, _with_slow_path(_onnx_of(ws, env, p.good)).SerializeToString(), "slow") == p.slow
    return p


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Prepared:
    return _prepare(tmp_path_factory.mktemp("release"))


@pytest.fixture
def ws(prepared: Prepared, tmp_path: Path) -> Path:
    return copy_workspace(prepared.ws, tmp_path / "ws")


@pytest.fixture
def env() -> dict[str, str]:
    e = _env()
    e["LLCTL_ADMIN_TOKEN"] = TOKEN
    return e


@pytest.fixture(scope="module")
def rows(prepared: Prepared) -> list[dict[str, Any]]:
    from lifelong_cli.serving.loadgen import read_rows

    return read_rows(str(prepared.traffic_csv), numeric=NUMERIC)


# -- replicas -----------------------------------------------------------------------------------

@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    replica: str
    log: Path

    def get(self, path: str, **kw):
        import httpx

        return httpx.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, **kw):
        import httpx

        return httpx.post(self.url + path, timeout=10, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def ready(self) -> dict[str, Any]:
        return self.get("/readyz").json()

    def predict(self, row: dict[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
        r = self.post("/v1/predict", json={"row": row or GOOD_ROW, "key": key or uuid.uuid4().hex})
        assert r.status_code == 200, r.text
        return r.json()



@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """``serve(ws, env, *extra_global_args, serve_args=())``: a `llctl serve` subprocess on a free port, ready
    (/readyz answered 200); every one is terminated when the test ends."""
    import httpx

    started: list[Server] = []

    def start(ws: Path, env: dict[str, str], *extra: str, serve_args: tuple[str, ...] = ()) -> Server:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as f:
            proc = subprocess.Popen([llctl_bin(), *extra, "serve", "--host", HOST, "--port", str(port), *serve_args],
                                    cwd=ws, env=env,
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        srv = Server(proc, f"http://{HOST}:{port}", "", log)
        started.append(srv)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"llctl serve exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"llctl serve not ready within 60 s: {log.read_text()}"
            try:
                if srv.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        srv.replica = srv.get("/healthz").json()["replica"]
        return srv

    yield start
    for srv in started:
        srv.stop()


def _traffic(srv: Server, rows: list[dict[str, Any]], **kw):
    """4 threads cycling over ``rows``, each answer's true label sent as feedback. By default every
    request has a routing key of its own, so canary and stable see the same population of rows:
    with sticky keys (``key="example_id"``) the canary's few distinct rows at 5% can be harder than
    the rest by chance (on this data v1 itself scores 0.75 on them against 0.85 overall), and the
    labelled-accuracy figure would then fail a good canary."""
    from lifelong_cli.serving.loadgen import Traffic

    return Traffic(srv.url, rows, features=FEATURES, label=kw.pop("label", "label"), threads=4, **kw)


def _llctl(ws: Path, env: dict[str, str], *args: str, expect: int | None = 0, timeout: float = 120):
    r = run_bin(list(args), cwd=ws, env=env, timeout=timeout)
    if expect is not None:
        assert r.code == expect, f"llctl {' '.join(args)} exited {r.code}, not {expect}: {r.stdout}{r.stderr}"
    return r


def _audit(ws: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    return sorted(_llctl(ws, env, "audit", "--json", "--limit", "1000").json()["entries"], key=lambda e: e["id"])


def _store(ws: Path, env: dict[str, str], read, *, write: bool = False, model: str | None = None):
    """``read(t, model)`` in one transaction on the workspace's store (``model``: the workspace's)."""
    ctx = AppContext(cwd=ws, env=env, actor="tester")
    try:
        with ctx.store.tx(write=write) as t:
            return read(t, model or ctx.model)
    finally:
        ctx.close()


def _deployment(ws: Path, env: dict[str, str], model: str | None = None) -> dict[str, Any]:
    from lifelong_cli.store import deployment

    return _store(ws, env, deployment.get, model=model)


def _counts(ws: Path, env: dict[str, str], model: str | None = None) -> dict[str, int]:
    from lifelong_cli.store import predictions

    return _store(ws, env, predictions.counts, model=model)


def _artifact_path(ws: Path, env: dict[str, str], version: int, name: str) -> Path:
    return Path(_version(ws, env, version)["artifacts"][name]["uri"])


# -- 1. a good canary ---------------------------------------------------------------------------

def test_good_canary_is_promoted_step_by_step_under_traffic(prepared, ws, env, serve, rows):
    srv = serve(ws, env)
    assert srv.ready()["stable"] == 1

    push = _llctl(ws, env, "push", str(prepared.good), "--json").json()
    assert [(r["replica"], r["ok"]) for r in push["replicas"]] == [(srv.url, True)], push
    start = _llctl(ws, env, "canary", "start", str(prepared.good), "--json").json()
    assert (start["state"], start["version"], start["share"]) == ("running", prepared.good, 0.05)
    assert start["confirm"]["confirmed"] == [srv.replica]

    with _traffic(srv, rows, rate_per_thread=CANARY_RATE) as traffic:
        watch = _llctl(ws, env, *FAST_CANARY, "canary", "watch", "--interval", "1", "--timeout", "90", "--json",
                       expect=None, timeout=150)
    print(watch.stderr)
    tally = traffic.tally
    assert watch.code == 0, watch.stdout + watch.stderr
    doc = watch.json()
    assert (doc["state"], doc["stable"]) == ("promoted", prepared.good)
    assert tally.failed == 0 and set(tally.statuses) == {200}, tally.statuses
    assert tally.feedback_sent > 0
    assert set(tally.versions) == {1, prepared.good}

    entries = [e for e in _audit(ws, env) if e["verb"].startswith("canary") and e["args"].get("version") == prepared.good]
    moves = [e for e in entries if e["outcome"] == "ok"]
    assert [e["verb"] for e in moves] == ["canary start", "canary step", "canary step", "canary step", "canary promote"]
    assert moves[0]["detail"]["share"] == 0.05
    assert [(e["detail"]["from"], e["detail"]["to"]) for e in moves[1:4]] == [(0.05, 0.25), (0.25, 0.5), (0.5, 1.0)]
    assert moves[4]["detail"]["previous_stable"] == 1
    # the looks that held or completed a step changed the row too: each is audited, every generation once
    assert {e["outcome"] for e in entries} <= {"ok", "holding", "complete"}, entries
    generations = [e["detail"]["generation"] for e in entries]
    assert generations == list(range(generations[0], generations[0] + len(generations))), generations
    assert _deployment(ws, env)["generation"] == generations[-1]

    ready = srv.ready()
    assert (ready["stable"], ready["canary"], ready["problem"]) == (prepared.good, None, None)
    answers = [srv.predict(row={f: r[f] for f in FEATURES}, key=r["example_id"]) for r in rows[:200]]
    assert {(a["version"], a["variant"]) for a in answers} == {(prepared.good, "stable")}


# -- 2. bad canaries are aborted automatically --------------------------------------------------

def _mark_pushed(ws: Path, env: dict[str, str], version: int) -> None:
    from lifelong_cli.store import versions

    _store(ws, env, lambda t, m: versions.mark_pushed(t, m, version, now=_version(ws, env, version)["created_at"],
                                                      actor="tester", forced=True), write=True)


# A model trained on flipped labels answers differently (prediction shift, there at once) and
# wrongly (labelled accuracy, once feedback arrives): which of the two fails first depends on how
# fast feedback comes back, so either names the fault; nothing else may.
@pytest.mark.parametrize("kind, figure", [("flipped", ("labelled_accuracy", "prediction_shift")),
                                          ("nan", ("error_rate",)), ("slow", ("p95_latency_ms",))])
def test_bad_canary_is_aborted_automatically_before_passing_25_percent(prepared, ws, env, serve, rows, kind, figure):
    version = getattr(prepared, kind)
    srv = serve(ws, env)
    if kind == "flipped":
        refused = _llctl(ws, env, "push", str(version), expect=5)
        assert "has not passed validation" in refused.stderr
        _llctl(ws, env, "push", str(version), "--force", "--reason", "e2e: flipped labels, on purpose")
    elif kind == "nan":
        refused = _llctl(ws, env, "push", str(version), "--json", expect=3).json()
        assert "non-finite" in refused["error"]["message"], refused
        _mark_pushed(ws, env, version)  # as if it had broken after its push
    else:
        _llctl(ws, env, "push", str(version))
    _llctl(ws, env, "canary", "start", str(version))

    with _traffic(srv, rows, rate_per_thread=CANARY_RATE) as traffic:
        watch = _llctl(ws, env, *FAST_CANARY, "canary", "watch", "--interval", "1", "--timeout", "90", "--json",
                       expect=None, timeout=150)
        returned = time.monotonic() - traffic.t0
        _await_answers(traffic, after=returned + 0.25)
    print(watch.stderr)
    assert watch.code == 3, watch.stdout + watch.stderr
    assert watch.json()["state"] == "aborted"

    entries = [e for e in _audit(ws, env) if e["verb"].startswith("canary") and e["args"].get("version") == version]
    shares = [e["detail"]["share"] for e in entries if e["verb"] == "canary start"] + \
             [e["detail"]["to"] for e in entries if e["verb"] == "canary step" and e["outcome"] == "ok"]
    assert max(shares) <= 0.25, shares
    assert entries[-1]["verb"] == "canary abort" and entries[-1]["args"]["automatic"] is True, entries[-1]
    assert set(figure) & set(entries[-1]["detail"]["failed"]), entries[-1]["detail"]
    assert not any(e["verb"] == "canary promote" for e in entries)

    dep = _deployment(ws, env)
    assert (dep["stable_version"], dep["canary_version"], dep["canary_state"]) == (1, None, "aborted")
    demoted = _version(ws, env, version)["demoted_at"]
    assert demoted is not None, "an automatic abort marks the version as not good"
    # all traffic back on stable: everything answered after watch returned (+ in-flight margin) is v1
    after = [(v, variant, status) for t, v, variant, status in traffic.tally.timeline if t > returned + 0.25]
    assert after and set(after) == {(1, "stable", 200)}, set(after)
    if kind != "nan":
        assert traffic.tally.failed == 0, traffic.tally.statuses
    else:
        assert traffic.tally.statuses[500] > 0


# -- 3. rollback and fallback under load --------------------------------------------------------

def _switch_under_load(ws, env, traffic, *args: str) -> tuple[dict[str, Any], float, float]:
    began = time.monotonic() - traffic.t0
    doc = _llctl(ws, env, *args, "--json").json()
    returned = time.monotonic() - traffic.t0
    _await_answers(traffic, after=returned + 0.25)
    return doc, began, returned


def _await_answers(traffic, *, after: float, n: int = 50, timeout: float = 30.0) -> None:
    """Until ``n`` answers have come back later than ``after`` (seconds since the traffic began)."""
    deadline = time.monotonic() + timeout
    while True:
        with traffic._lock:
            got = sum(1 for t, *_ in traffic.tally.timeline if t > after)
        if got >= n:
            return
        assert time.monotonic() < deadline, f"{got} answers in {timeout} s after t={after:.2f} s, not {n}"
        time.sleep(0.05)


def _answers_between(traffic, start: float, end: float = float("inf")) -> set[tuple[Any, str, int]]:
    with traffic._lock:
        timeline = list(traffic.tally.timeline)
    return {(v, variant, status) for t, v, variant, status in timeline if start < t <= end}


def test_rollback_and_fallback_under_load_fail_no_request(prepared, ws, env, serve, rows):
    srv = serve(ws, env)
    _llctl(ws, env, "push", str(prepared.good))
    _llctl(ws, env, "canary", "start", str(prepared.good))
    _llctl(ws, env, "canary", "promote")
    assert srv.ready()["stable"] == prepared.good

    margin = 0.25  # a request already inside the handler when the table was swapped
    with _traffic(srv, rows, key="example_id", rate_per_thread=100.0) as traffic:
        _await_answers(traffic, after=0.0)
        assert _answers_between(traffic, 0) == {(prepared.good, "stable", 200)}

        doc, began, returned = _switch_under_load(ws, env, traffic, "rollback", "--to", "1", "--reason", "e2e")
        assert doc["target"] == 1 and doc["previous_stable"] == prepared.good
        assert doc["confirm"]["confirmed"] == [srv.replica] and doc["confirm"]["unconfirmed"] == []
        assert doc["confirm"]["seconds"] < 1.0, doc["confirm"]
        assert _answers_between(traffic, returned + margin) == {(1, "stable", 200)}
        assert _answers_between(traffic, began, returned + margin) <= {(1, "stable", 200), (prepared.good, "stable", 200)}

        doc, began, returned = _switch_under_load(ws, env, traffic, "fallback", "on", "--reason", "e2e")
        assert doc["on"] is True and doc["changed"] is True
        assert doc["confirm"]["confirmed"] == [srv.replica] and doc["confirm"]["seconds"] < 1.0, doc["confirm"]
        assert _answers_between(traffic, returned + margin) == {(1, "fallback", 200)}

        doc, began, returned = _switch_under_load(ws, env, traffic, "fallback", "off", "--reason", "e2e")
        assert doc["on"] is False and doc["changed"] is True
        assert doc["confirm"]["confirmed"] == [srv.replica] and doc["confirm"]["seconds"] < 1.0, doc["confirm"]
        assert _answers_between(traffic, returned + margin) == {(1, "stable", 200)}
    tally = traffic.tally
    assert tally.failed == 0 and set(tally.statuses) == {200}, (tally.statuses, tally.errors[:3])
    assert tally.sent > 500, tally.sent


# -- 4. a corrupted artifact --------------------------------------------------------------------

def test_corrupted_artifact_is_refused_and_never_served(prepared, ws, env, serve):
    srv = serve(ws, env)
    v = prepared.good
    onnx_path = _artifact_path(ws, env, v, "onnx")
    assert onnx_path.is_relative_to(ws), onnx_path
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_path.write_bytes(bytes(data))

    val = _llctl(ws, env, "validate", str(v), "--json", expect=3).json()
    assert val["verdict"] == "rejected" and "integrity" in val["failed"], val
    push = _llctl(ws, env, "push", str(v), "--force", "--reason", "e2e", "--json", expect=3).json()
    assert "checksum" in push["error"]["message"], push
    rb = _llctl(ws, env, "rollback", "--to", str(v), "--json", expect=3).json()["error"]
    assert f"v{v} cannot be served" in rb["message"] and "checksum" in rb["message"], rb
    assert rb["hint"] and f"v{v}" not in rb["hint"], rb  # v1 is stable already: the hint names another way out
    _mark_pushed(ws, env, v)  # pushed before its artifact was damaged
    cs = _llctl(ws, env, "canary", "start", str(v), "--json", expect=3).json()["error"]
    assert f"v{v} cannot be served" in cs["message"] and "checksum" in cs["message"], cs
    dep = _deployment(ws, env)
    assert (dep["stable_version"], dep["canary_version"]) == (1, None)

    # a replica told to switch to it (the deployment row names it) keeps serving what it had
    from lifelong_cli.store import deployment

    ctx = AppContext(cwd=ws, env=env, actor="tester")
    try:
        with ctx.store.tx() as t:
            gen = deployment.update_locked(t, ctx.model, actor="tester", now=ctx.now(), stable_version=v)
    finally:
        ctx.close()
    deadline = time.monotonic() + 5
    while (ready := srv.ready())["problem"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready["problem"] and f"cannot load generation {gen}" in ready["problem"], ready
    assert "checksum" in ready["problem"], ready
    assert ready["stable"] == 1 and ready["generation"] < gen
    assert {srv.predict()["version"] for _ in range(20)} == {1}
    from lifelong_cli.store import replicas

    rep = _store(ws, env, lambda t, m: replicas.get(t, m, srv.replica))
    assert (rep["status"], rep["stable_version"]) == ("degraded", 1) and rep["generation"] < gen, rep


# -- 5. bad payloads ----------------------------------------------------------------------------

def _bad_predict_bodies(max_rows: int, max_body: int) -> list[tuple[str, bytes, dict[str, str]]]:
    def body(doc: Any) -> bytes:
        return json.dumps(doc).encode()

    def row(**changes: Any) -> bytes:
        return body({"row": {**GOOD_ROW, **changes}})

    missing = dict(GOOD_ROW)
    del missing["x1"]
    return [
        ("not json", b"this is not json", {}),
        ("truncated json", b'{"row": {"x1": 1', {}),
        ("not utf-8", b'{"row": {"segment": "\xff\xfe"}}', {}),
        ("json array", body([GOOD_ROW]), {}),
        ("json string", body("row"), {}),
        ("json null", b"null", {}),
        ("no row", body({"something": 1}), {}),
        ("row is a list of numbers", body({"rows": [1, 2, 3]}), {}),
        ("rows empty", body({"rows": []}), {}),
        ("row is a string", body({"row": "x1=1"}), {}),
        ("missing feature", body({"row": missing}), {}),
        ("null for a non-nullable feature", row(x2=None), {}),
        ("string for a number", row(x1="1.5"), {}),
        ("bool for a number", row(x1=True), {}),
        ("list for a number", row(x1=[1]), {}),
        ("object for a number", row(x1={"v": 1}), {}),
        ("number for a category", row(segment=1), {}),
        ("unknown category", row(segment="zzz"), {}),
        ("out of range", row(x1=1e6), {}),
        ("below range", row(x2=-5000), {}),
        ("NaN literal", b'{"row": {"x1": NaN, "x2": 1, "x3": null, "segment": "a"}}', {}),
        ("Infinity literal", b'{"row": {"x1": 1, "x2": 1, "x3": Infinity, "segment": "a"}}', {}),
        ("-Infinity literal", b'{"row": {"x1": 1, "x2": 1, "x3": -Infinity, "segment": "a"}}', {}),
        ("overflowing float literal", b'{"row": {"x1": 1, "x2": 1, "x3": 1e999, "segment": "a"}}', {}),
        ("beyond float32 (unbounded feature)", b'{"row": {"x1": 1, "x2": 1, "x3": 1e300, "segment": "a"}}', {}),
        ("huge integer (unbounded feature)", b'{"row": {"x1": 1, "x2": 1, "x3": 1' + b"0" * 400 + b', "segment": "a"}}', {}),
        ("integer of 5000 digits", b'{"row": {"x1": 1, "x2": 1, "x3": ' + b"9" * 5000 + b', "segment": "a"}}', {}),
        ("too many rows", body({"rows": [GOOD_ROW] * (max_rows + 1)}), {}),
        ("body over the limit", body({"row": GOOD_ROW, "pad": "x" * (max_body + 10)}), {}),
        ("empty body", b"", {}),
        ("deeply nested json", b"[" * 200_000 + b"]" * 200_000, {}),
        ("deeply nested row", b'{"row": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}", {}),
        ("huge string", row(segment="s" * (max_body - 200)), {}),
        ("huge string for a number", row(x1="9" * (max_body - 200)), {}),
        ("request id too long", row(), {"x-request-id": "r" * 200}),
    ]


def test_bad_predict_payloads_get_4xx_never_5xx(ws, env, serve):
    import httpx

    srv = serve(ws, env)
    ctx = AppContext(cwd=ws, env=env, actor="tester")
    s = ctx.config.settings.serving
    ctx.close()
    bad: list[str] = []
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for name, payload, headers in _bad_predict_bodies(s.max_batch_rows, s.max_body_bytes):
            r = client.post("/v1/predict", content=payload, headers={"content-type": "application/json", **headers})
            if not 400 <= r.status_code < 500 or "error" not in r.json():
                bad.append(f"{name}: HTTP {r.status_code} {r.text[:160]}")
        # a body over the limit sent without a length (chunked) is cut off too
        r = client.post("/v1/predict", content=iter([b'{"row": "', b"x" * (s.max_body_bytes + 10), b'"}']))
        if r.status_code != 413:
            bad.append(f"chunked body over the limit: HTTP {r.status_code}")
        for name, payload in [("feedback not json", b"{"), ("feedback deeply nested", b"[" * 200_000 + b"]" * 200_000),
                              ("feedback list", b"[]"), ("feedback no request id", b'{"label": "1"}'),
                              ("feedback object label", b'{"request_id": "r", "label": {"a": 1}}'),
                              ("feedback too many labels", json.dumps({"request_id": "r", "labels": ["1"] * (s.max_batch_rows + 1)}).encode())]:
            r = client.post("/v1/feedback", content=payload)
            if not 400 <= r.status_code < 500:
                bad.append(f"{name}: HTTP {r.status_code} {r.text[:160]}")
        assert client.get("/v1/predict").status_code == 405
        assert client.put("/v1/feedback", content=b"{}").status_code == 405
        assert client.get("/no/such/path").status_code == 404
        assert client.post("/admin/load", json={"version": 1}).status_code == 401
        assert client.post("/admin/load", json={"version": 1}, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/admin/state", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
        assert client.get("/admin/state", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        r = client.post("/admin/load", content=b"[" * 100_000, headers={"authorization": f"Bearer {TOKEN}"})
        if not 400 <= r.status_code < 500:
            bad.append(f"admin/load deeply nested: HTTP {r.status_code}")

        # after the corpus: the server is alive and answers a good request
        assert srv.proc.poll() is None
        r = client.post("/v1/predict", json={"row": GOOD_ROW})
        assert r.status_code == 200 and r.json()["version"] == 1, r.text
        r = client.post("/v1/predict", json={"rows": [GOOD_ROW] * s.max_batch_rows})
        assert r.status_code == 200 and len(r.json()["predictions"]) == s.max_batch_rows
    assert not bad, "\n".join(bad)

    # no bad request was logged as a failure of the model
    time.sleep(1.0)
    from lifelong_cli.store import predictions

    failed = _store(ws, env, lambda t, m: predictions.arm_counts(t, m, variant="stable", version=1,
                                                                  since=datetime(2000, 1, 1, tzinfo=UTC)))["errors"]
    assert failed == 0

    # admin endpoints are off on a replica started without the token
    no_token = {k: v for k, v in env.items() if k != "LLCTL_ADMIN_TOKEN"}
    other = serve(ws, no_token)
    assert other.post("/admin/load", json={"version": 1}, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 403
    assert other.get("/admin/state", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 403


# -- 6. metrics, prediction log, bounded memory -------------------------------------------------

def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_and_the_prediction_log(ws, env, serve, rows):
    srv = serve(ws, env)
    with _traffic(srv, rows) as traffic:
        time.sleep(1.5)
    srv.post("/v1/predict", content=b"nope")
    text = srv.get("/metrics").text
    ok = _metric(text, "llctl_requests_total", route="predict", version="1", variant="stable", status="200")
    assert ok == traffic.tally.ok > 0, (ok, traffic.tally.ok)
    assert _metric(text, "llctl_requests_total", route="predict", status="422") == 1
    assert _metric(text, "llctl_requests_total", route="feedback", status="200") == traffic.tally.feedback_sent
    assert _metric(text, "llctl_request_latency_seconds_count", route="predict", version="1") == ok

    from lifelong_cli.store import predictions

    want = {"predictions": traffic.tally.ok, "feedback": traffic.tally.feedback_sent}
    deadline = time.monotonic() + 2.0
    while (got := _counts(ws, env)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == want
    joined = _store(ws, env, lambda t, m: predictions.feedback_with_keys(t, m))
    assert len(joined) == traffic.tally.feedback_sent


def test_prediction_log_memory_is_bounded_while_the_store_is_locked(ws, env, serve, rows):
    srv = serve(ws, env, "--set", "serving.log_queue_rows=100", "--set", "serving.log_flush_ms=50")
    admin = {"authorization": f"Bearer {TOKEN}"}
    before = _counts(ws, env)["predictions"]
    lock = sqlite3.connect(ws / ".llctl" / "state.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the store takes no writes now: the log cannot flush
        with _traffic(srv, rows, label=None) as traffic:
            time.sleep(2.0)
        text = srv.get("/metrics").text
        assert _metric(text, "llctl_prediction_log_queue") <= 100
        assert _metric(text, "llctl_prediction_log_dropped_total") > 0
        assert traffic.tally.failed == 0 and traffic.tally.ok > 300, traffic.tally.statuses
        slowest = max(traffic.tally.latencies_ms)
        assert slowest < 1000, f"a request waited on the store (held for 2 s): {slowest:.0f} ms"
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # once the store takes writes again the rest is written: each answer is in the store or counted dropped
    deadline = time.monotonic() + 10
    while True:
        log = srv.get("/admin/state", headers=admin).json()["log"]
        if log["logged"] + log["dropped"] >= traffic.tally.ok or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert log["logged"] + log["dropped"] == traffic.tally.ok, (log, traffic.tally.ok)
    assert log["dropped"] > 0 and log["logged"] > 0, log
    assert _counts(ws, env)["predictions"] - before == log["logged"]


# -- 7. stop-training freezes the canary --------------------------------------------------------

def test_stop_training_freezes_the_canary_but_abort_still_works(prepared, ws, env, serve):
    srv = serve(ws, env)
    _llctl(ws, env, "push", str(prepared.good))
    _llctl(ws, env, "canary", "start", str(prepared.good))
    _llctl(ws, env, "stop-training", "--reason", "e2e: bad upstream")

    step = _llctl(ws, env, *FAST_CANARY, "canary", "step", "--json", expect=5).json()
    assert step["error"]["type"] == "TrainingHaltedError" and "canary step" in step["error"]["message"], step
    _llctl(ws, env, "canary", "promote", expect=5)
    watch = _llctl(ws, env, *FAST_CANARY, "canary", "watch", "--interval", "0.2", "--timeout", "1", "--json", expect=3)
    assert "frozen" in watch.json()["message"] or "held" in watch.json()["message"], watch.stdout
    dep = _deployment(ws, env)
    assert (dep["canary_version"], dep["canary_share"]) == (prepared.good, 0.05)

    abort = _llctl(ws, env, "canary", "abort", "--reason", "e2e", "--json").json()
    assert (abort["state"], abort["version"], abort["stable"]) == ("aborted", None, 1)
    assert abort["confirm"]["confirmed"] == [srv.replica]
    ready = srv.ready()
    assert (ready["stable"], ready["canary"], ready["canary_share"]) == (1, None, 0.0)


# -- 8. two replicas on one PostgreSQL store ----------------------------------------------------

@pytest.mark.postgres
def test_two_replicas_on_postgres_both_confirm_a_rollback(tmp_path, serve):
    from tests.conftest import PG_URL, _pg_database

    if not PG_URL:
        pytest.skip("LLCTL_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    from lifelong_cli.ops.init import init

    db = _pg_database()
    env = _env(next(db))
    replicas: list[Server] = []
    try:
        ws = tmp_path / "ws"
        ctx = AppContext(cwd=tmp_path, env=env, actor="tester")
        init(ctx, directory=str(ws))
        ctx.close()
        for v in (1, 2):
            _cli(ws, env, "ingest", str(_write_batch(tmp_path / f"b{v}.csv", 2000 * v, day=v, seed=20 + v)))
            _cli(ws, env, "--set", "training.epochs=1", "train")
            _cli(ws, env, "validate", str(v))
        _cli(ws, env, "push", "1")
        _cli(ws, env, "canary", "start", "1")
        env["LLCTL_ADMIN_TOKEN"] = TOKEN
        replicas += [serve(ws, env), serve(ws, env)]
        a, b = replicas
        push = _llctl(ws, env, "push", "2", "--json").json()
        assert sorted(r["replica"] for r in push["replicas"] if r["ok"]) == sorted([a.url, b.url]), push
        _llctl(ws, env, "canary", "start", "2")
        _llctl(ws, env, "canary", "promote")
        assert a.ready()["stable"] == b.ready()["stable"] == 2

        doc = _llctl(ws, env, "rollback", "--to", "1", "--reason", "e2e", "--json").json()
        assert doc["confirm"]["replicas"] == 2 and doc["confirm"]["unconfirmed"] == [], doc["confirm"]
        assert sorted(doc["confirm"]["confirmed"]) == sorted([a.replica, b.replica]), doc["confirm"]
        for srv in (a, b):
            assert srv.ready()["stable"] == 1
            assert srv.predict()["version"] == 1
    finally:
        for srv in replicas:  # they hold connections to the database: stop them before it is dropped
            srv.stop()
        next(db, None)


# -- 9. one process serving two models ----------------------------------------------------------

def test_one_serve_process_serves_two_models_each_following_its_own_deployment(prepared, ws, env, serve):
    """The workspace's model (v1 stable) and a second model of the same store, 'other' (its v1 is the
    first's v1, its v2 the first's v2): one `llctl serve --models` answers both over HTTP, and a
    canary on 'other' moves only 'other'."""
    from lifelong_cli.store import models, predictions, replicas

    main = _store(ws, env, lambda t, m: m)
    _store(ws, env, lambda t, m: models.add(t, name="other", actor="tester", now=datetime.now(UTC),
                                            data_prefix="other"), write=True)
    assert _copy_version(ws, env, 1, note="other v1", model="other", pushed=True) == 1
    assert _copy_version(ws, env, prepared.good, note="other v2", model="other", pushed=True) == 2
    _llctl(ws, env, "--model", "other", "canary", "start", "1")  # first launch of 'other'
    assert _llctl(ws, env, "serve", "--models", "nope", "--port", str(free_port()), expect=6).stderr

    srv = serve(ws, env, serve_args=("--models", f"{main},other"))
    assert srv.get("/healthz").json()["models"] == [main, "other"]
    ready = srv.ready()
    assert {m: (r["ready"], r["stable"]) for m, r in ready["models"].items()} == {main: (True, 1), "other": (True, 1)}

    def predict(model: str) -> dict[str, Any]:
        r = srv.post(f"/v1/models/{model}/predict", json={"row": GOOD_ROW, "key": uuid.uuid4().hex})
        assert r.status_code == 200, r.text
        return r.json()

    first = [predict(m) for m in (main, "other")]
    assert [(a["model"], a["version"]) for a in first] == [(main, 1), ("other", 1)]
    r = srv.post("/v1/predict", json={"row": GOOD_ROW})
    assert r.status_code == 404 and "several models" in r.json()["error"]["message"], r.text
    r = srv.post("/v1/models/nope/predict", json={"row": GOOD_ROW})
    assert r.status_code == 404 and "'nope' is not served here" in r.json()["error"]["message"], r.text

    # a canary of 'other', promoted: the replica confirms each change for 'other'; the first model is untouched
    main_before = _deployment(ws, env)
    start = _llctl(ws, env, "--model", "other", "canary", "start", "2", "--json").json()
    assert (start["model"], start["version"], start["confirm"]["confirmed"]) == ("other", 2, [srv.replica]), start
    promote = _llctl(ws, env, "--model", "other", "canary", "promote", "--reason", "e2e", "--json").json()
    assert (promote["stable"], promote["confirm"]["confirmed"]) == (2, [srv.replica]), promote
    assert promote["message"].startswith("model 'other': v2 promoted")
    assert _deployment(ws, env) == main_before
    assert srv.ready()["models"]["other"]["stable"] == 2 and srv.ready()["models"][main]["stable"] == 1
    sent = {main: [predict(main) for _ in range(7)], "other": [predict("other") for _ in range(5)]}
    assert {a["version"] for a in sent["other"]} == {2} and {a["version"] for a in sent[main]} == {1}
    r = srv.post("/v1/models/other/feedback", json={"request_id": sent["other"][0]["request_id"], "label": "1"})
    assert r.status_code == 200 and r.json()["model"] == "other", r.text

    # each model's prediction log and replica row is its own
    want = {main: {"predictions": 8, "feedback": 0}, "other": {"predictions": 6, "feedback": 1}}
    deadline = time.monotonic() + 5
    while (got := {m: _counts(ws, env, m) for m in want}) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert got == want
    assert [r["variant"] for r in _store(ws, env, lambda t, m: predictions.traffic_between(
        t, m, start=datetime(2000, 1, 1, tzinfo=UTC), end=datetime.now(UTC)), model="other")] == ["stable"] * 6
    rows = {m: _store(ws, env, lambda t, m: replicas.get(t, m, srv.replica), model=m) for m in want}
    assert rows["other"]["generation"] == _deployment(ws, env, "other")["generation"]
    assert rows[main]["generation"] == main_before["generation"]

    # /metrics is labelled by model
    text = srv.get("/metrics").text
    assert _metric(text, "llctl_requests_total", route="predict", model="other", status="200") == 6
    assert _metric(text, "llctl_requests_total", route="predict", model=main, status="200") == 8
    assert _metric(text, "llctl_deployment_generation", model="other") == _deployment(ws, env, "other")["generation"]

    # push asks the replica to load a version of the model it names
    v3 = _copy_version(ws, env, prepared.good, note="other v3", model="other")
    push = _llctl(ws, env, "--model", "other", "push", str(v3), "--json").json()
    assert [(r["replica"], r["ok"]) for r in push["replicas"]] == [(srv.url, True)], push
