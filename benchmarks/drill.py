"""Fault drill: does llctl keep bad batches away from full traffic, and recover cleanly?

Data: one scikit-learn ``make_classification`` problem per seed (40,000 rows, 20 features — 8
informative, 4 redundant, 8 noise —, 5 classes, 2 clusters per class, class_sep 1.5, 1% label noise,
``random_state`` = 1000 + seed). It is split once into a golden set (2,000 rows, imported with
``ops.golden.golden_import`` and sliced by class, ``--slice-by cls``), a traffic pool (2,000 rows: the
simulated users' requests, with their true labels as feedback) and the stream: 20 batches × 1,000
rows, each row drawn by picking a class uniformly and then one of that class's two clusters.

The workspace (a fresh one per run, ``llctl.yaml`` written by this script): the 20 features declared
``float``, not nullable, with ranges of the observed min/max over all 40,000 rows widened by 25% of
the span on each side; labels "0".."4"; ``data.holdout_fraction: 0`` (the imported golden set is the
only golden set, so that every stream row is trainable and the golden figures are on one fixed set);
``training.fallback_lookup_key: null`` (no categorical column); ``training.epochs: 20`` (at the default 5,
1,000-row batches leave the first versions near 0.5 golden accuracy, under the 0.6 floor). Every other
setting is llctl's default (ewc+replay, replay buffer 2,000, validation: golden accuracy ≥ 0.6, regression
≤ 0.02, per-slice drop ≤ 10%, p99 ≤ 20 ms; drift: KS/chi-square, Bonferroni, α 0.05, reference =
the newest 10,000 rows; ingest rejects a batch whose bad-row share exceeds 20%), except the canary,
made small enough for a drill: ``canary.min_requests 30``, ``min_labelled 30``, ``min_step_seconds 1``
(steps stay 5/25/50/100%), ``serving.log_flush_ms 200``. ``--set section.key=value`` overrides any
setting in both runs: ``--set canary.min_requests=100 --set canary.min_labelled=50`` (llctl's own
canary defaults) takes ~12 minutes instead of ~8; small canaries make the canary analysis' false
aborts of clean versions more frequent (see the figures' ``canary`` details).

Faults (1-based batch positions), each a corrupted copy of the clean batch that would have come:

* batch 6  — label flip: every row of class 2 is labelled "3" (~200 poisoned rows);
* batch 10 — unit change: feature f0 × 100 (all 1,000 rows poisoned);
* batch 14 — NaN burst: f5 is NaN in 5% of the rows (the 50 NaN rows are the poisoned ones).

Control — benign real drift: from batch 16 on, each class's rows come more and more from one of
its two clusters (share 0.65, 0.8, 0.9, 1.0, 1.0 for batches 16–20; 0.5 otherwise). That is a
covariate shift that keeps every label correct (cluster-conditional distributions and the labelling
are unchanged; class priors stay uniform). At 1,000 rows the KS test sees it from about share 0.9.

The operator policy, per batch, with llctl's own ops in-process (``lifelong_cli.ops``), a real
``llctl serve`` subprocess on loopback and simulated traffic (``serving.loadgen.Traffic``: 2 clients
sending as fast as the server answers, ~150 requests/s on 2 cores, each row's key as the sticky
routing key, every answer followed by the true label as feedback) from the first release on. The
traffic pool is drawn from the undrifted mix, so the drift control shifts training data only:

1. ``ingest`` the batch. Rejected whole (bad-row share > 20%) → blocked at ingest, nothing to train.
   Rows quarantined → the batch counts as blocked at ingest *for those rows* (the NaN fault); the
   accepted rest goes on.
2. ``train`` a candidate and ``validate`` it. (When ingest reports drift this is the drift-surge
   decision point: the candidate decides it. Rolling through = releasing the validated candidate;
   the drift SLO relaxation of the roll-through playbook is not run, as nothing here runs ``check``.)
3. Passed → ``push`` → ``canary start`` → ``canary watch`` (timeout 120 s, interval 0.5 s; a
   canary still held at the timeout is aborted with ``canary abort``). Promoted → released.
4. Rejected at validation, or the canary aborted → the batch is blocked and the ``bad-data``
   playbook runs with ``--param batch=ID`` (stop training, blast radius, roll back to the newest
   version not trained on the batch, purge it, resume, train, validate, push, canary). When the purged
   batch was the only new data, the playbook stops at its train step (nothing new); the next batch's
   release (the same train → validate → push → canary ops) completes the recovery, after which the
   incident is closed.

The same stream with every fault replaced by the clean batch it corrupted (same keys, same rows) goes
through the same policy in a second workspace: the counterfactual.

Figures (targets from the issue):

1. Faults blocked before reaching 100% traffic (target: 3 of 3). A fault is blocked when no version
   that got 100% of traffic — promoted to stable (or made stable by a rollback), or a canary stepped
   to the 100% share — has any of the fault's poisoned rows in its training lineage. The lineage of a
   version is its own rows (``read_rows`` over its ``seq_from..seq_to`` with the purge rules its
   lineage records) and, recursively, its parent's: that covers the weights it started from, the
   replayed rows and the EWC anchor. Where the policy stopped each fault is printed too.
2. Clean batches wrongly blocked (target ≤ 1 in 20): clean batches (the control included) rejected
   at ingest, with rows quarantined, rejected by validation, aborted at the canary, or purged —
   in the drill (17 clean batches) and the counterfactual (20), judged on the pooled rate.
3. Worst golden accuracy served: the minimum golden accuracy, over the drill, of every version that
   was stable at any point (promoted, the first launch, or a rollback target), each version's ONNX
   artifact scored on the golden set with ``release.gates`` (load / scores_onnx / metrics), i.e. as
   served. Canary-only versions are reported alongside (5–50% of requests, or 100% if marked).
4. After recovery: |golden accuracy of the drill's final stable version − the counterfactual's|
   (target ≤ 0.01).
5. Poisoned rows remaining after recovery (target 0 in each):
   * data store: poisoned keys among the rows llctl's reader returns now (``read_rows``, purge rules
     applied, hold-out included) — what any future train, drift reference or golden read can see
     (soft-purged rows still lying in the segments, hidden by their rule, are shown for information);
   * replay buffer: poisoned keys in the final stable version's replay artifact (a Parquet table of
     ``example_id`` and ``_trainable_seq``), and among the rows it replayed while training (its
     parent's buffer, filtered through the store with its recorded purge rules);
   * EWC anchors: the Fisher information is computed from a sample of the parent's data — ``read_rows``
     up to the parent's watermark with the purge rules the version's lineage records (the sample's
     rows themselves are not recorded; the source set is, so a poisoned count of 0 in it bounds the
     sample), and the anchor weights are the parent's (poisoned rows in the parent's lineage). If the
     final version has no parent or did not use EWC, this says so instead of printing 0.

The drill only calls ops, reads the store through ``data.reader`` and scores artifacts through
``release.gates``. One product behaviour is worked around, as an operator would: when ``canary watch``
sees every step pass but its final ``promote`` re-runs the analysis, finds it failing and raises
(leaving the canary running at 100%), the drill aborts the canary with ``canary abort`` and counts
it as an aborted canary (``watch_raised_at_promote`` in --json says how often).

    .venv/bin/python benchmarks/drill.py [--seeds 1] [--json] [--keep] [--set canary.min_requests=100 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import yaml

N_BATCHES = 20
BATCH_ROWS = 1000
GOLDEN_ROWS = 2000
TRAFFIC_ROWS = 2000
POOL_ROWS = 40_000
N_FEATURES = 20
N_CLASSES = 5
CLUSTERS_PER_CLASS = 2
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
CLASSES = [str(c) for c in range(N_CLASSES)]
T0 = datetime(2026, 3, 1, tzinfo=UTC)

FAULTS = {6: "label flip", 10: "f0 x100", 14: "NaN burst"}
FLIP_FROM, FLIP_TO = 2, 3
SCALE_FEATURE, SCALE = "f0", 100.0
NAN_FEATURE, NAN_SHARE = "f5", 0.05
DRIFT_SHARE = {16: 0.65, 17: 0.8, 18: 0.9, 19: 1.0, 20: 1.0}  # share of each class from its first cluster
RANGE_MARGIN = 0.25
CLASS_SEP = 1.5
EPOCHS = 20

SETTINGS = {  # beyond llctl's defaults; see the docstring
    "canary": {"min_requests": 30, "min_labelled": 30, "min_step_seconds": 1},
    "serving": {"log_flush_ms": 200},
}
TRAFFIC_THREADS, TRAFFIC_RATE = 2, None  # as fast as the server answers (~150-190 requests/s here)
WATCH_TIMEOUT, WATCH_INTERVAL = 120.0, 0.5

TARGET_BLOCKED = len(FAULTS)
TARGET_FALSE_BLOCK_RATE = 1 / 20
TARGET_CF_DIFF = 0.01
TARGET_POISON = 0


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# data


def make_problem(seed: int) -> dict[str, Any]:
    """The pool, its cluster ids, the declared ranges, and the golden / traffic / stream index sets."""
    from sklearn.datasets import make_classification

    n_clusters = N_CLASSES * CLUSTERS_PER_CLASS
    x, y = make_classification(n_samples=POOL_ROWS, n_features=N_FEATURES, n_informative=8, n_redundant=4,
                               n_classes=N_CLASSES, n_clusters_per_class=CLUSTERS_PER_CLASS, class_sep=CLASS_SEP,
                               flip_y=0.01, shuffle=False, random_state=1000 + seed)
    # shuffle=False keeps the rows in generation order: cluster k (class k % n_classes) occupies one
    # contiguous block, sized as make_classification sizes them (equal weights).
    sizes = [POOL_ROWS // n_clusters] * n_clusters
    for i in range(POOL_ROWS - sum(sizes)):
        sizes[i % n_clusters] += 1
    cluster = np.repeat(np.arange(n_clusters), sizes)
    agree = float((y == cluster % N_CLASSES).mean())
    if agree < 0.98:  # flip_y relabels ~1% (a fifth of those to the same class): anything lower means the layout changed
        raise SystemExit(f"make_classification's cluster layout is not as expected ({agree:.3f} of labels match)")
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    ranges = [(float(np.floor(a - RANGE_MARGIN * s)), float(np.ceil(b + RANGE_MARGIN * s))) for a, b, s in zip(lo, hi, span, strict=True)]
    rng = np.random.default_rng(2000 + seed)
    order = rng.permutation(POOL_ROWS)
    golden, traffic, rest = order[:GOLDEN_ROWS], order[GOLDEN_ROWS:GOLDEN_ROWS + TRAFFIC_ROWS], order[GOLDEN_ROWS + TRAFFIC_ROWS:]
    free = {k: list(rest[cluster[rest] == k]) for k in range(n_clusters)}  # already in random order
    batches = []
    for b in range(1, N_BATCHES + 1):
        w = DRIFT_SHARE.get(b, 0.5)
        cls = rng.integers(0, N_CLASSES, BATCH_ROWS)
        first = rng.random(BATCH_ROWS) < w
        ks = np.where(first, cls, cls + N_CLASSES)
        batches.append(np.array([free[k].pop() for k in ks]))
    return {"x": x, "y": y, "cluster": cluster, "ranges": ranges, "golden": golden, "traffic": traffic,
            "batches": batches}


def batch_table(p: dict[str, Any], b: int, *, faulty: bool) -> tuple[pa.Table, set[str], str]:
    """Batch b (1-based) as ingested, its poisoned keys, and what it is."""
    idx = p["batches"][b - 1]
    x = p["x"][idx].copy()
    y = p["y"][idx].astype(str).astype(object)
    keys = np.array([f"b{b:02d}-{i:04d}" for i in range(len(idx))], dtype=object)
    poisoned: np.ndarray = np.zeros(len(idx), bool)
    kind = f"drift control (share {DRIFT_SHARE[b]:.2f})" if b in DRIFT_SHARE else "clean"
    if faulty and b in FAULTS:
        kind = FAULTS[b]
        rng = np.random.default_rng(b)
        if b == 6:
            poisoned = p["y"][idx] == FLIP_FROM
            y[poisoned] = str(FLIP_TO)
        elif b == 10:
            x[:, FEATURES.index(SCALE_FEATURE)] *= SCALE
            poisoned[:] = True
        elif b == 14:
            poisoned = rng.random(len(idx)) < NAN_SHARE
            x[poisoned, FEATURES.index(NAN_FEATURE)] = np.nan
    base = T0 + timedelta(days=b - 1)
    cols: dict[str, pa.Array] = {
        "example_id": pa.array(keys.tolist(), pa.string()),
        "event_time": pa.array([(base + timedelta(seconds=30 * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(len(idx))]),
        "label": pa.array(y.tolist(), pa.string()),
    }
    for j, f in enumerate(FEATURES):
        cols[f] = pa.array(x[:, j])
    return pa.table(cols), set(keys[poisoned].tolist()), kind


def golden_table(p: dict[str, Any]) -> pa.Table:
    idx = p["golden"]
    cols: dict[str, pa.Array] = {
        "example_id": pa.array([f"g-{i:04d}" for i in range(len(idx))]),
        "event_time": pa.array([(T0 - timedelta(days=1) + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                                for i in range(len(idx))]),
        "label": pa.array(p["y"][idx].astype(str).tolist()),
        "cls": pa.array(p["y"][idx].astype(str).tolist()),
    }
    for j, f in enumerate(FEATURES):
        cols[f] = pa.array(p["x"][idx, j])
    return pa.table(cols)


def traffic_rows(p: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for n, i in enumerate(p["traffic"]):
        row: dict[str, Any] = {f: float(p["x"][i, j]) for j, f in enumerate(FEATURES)}
        row["example_id"] = f"t-{n:04d}"
        row["label"] = str(int(p["y"][i]))
        out.append(row)
    return out


def config_doc(p: dict[str, Any], port: int, seed: int, sets: list[str]) -> dict[str, Any]:
    doc = {
        "model": {"name": "drill", "architecture": "mlp"},
        "store": {"url": "sqlite:///.llctl/state.db"},
        "data": {
            "key": "example_id", "event_time": "event_time", "label": "label", "label_type": "category",
            "label_categories": CLASSES, "holdout_fraction": 0.0,
            "features": [{"name": f, "type": "float", "nullable": False, "min": lo, "max": hi}
                         for f, (lo, hi) in zip(FEATURES, p["ranges"], strict=True)],
        },
        "registry": {"kind": "local", "root": ".llctl/artifacts"},
        "training": {"epochs": EPOCHS, "fallback_lookup_key": None, "seed": seed},
        "serving": {"port": port, **SETTINGS["serving"]},
        "canary": dict(SETTINGS["canary"]),
    }
    for item in sets:  # --set section.key=value (YAML value), e.g. canary.min_requests=100
        key, _, raw = item.partition("=")
        parts = key.split(".")
        cur = doc
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = yaml.safe_load(raw)
    return doc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# one run of the policy


class Run:
    """One workspace fed the stream (``faulty``: the drill; else the counterfactual)."""

    def __init__(self, root: Path, name: str, p: dict[str, Any], seed: int, faulty: bool, sets: list[str]) -> None:
        from lifelong_cli.context import AppContext
        from lifelong_cli.ops.init import init

        self.name, self.p, self.faulty = name, p, faulty
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
        self.env.update(LLCTL_ADMIN_TOKEN=secrets.token_hex(16), LLCTL_ACTOR="drill")
        (self.dir / "llctl.yaml").write_text(yaml.safe_dump(config_doc(p, self.port, seed, sets), sort_keys=False), encoding="utf-8")
        init(AppContext(cwd=root, env=self.env, actor="drill"), directory=str(self.dir))
        self.ctx = AppContext(cwd=self.dir, env=self.env, actor="drill")
        self.server: subprocess.Popen | None = None
        self.traffic = None
        self.records: list[dict[str, Any]] = []
        self.poisoned: dict[int, set[str]] = {}  # batch position -> poisoned keys
        self.batch_ids: dict[int, int] = {}  # batch position -> llctl batch id
        self.incident: int | None = None
        self.full_share: set[int] = set()  # versions whose canary reached 100% of traffic
        self.canary_served: set[int] = set()  # versions that served any canary share
        self.last_canary: dict[str, Any] | None = None
        self.watch_raised = 0  # times `canary watch` raised at its promote (see _release)

    def log(self, msg: str) -> None:
        say(f"  [{self.name}] {msg}")

    # -- serving -----------------------------------------------------------------------------
    def start_serving(self) -> None:
        import httpx

        from lifelong_cli.serving.loadgen import Traffic

        log = (self.dir / "serve.log").open("ab")
        self.server = subprocess.Popen([sys.executable, "-m", "lifelong_cli", "serve", "--port", str(self.port)],
                                       cwd=self.dir, env=self.env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                raise SystemExit(f"`llctl serve` exited with {self.server.returncode}; see {self.dir / 'serve.log'}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"`llctl serve` not ready after 60 s; see {self.dir / 'serve.log'}")
            time.sleep(0.2)
        self.traffic = Traffic(url, traffic_rows(self.p), features=FEATURES, label="label", key="example_id",
                               threads=TRAFFIC_THREADS, rate_per_thread=TRAFFIC_RATE, keep_timeline=False).start()
        self.log(f"`llctl serve` up at {url}; traffic from {TRAFFIC_THREADS} clients, true labels as feedback")

    def stop(self):
        tally = self.traffic.stop() if self.traffic is not None else None
        self.traffic = None
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.ctx.close()
        return tally

    # -- the policy --------------------------------------------------------------------------
    def golden(self) -> None:
        from lifelong_cli.ops.golden import golden_import

        path = self.dir / "golden.csv"
        pcsv.write_csv(golden_table(self.p), path)
        r = golden_import(self.ctx, path=str(path), slice_by="cls")
        self.log(r.message)

    def feed(self, b: int) -> dict[str, Any]:
        from lifelong_cli.ops.ingest import ingest
        from lifelong_cli.ops.train import train
        from lifelong_cli.ops.validate import validate

        t0 = time.monotonic()
        table, poisoned, kind = batch_table(self.p, b, faulty=self.faulty)
        self.poisoned[b] = poisoned
        path = self.dir / "stream" / f"batch-{b:02d}.csv"
        path.parent.mkdir(exist_ok=True)
        pcsv.write_csv(table, path)
        rec: dict[str, Any] = {"batch": b, "kind": kind, "fault": self.faulty and b in FAULTS, "poisoned": len(poisoned),
                               "blocked_at": None, "outcome": None}
        self.records.append(rec)
        r = ingest(self.ctx, path=str(path), source="upstream")
        self.batch_ids[b] = r.batch
        drifted = bool(r.drift and r.drift.get("drifted"))
        rec.update(batch_id=r.batch, ingest=r.status, rows_accepted=r.rows_accepted, rows_quarantined=r.rows_quarantined,
                   top_reasons=r.top_reasons, drift=drifted, drift_features=(r.drift or {}).get("drifted_features", []))
        if r.status == "rejected":
            rec.update(blocked_at="ingest (batch rejected)", outcome="rejected at ingest")
            self._done(rec, t0, f"batch {b} ({kind}): {r.message}")
            return rec
        if r.rows_quarantined:
            rec["blocked_at"] = f"ingest ({r.rows_quarantined} rows quarantined)"
        t1 = time.monotonic()
        tr = train(self.ctx)
        rec["train_s"] = round(time.monotonic() - t1, 1)
        if tr.status != "trained":
            rec["outcome"] = f"train: {tr.status}"
            self._done(rec, t0, f"batch {b} ({kind}): {tr.message}")
            return rec
        t1 = time.monotonic()
        v = validate(self.ctx, version=tr.version)
        rec["validate_s"] = round(time.monotonic() - t1, 1)
        acc = next((gt["figure"] for gt in v.gates if gt["name"] == "golden accuracy"), None)
        rec.update(version=tr.version, verdict=v.verdict, failed_gates=v.failed, val_golden=acc)
        if v.verdict != "passed":
            rec["blocked_at"] = rec["blocked_at"] or "validation"
            rec["outcome"] = f"v{tr.version} rejected ({', '.join(v.failed)})"
            self._gate_details(rec, v)
            self._bad_data(b, rec)
            self._done(rec, t0, f"batch {b} ({kind}): {rec['outcome']}; {rec.get('playbook', '')}")
            return rec
        t1 = time.monotonic()
        outcome, share = self._release(tr.version)
        rec["release_s"] = round(time.monotonic() - t1, 1)
        rec["canary_max_share"] = share
        if outcome == "promoted":
            rec["outcome"] = f"v{tr.version} promoted"
            self._close_incident(f"recovered: v{tr.version} released after the purge")
        else:
            rec["blocked_at"] = rec["blocked_at"] or f"canary ({outcome} at {share:.0%})"
            rec["outcome"] = f"v{tr.version} canary {outcome} at {share:.0%}"
            a = (self.last_canary or {}).get("analysis") or {}
            rec["canary_failed"] = {f["name"]: {k: f.get(k) for k in ("stable", "canary", "ratio", "distance", "p_value")
                                                if f.get(k) is not None}
                                    for f in a.get("figures", []) if f["name"] in a.get("failed", [])}
            rec["canary_requests"] = a.get("requests")
            if rec["canary_failed"]:
                rec["outcome"] += f" ({', '.join(rec['canary_failed'])})"
            self._bad_data(b, rec)
        self._done(rec, t0, f"batch {b} ({kind}): {'drift; ' if drifted else ''}"
                   f"{r.rows_quarantined} quarantined; {rec['outcome']}" + (f"; {rec['playbook']}" if "playbook" in rec else ""))
        return rec

    def _gate_details(self, rec: dict[str, Any], v) -> None:
        rec["gates"] = {g["name"]: g["figure"] for g in v.gates if g["passed"] is False}

    def _done(self, rec: dict[str, Any], t0: float, msg: str) -> None:
        from lifelong_cli.store import deployment

        with self.ctx.store.tx(write=False) as t:
            dep = deployment.get(t, self.ctx.model)
        rec["stable_after"] = dep["stable_version"]
        rec["seconds"] = round(time.monotonic() - t0, 1)
        phases = ", ".join(f"{k[:-2]} {rec[k]:.1f}" for k in ("train_s", "validate_s", "release_s") if k in rec)
        self.log(f"{msg} [{rec['seconds']:.0f} s{': ' + phases if phases else ''}; stable v{dep['stable_version']}]")

    def _release(self, version: int) -> tuple[str, float]:
        """push → canary start → watch; (promoted | aborted | timed out, the largest share it reached)."""
        from lifelong_cli.errors import CheckFailedError
        from lifelong_cli.ops import canary
        from lifelong_cli.ops.push import push

        push(self.ctx, version=version)
        s = canary.start(self.ctx, version=version)
        if s.state == "promoted" and s.stable == version:  # the first launch: straight to stable
            return "promoted", 1.0
        self.canary_served.add(version)
        try:
            w = canary.watch(self.ctx, timeout=WATCH_TIMEOUT, interval=WATCH_INTERVAL)
        except CheckFailedError as exc:
            # `canary watch` saw every step pass, then `promote` re-ran the analysis, which now failed:
            # watch raises and leaves the canary running at its last share (a product bug, see the report).
            # The operator's move: abort it.
            dep, a = canary.analysis(self.ctx)
            share = float(dep["canary_share"] or 0.0)
            if share >= 1.0:
                self.full_share.add(version)
            canary.abort(self.ctx, reason=f"drill: watch failed at promote: {exc.message}")
            self.last_canary = {"analysis": a, "message": exc.message}
            self.watch_raised += 1
            return "refused at promote, aborted", share
        share = max([s.share, *[e["share"] for e in w.events if e["state"] != "promoted"]])
        if share >= 1.0:
            self.full_share.add(version)
        self.last_canary = {"analysis": w.analysis, "message": w.message}
        if w.exit_code == 0:
            return "promoted", share
        if w.state == "aborted":
            return "aborted", share
        canary.abort(self.ctx, reason="drill: canary held past the watch timeout")
        return "timed out (aborted)", share

    def _bad_data(self, b: int, rec: dict[str, Any]) -> None:
        from lifelong_cli.ops.playbook import run as run_playbook
        from lifelong_cli.ops.resume import resume
        from lifelong_cli.store import control

        params = {"batch": str(self.batch_ids[b]), "reason": f"drill: batch {b} blocked",
                  "canary_interval": str(WATCH_INTERVAL), "canary_timeout": str(WATCH_TIMEOUT)}
        r = run_playbook(self.ctx, name="bad-data", params=params, yes=True, title=f"drill: batch {b} blocked")
        self.incident = r.incident
        steps = {s["name"]: s for s in r.steps}
        purge = steps.get("purge", {}).get("result") or {}
        rb = steps.get("rollback", {})
        rec["purged_rows"] = purge.get("rows_affected")
        rec["rollback"] = (rb.get("result") or {}).get("target") if rb.get("status") == "ok" else rb.get("status")
        rec["blast_radius"] = (steps.get("blast-radius", {}).get("result") or {}).get("blast_radius")
        if r.ok:
            rec["playbook"] = "bad-data playbook finished (recovered version released)"
            watch = (steps.get("watch", {}).get("result") or {})
            if watch.get("version") is not None:
                self.canary_served.add(watch["version"])
            self._close_incident("bad-data playbook finished")
        else:
            rec["playbook"] = f"bad-data playbook stopped at '{next((s['name'] for s in r.steps if s['n'] == r.failed_step), '?')}'"
            train_res = (steps.get("train", {}).get("result") or {})
            if r.failed_step is not None and train_res.get("status") == "nothing-new":
                rec["playbook"] += " (nothing new to train on: the next batch completes the recovery)"
            else:
                rec["playbook"] += f": {r.message}"
        with self.ctx.store.tx(write=False) as t:
            stopped = control.get(t, self.ctx.model).stopped
        if stopped:  # the playbook stopped before its resume step: an operator resumes to keep going
            resume(self.ctx, reason="drill: continue after the bad-data playbook stopped early")
            rec["playbook"] += "; training was still stopped: resumed"

    def _close_incident(self, summary: str) -> None:
        from lifelong_cli.ops import incident as inc

        if self.incident is not None:
            inc.close(self.ctx, incident_id=self.incident, summary=summary)
            self.incident = None

    def run(self) -> None:
        self.golden()
        for b in range(1, N_BATCHES + 1):
            self.feed(b)
            if self.server is None and self._stable() is not None:
                self.start_serving()

    def _stable(self) -> int | None:
        from lifelong_cli.store import deployment

        with self.ctx.store.tx(write=False) as t:
            return deployment.get(t, self.ctx.model)["stable_version"]


# ---------------------------------------------------------------------------------------------
# analysis (read-only: the store through data.reader, artifacts through release.gates)


class Analysis:
    def __init__(self, run: Run) -> None:
        from lifelong_cli.data import reader as rd
        from lifelong_cli.data.schema import DataSchema
        from lifelong_cli.data.segments import DataStore
        from lifelong_cli.registry.base import open_registry
        from lifelong_cli.store import audit, batches, deployment, purge_rules, versions

        self.run, self.ctx = run, run.ctx
        model = self.ctx.model
        self.rd = rd
        self.schema = DataSchema.from_settings(self.ctx.config.settings.data)
        self.data = DataStore(self.ctx.data_root)
        self.registry = open_registry(self.ctx)
        with self.ctx.store.tx(write=False) as t:
            self.versions = {r["id"]: versions.require(t, model, r["id"]) for r in versions.lineage_graph(t, model)}
            entries = [a for a in audit.query(t, model=model) if a["outcome"] != "refused"]
            rule_ids = {i for v in self.versions.values() for i in (v["lineage"] or {}).get("purge_rules", [])}
            self.rules = {i: purge_rules.get(t, model, i)["spec"] for i in rule_ids}
            self.active = purge_rules.active(t, model)
            self.refs = batches.for_reading(t, model)
            self.stable = deployment.get(t, model)["stable_version"]
        self.promoted = {i for i, v in self.versions.items() if v["promoted_at"] is not None}
        self.rollback_targets = {a["detail"].get("target") for a in entries if a["verb"] == "rollback"} - {None}
        self.stepped_full = {a["detail"].get("version") for a in entries
                             if a["verb"] == "canary step" and (a["detail"].get("to") or 0) >= 1.0} - {None}
        self.ever_stable = self.promoted | self.rollback_targets | ({self.stable} if self.stable else set())
        self.full_traffic = self.ever_stable | self.stepped_full | run.full_share
        self._own: dict[int, set[str]] = {}
        self._acc: dict[int, float] = {}
        self.golden = rd.read_golden(self.data, self.schema, self.refs, self.active)

    # -- golden accuracy, as served (ONNX)
    def accuracy(self, v: int) -> float:
        from lifelong_cli.release import gates as g

        if v not in self._acc:
            m = g.load(self.registry, self.versions[v], self.ctx.config.settings)
            self._acc[v] = g.metrics(m, g.scores_onnx(m, self.golden), self.golden, self.schema.label)["accuracy"]
        return self._acc[v]

    # -- lineage
    def rules_of(self, v: int):
        return [self.rd.PurgeRule(i, self.rules[i]) for i in self.versions[v]["lineage"].get("purge_rules", [])]

    def own_keys(self, v: int) -> set[str]:
        """Keys of the rows version v trained on as new data (its sequence range, its purge rules)."""
        if v not in self._own:
            row = self.versions[v]
            t = self.rd.read_rows(self.data, self.schema, self.refs, self.rules_of(v), seq_from=row["seq_from"],
                                  seq_to=row["seq_to"], columns=[self.schema.key])
            self._own[v] = set(t[self.schema.key].to_pylist())
        return self._own[v]

    def lineage_keys(self, v: int | None) -> set[str]:
        out: set[str] = set()
        while v is not None:
            out |= self.own_keys(v)
            v = self.versions[v]["parent_id"]
        return out

    def fault_outcomes(self) -> list[dict[str, Any]]:
        out = []
        for rec in self.run.records:
            if not rec["fault"]:
                continue
            keys = self.run.poisoned[rec["batch"]]
            reached = sorted(v for v in self.full_traffic if keys & self.lineage_keys(v))
            how = {v: ("rollback target" if v in self.rollback_targets and v not in self.promoted else
                       "promoted" if v in self.ever_stable else "canary at 100%") for v in reached}
            trained = sorted(v for v in self.versions if keys & self.own_keys(v))
            out.append({"batch": rec["batch"], "fault": rec["kind"], "poisoned_rows": len(keys),
                        "stopped_at": rec["blocked_at"] or "not stopped", "outcome": rec["outcome"],
                        "versions_trained_on_it": trained, "full_traffic_versions_with_it": reached,
                        "how_they_got_traffic": how,
                        "blocked": not reached})
        return out

    def poison_remaining(self) -> dict[str, Any]:
        from lifelong_cli.ops.train import pq_read
        from lifelong_cli.registry.base import ArtifactRef

        rd, key = self.rd, self.schema.key
        poisoned = set().union(*self.run.poisoned.values())
        visible = rd.read_rows(self.data, self.schema, self.refs, self.active, holdout="include", columns=[key])
        on_disk = rd.read_rows(self.data, self.schema, self.refs, [], holdout="include", trainable_only=False,
                               columns=[key])
        store_n = len(poisoned & set(visible[key].to_pylist()))
        disk_n = len(poisoned & set(on_disk[key].to_pylist()))
        f = self.stable
        row = self.versions[f]
        out: dict[str, Any] = {"final_stable": f, "store": store_n, "store_hidden_on_disk": disk_n, "poisoned_total": len(poisoned)}
        buf_keys = set(pq_read(self.registry.fetch(ArtifactRef.from_dict("replay", row["artifacts"]["replay"])))[key].to_pylist()) \
            if "replay" in row["artifacts"] else None
        out["replay_buffer"] = None if buf_keys is None else len(poisoned & buf_keys)
        parent = row["parent_id"]
        lin = row["lineage"]
        if parent is None:
            out.update(replay_fed=None, ewc=None, ewc_note=f"v{f} has no parent: no replayed rows, no EWC anchor")
            return out
        prow = self.versions[parent]
        past = rd.read_rows(self.data, self.schema, self.refs, self.rules_of(f), seq_to=prow["watermark"], columns=[key])
        past_keys = set(past[key].to_pylist())
        pbuf = set(pq_read(self.registry.fetch(ArtifactRef.from_dict("replay", prow["artifacts"]["replay"])))[key].to_pylist()) \
            if "replay" in prow["artifacts"] else set()
        out["replay_fed"] = len(poisoned & pbuf & past_keys)
        out["replay_rows_used"] = lin.get("replay_rows_used")
        if not lin.get("ewc_from_parent"):
            out.update(ewc=None, ewc_note=f"v{f} was trained without EWC (ewc_from_parent false)")
            return out
        out["ewc_fisher_source"] = len(poisoned & past_keys)
        out["ewc_fisher_source_rows"] = len(past_keys)
        out["ewc_anchor_lineage"] = len(poisoned & self.lineage_keys(parent))
        anc, via = parent, []
        while anc is not None:
            if poisoned & self.own_keys(anc):
                via.append(anc)
            anc = self.versions[anc]["parent_id"]
        out["ewc_anchor_via"] = sorted(via)
        out["ewc"] = out["ewc_fisher_source"] + out["ewc_anchor_lineage"]
        out["ewc_note"] = (f"Fisher source {out['ewc_fisher_source']}: sampled from {len(past_keys)} rows up to v{parent}'s "
                           f"watermark with purge rules {lin.get('purge_rules')}; anchor = v{parent}'s weights, whose "
                           f"lineage holds {out['ewc_anchor_lineage']}"
                           + (f" (trained in by {', '.join('v' + str(x) for x in via)})" if via else ""))
        return out


# ---------------------------------------------------------------------------------------------
# driver


def drill_seed(root: Path, seed: int, sets: list[str]) -> dict[str, Any]:
    p = make_problem(seed)
    res: dict[str, Any] = {"seed": seed}
    for name, faulty in (("drill", True), ("counterfactual", False)):
        say(f"seed {seed}: {name} run")
        run = Run(root, f"{name}-{seed}", p, seed, faulty, sets)
        t0 = time.monotonic()
        try:
            run.run()
            time.sleep(0.5)
        finally:
            tally = run.stop()
        from lifelong_cli.context import AppContext

        run.ctx = AppContext(cwd=run.dir, env=run.env, actor="drill")  # a fresh context for the read-only analysis
        try:
            a = Analysis(run)
            clean = [r for r in run.records if not r["fault"]]
            wrongly = [r for r in clean if r["blocked_at"] or r.get("purged_rows")]
            doc: dict[str, Any] = {
                "seconds": round(time.monotonic() - t0, 1),
                "batches": run.records,
                "clean_batches": len(clean),
                "clean_blocked": [{"batch": r["batch"], "kind": r["kind"], "why": r["blocked_at"] or "purged",
                                   "outcome": r["outcome"], "gates": r.get("gates"), "canary": r.get("canary_failed")}
                                  for r in wrongly],
                "watch_raised_at_promote": run.watch_raised,
                "final_stable": a.stable,
                "final_golden": a.accuracy(a.stable),
                "ever_stable": {v: a.accuracy(v) for v in sorted(a.ever_stable)},
                "canary_only": {v: a.accuracy(v) for v in sorted((run.canary_served | a.stepped_full) - a.ever_stable)},
                "canary_only_at_100": sorted((a.stepped_full | run.full_share) - a.ever_stable),
                "all_versions": {v: a.accuracy(v) for v in sorted(a.versions)},
                "traffic": None if tally is None else {"sent": tally.sent, "ok": tally.ok, "failed": tally.failed,
                                                       "accuracy": tally.correct / tally.labelled if tally.labelled else None},
            }
            if faulty:
                doc["faults"] = a.fault_outcomes()
                doc["poison"] = a.poison_remaining()
        finally:
            run.ctx.close()
        res[name] = doc
    return res


def _reach(f: dict[str, Any]) -> str:
    vs = f["full_traffic_versions_with_it"]
    if not vs:
        return "none"
    how = f["how_they_got_traffic"]
    first = [v for v in vs if how[v] != "promoted" or v in f["versions_trained_on_it"]][:3]
    rest = len(vs) - len(first)
    return ", ".join(f"v{v} ({how[v]})" for v in first) + (f" and {rest} more promoted descendant(s)" if rest else "")


def fmt_v(d: dict[int, float]) -> str:
    return ", ".join(f"v{v} {acc:.3f}" for v, acc in d.items()) or "none"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1, help="repetitions with different data (about 8 min each)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces (their path is printed)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a workspace setting in both runs, e.g. canary.min_requests=100")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")

    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="llctl-drill-"))
    results = []
    try:
        for seed in range(args.seeds):
            results.append(drill_seed(tmp, seed, args.set))
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t_all

    # the figures, over seeds (worst case per seed)
    blocked = [sum(f["blocked"] for f in r["drill"]["faults"]) for r in results]
    n_clean = sum(r[k]["clean_batches"] for r in results for k in ("drill", "counterfactual"))
    n_wrong = sum(len(r[k]["clean_blocked"]) for r in results for k in ("drill", "counterfactual"))
    worst = [min(r["drill"]["ever_stable"].values()) for r in results]
    cf_diff = [r["drill"]["final_golden"] - r["counterfactual"]["final_golden"] for r in results]
    poison = [r["drill"]["poison"] for r in results]
    store_left = max(x["store"] for x in poison)
    replay_left = max(max(x["replay_buffer"] or 0, x.get("replay_fed") or 0) for x in poison)
    ewc_known = all(x["ewc"] is not None for x in poison)
    ewc_left = max(x["ewc"] for x in poison) if ewc_known else None

    rows = [
        ("faults blocked before 100% traffic", f"{min(blocked)} of {len(FAULTS)}", f"{TARGET_BLOCKED} of {len(FAULTS)}",
         min(blocked) >= TARGET_BLOCKED),
        ("clean batches wrongly blocked", f"{n_wrong} of {n_clean}", "≤ 1 in 20", n_wrong / n_clean <= TARGET_FALSE_BLOCK_RATE),
        ("worst golden accuracy served", f"{min(worst):.3f}", "(info)", None),
        ("final golden − counterfactual", f"{max(cf_diff, key=abs):+.3f}", f"|·| ≤ {TARGET_CF_DIFF}",
         max(abs(d) for d in cf_diff) <= TARGET_CF_DIFF),
        ("poisoned rows in the data store", f"{store_left}", "0", store_left == TARGET_POISON),
        ("poisoned rows in replay buffers", f"{replay_left}", "0", replay_left == TARGET_POISON),
        ("poisoned rows in EWC anchors", f"{ewc_left}" if ewc_known else "undetermined", "0",
         (ewc_left == TARGET_POISON) if ewc_known else False),
    ]
    ok = all(g is not False for *_, g in rows)

    if args.json:
        doc = {"benchmark": "drill", "seeds": args.seeds, "cores": os.cpu_count(), "wall_seconds": round(wall, 1),
               "settings": SETTINGS, "overrides": args.set, "faults": {str(k): v for k, v in FAULTS.items()},
               "drift_control": {str(k): v for k, v in DRIFT_SHARE.items()},
               "figures": [{"figure": n, "value": v, "target": t, "met": g} for n, v, t, g in rows],
               "runs": results, "ok": ok}
        print(json.dumps(doc, indent=1, default=str))
        return 0 if ok else 1

    print(f"fault drill through llctl's ops, `llctl serve` and simulated traffic: {N_BATCHES} batches x {BATCH_ROWS} rows "
          f"(make_classification, {N_FEATURES} features, {N_CLASSES} classes), golden set {GOLDEN_ROWS} rows; "
          f"{args.seeds} seed(s), {os.cpu_count()} cores, {wall:.0f} s wall")
    if args.set:
        print(f"settings overridden with --set: {', '.join(args.set)}")
    for r in results:
        d, c = r["drill"], r["counterfactual"]
        print()
        print(f"seed {r['seed']}: drill run {d['seconds']:.0f} s, counterfactual run {c['seconds']:.0f} s")
        print(f"  {'batch':<6}{'what':<28}{'ingest':<22}{'drift':<7}{'outcome':<50}{'purged':<8}{'stable':<7}golden")
        for rec in d["batches"]:
            ing = rec["ingest"] + (f", {rec['rows_quarantined']} quar." if rec.get("rows_quarantined") else "")
            out = rec["outcome"] or ""
            purged = "" if rec.get("purged_rows") is None else str(rec["purged_rows"])
            acc = d["all_versions"].get(rec["stable_after"])
            print(f"  {rec['batch']:<6}{rec['kind'][:27]:<28}{ing:<22}{'yes' if rec.get('drift') else '':<7}{out[:49]:<50}"
                  f"{purged:<8}{'v' + str(rec['stable_after']):<7}{'' if acc is None else f'{acc:.3f}'}")
        print("  faults:")
        for f in d["faults"]:
            where = f["stopped_at"]
            print(f"    batch {f['batch']} {f['fault']:<11} {f['poisoned_rows']:>4} poisoned rows; stopped at {where}; "
                  f"versions trained on them: {', '.join('v' + str(v) for v in f['versions_trained_on_it']) or 'none'}; "
                  f"reached 100% traffic in: {_reach(f)}")
        for name, run in (("drill", d), ("counterfactual", c)):
            cb = run["clean_blocked"]
            print(f"  {name}: clean batches blocked {len(cb)} of {run['clean_batches']}"
                  + "".join(f"\n    batch {x['batch']} ({x['kind']}): {x['outcome']}"
                            + (f" {x['gates']}" if x.get("gates") else "")
                            + (f" {json.dumps(x['canary'])}" if x.get("canary") else "") for x in cb))
        print(f"  golden accuracy of every version that was stable (drill): {fmt_v(d['ever_stable'])}")
        full = set(d["canary_only_at_100"])
        print("  canary-only versions: " + (", ".join(f"v{v} {acc:.3f}" + (" (reached 100%)" if v in full else "")
                                                   for v, acc in d["canary_only"].items()) or "none"))
        print(f"  final stable: drill v{d['final_stable']} {d['final_golden']:.3f}; counterfactual v{c['final_stable']} "
              f"{c['final_golden']:.3f}")
        pz = d["poison"]
        print(f"  poisoned rows after recovery ({pz['poisoned_total']} poisoned in all): store {pz['store']} visible "
              f"({pz['store_hidden_on_disk']} still in the segments, hidden by soft purge rules or never trainable); "
              f"replay buffer of v{pz['final_stable']} {pz['replay_buffer']}, replayed in its training {pz.get('replay_fed')}; "
              f"EWC {pz['ewc'] if pz['ewc'] is not None else 'undetermined'} ({pz['ewc_note']})")
        for name, run in (("drill", d), ("counterfactual", c)):
            tr = run["traffic"]
            if tr:
                print(f"  traffic ({name}): {tr['sent']} requests, {tr['failed']} failed, served accuracy "
                      f"{tr['accuracy']:.3f}" if tr["accuracy"] is not None else "")
    print()
    print(f"{'figure':<38}{'value':>14}   {'target':<12}result")
    for name, value, target, good in rows:
        print(f"{name:<38}{value:>14}   {target:<12}{'' if good is None else ('met' if good else 'MISSED')}")
    if args.seeds > 1:
        print(f"(over {args.seeds} seeds: the worst seed's figure; golden diffs {', '.join(f'{x:+.3f}' for x in cf_diff)})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
