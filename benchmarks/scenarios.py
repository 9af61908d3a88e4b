"""Scenarios: many unseen random streams, one fault each, driven through the `llctl` binary with the defaults.

Each stream (one seed) is a fresh workspace (`llctl init` in a temp dir) whose ``llctl.yaml`` declares
only the generated data schema; every other setting is llctl's default, except that canaries are made
small enough to judge in seconds (environment: ``canary.min_requests 30``, ``min_labelled 30``,
``min_step_seconds 1``; ``serving.log_flush_ms 200`` — the settings `llctl demo` uses). Data: scikit-learn
``make_classification`` (4–10 numeric features in random units, 1–2 categorical features binned from
informative columns, 2–6 classes, class_sep 1.2–2.0, 1 % label noise), 1–3 sources, 6–8 batches of
200–600 rows, benign drift (1–2 numeric features' means move by 0.05–0.3 σ per batch, the labelling
moving with them); labels inline (a ``label`` column in the examples) or late (a labels file per source,
one batch later, then a last labels-only cycle). One numeric feature is declared nullable (3 % missing).

Per cycle, as CI and cron would run it (each an ``llctl`` process, ``--json``): ``ingest`` each file
(``--source``; ``--kind labels`` for labels), ``train --if-due``, ``validate``, ``push``, ``canary start``
and ``canary watch`` (a real ``llctl serve`` per stream on loopback from the first stable version on,
simulated users from ``serving.loadgen`` sending the current, clean world's rows and their true labels
as feedback while a canary runs), then ``check``. The first version becomes stable at once.

Faults (a broken upstream, from a random cycle 3..n-2 until detected, then fixed): ``label_flip`` (one
source: 20–50 % of one class's labels become another class), ``label_inversion`` (every label moved to
the next class: for two classes, inverted), ``class_unlabelled`` (one class's labels stop arriving),
``unit_change`` (one source: a numeric feature × or ÷ 10^1..3), ``nan_burst`` (one source: 10–40 % of a
numeric feature missing; the declared-nullable one half of the time), ``stuck_feature`` (one source: a
numeric feature constant), ``swapped_columns`` (one source: two numeric columns exchanged),
``category_remap`` (one source: a categorical feature's values permuted), ``replayed_batch`` (one source:
its rows of two batches back sent again under new keys), ``partial_labels`` (labels for only the first
20–50 % of each source's rows). Faults are injected in the files written for ingest, nowhere else.

Definitions (what the table reports):

* **Detected** (before 100 %): before any version trained on the fault's data became stable (the first
  launch or a canary promoted), llctl did one of: *hold* — ``ingest`` of a faulty file exited 3 with status
  held; *reject* — it rejected the file, or quarantined at least half of its poisoned rows; *validate* —
  ``validate`` rejected a version trained on it; *canary* — the canary of such a version aborted (or was
  still held at the watch timeout); *check* — ``llctl check`` raised a policy violation (exit 3) that was
  not violated before the fault began (it triggers recovery at once, but counts only if the clean
  counterfactual did not raise the same policy by that cycle: benign drift does). A fault detected after a version trained on it was promoted counts
  as detected late (not in the rate). Versions are "trained on it" when trained while faulty rows were
  trainable and not purged, or descended from such a version.
* **Batches to detect**: cycles that delivered faulty files, up to and including the detecting one.
* **False hold**: a clean ingested file (an llctl batch) held or rejected — in control streams (the
  counterfactuals, and ``--controls``) and before the fault in faulty streams. Clean versions rejected
  by validate or aborted by the canary are counted apart (``clean blocks``).
* **Recovery**: on detection, on-call acts as the shipped playbooks say: held faulty batches are rejected
  (``llctl data reject``); if faulty rows were accepted, ``llctl playbook run bad-data`` over the fault's
  event-time window (and its source) when a version trained on them exists, else ``llctl purge-data``;
  training is resumed if the playbook stopped before its resume step; the upstream is fixed. A clean file
  held by mistake is released after review (``llctl data release``). **Recovery Δ** = golden accuracy of
  the final stable version minus that of the clean counterfactual (same seed, no fault, same steps), both
  scored as served (their ONNX artifacts, ``release.gates``) on 1,000 fresh rows of the final world.

Targets (issue 11): ≥ 95 % of faults detected overall and ≥ 80 % of every kind; ≤ 5 % of clean batches
held; recovery within 1 point (|Δ| ≤ 0.01, judged on the median per kind of the detected faults).

Each faulty seed's counterfactual is a clean control stream (30 seeds: 30 controls); ``--controls N``
adds N more clean seeds. Every finished stream is appended to ``WORKDIR/results.jsonl``; ``--table-from``
prints the table from it (a run cut short still reports what it finished). Each stream's record (``--json``)
holds its events, versions, detection, false holds, check alarms and wall seconds per llctl verb.

    .venv/bin/python benchmarks/scenarios.py [--seeds 30] [--controls 0] [--kinds a,b] [--jobs 2] [--quick]
        [--json out.json] [--workdir DIR] [--keep]
    .venv/bin/python benchmarks/scenarios.py --table-from DIR/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

KINDS = ["label_flip", "label_inversion", "class_unlabelled", "unit_change", "nan_burst", "stuck_feature",
         "swapped_columns", "category_remap", "replayed_batch", "partial_labels"]
LABEL_KINDS = {"label_flip", "label_inversion", "class_unlabelled", "partial_labels"}
MISSING_KINDS = {"class_unlabelled", "partial_labels"}  # their poisoned rows are labels that never arrive
T0 = datetime(2026, 5, 1, tzinfo=UTC)
EVAL_ROWS = 1000
TRAFFIC_ROWS = 1000
CANARY_ENV = {"LLCTL_CANARY__MIN_REQUESTS": "30", "LLCTL_CANARY__MIN_LABELLED": "30",
              "LLCTL_CANARY__MIN_STEP_SECONDS": "1", "LLCTL_SERVING__LOG_FLUSH_MS": "200"}
WATCH_TIMEOUT, WATCH_INTERVAL = 90, 0.5
TRAFFIC_THREADS = 2

TARGET_OVERALL, TARGET_PER_KIND, TARGET_FALSE_HOLD, TARGET_RECOVERY = 0.95, 0.80, 0.05, 0.01


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def llctl_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "llctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lifelong_cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# streams


@dataclass
class Spec:
    seed: int
    kind: str | None  # None: a clean stream
    n_num: int
    n_cat: int
    n_classes: int
    n_sources: int
    rows: int
    n_batches: int
    labels_late: bool
    class_sep: float
    drift_feats: list[int]
    drift_rate: float
    nullable: int
    fault_cycle: int
    fault_source: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return self.n_batches + (1 if self.labels_late else 0)

    def describe(self) -> str:
        return (f"{self.n_num}+{self.n_cat} features, {self.n_classes} classes, {self.n_sources} source(s), "
                f"{self.n_batches}x{self.rows} rows, labels {'late' if self.labels_late else 'inline'}, "
                f"drift {self.drift_rate:.2f} sd/batch")


def make_spec(seed: int, kind: str | None, *, quick: bool) -> Spec:
    """The stream's shape depends on the seed only (so a faulty stream and its counterfactual agree)."""
    rng = np.random.default_rng([seed, 11])
    n_num = int(rng.integers(4, 11))
    n_cat = int(rng.integers(1, 3))
    n_classes = int(rng.integers(2, 7))
    n_sources = int(rng.integers(1, 4))
    rows = int(rng.integers(200, 601))
    n_batches = 4 if quick else int(rng.integers(6, 9))
    spec = Spec(seed=seed, kind=kind, n_num=n_num, n_cat=n_cat, n_classes=n_classes, n_sources=n_sources, rows=rows,
                n_batches=n_batches, labels_late=bool(rng.random() < 0.5), class_sep=float(rng.uniform(1.2, 2.0)),
                drift_feats=[int(j) for j in rng.choice(n_num, size=int(rng.integers(1, 3)), replace=False)],
                drift_rate=float(rng.uniform(0.05, 0.3)), nullable=int(rng.integers(n_num)),
                fault_cycle=int(rng.integers(3, max(4, n_batches - 1))), fault_source=int(rng.integers(n_sources)))
    frng = np.random.default_rng([seed, 13])
    c = n_classes
    p: dict[str, Any] = {}
    if kind == "label_flip":
        a = int(frng.integers(c))
        p = {"from": a, "to": int((a + 1 + frng.integers(c - 1)) % c), "share": float(frng.uniform(0.2, 0.5))}
    elif kind == "class_unlabelled":
        p = {"class": int(frng.integers(c))}
    elif kind == "unit_change":
        p = {"feature": int(frng.integers(n_num)), "factor": float(10.0 ** (int(frng.integers(1, 4)) * (1 if frng.random() < 0.5 else -1)))}
    elif kind == "nan_burst":
        p = {"feature": spec.nullable if frng.random() < 0.5 else int(frng.integers(n_num)), "share": float(frng.uniform(0.1, 0.4))}
    elif kind == "stuck_feature":
        p = {"feature": int(frng.integers(n_num))}
    elif kind == "swapped_columns":
        a, b = frng.choice(n_num, size=2, replace=False)
        p = {"features": [int(a), int(b)]}
    elif kind == "category_remap":
        p = {"feature": int(frng.integers(n_cat)), "shift": 1}
    elif kind == "partial_labels":
        p = {"share": float(frng.uniform(0.2, 0.5))}
    spec.params = p
    return spec


class World:
    """The stream's clean data: every batch's rows (features, class, source) and a fresh evaluation set."""

    def __init__(self, spec: Spec) -> None:
        from sklearn.datasets import make_classification

        s = spec
        n_feat = s.n_num + s.n_cat
        n = s.n_batches * s.rows + EVAL_ROWS + TRAFFIC_ROWS
        x, y = make_classification(n_samples=n, n_features=n_feat, n_informative=max(3, round(0.6 * n_feat)),
                                   n_redundant=0, n_classes=s.n_classes, n_clusters_per_class=1, class_sep=s.class_sep,
                                   flip_y=0.01, random_state=s.seed)
        rng = np.random.default_rng([s.seed, 17])
        self.scale = 10.0 ** rng.uniform(-1, 2, s.n_num)
        self.offset = rng.uniform(-5, 5, s.n_num) * self.scale
        self.num = x[:, :s.n_num] * self.scale + self.offset
        self.cat_values: list[list[str]] = []
        cats = []
        for j in range(s.n_cat):
            k = int(rng.integers(3, 6))
            names = [f"{chr(97 + j)}{i}" for i in rng.permutation(k)]
            edges = np.quantile(x[:, s.n_num + j], np.linspace(0, 1, k + 1)[1:-1])
            cats.append(np.array(names, dtype=object)[np.searchsorted(edges, x[:, s.n_num + j])])
            self.cat_values.append(sorted(names))
        self.cat = np.stack(cats, axis=1)
        self.y = y
        self.source = rng.integers(0, s.n_sources, n)
        self.missing = rng.random(n) < 0.03  # the nullable feature's own missing values
        self.spec = s

    def rows_of(self, b: int) -> np.ndarray:
        return np.arange((b - 1) * self.spec.rows, b * self.spec.rows)

    def eval_idx(self) -> np.ndarray:
        base = self.spec.n_batches * self.spec.rows
        return np.arange(base, base + EVAL_ROWS)

    def traffic_idx(self) -> np.ndarray:
        base = self.spec.n_batches * self.spec.rows + EVAL_ROWS
        return np.arange(base, base + TRAFFIC_ROWS)

    def features(self, idx: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Numeric (with the benign drift of batch ``level``) and categorical features of rows ``idx``."""
        num = self.num[idx].copy()
        for j in self.spec.drift_feats:
            num[:, j] += (level - 1) * self.spec.drift_rate * self.scale[j]
        num[self.missing[idx], self.spec.nullable] = np.nan
        return num, self.cat[idx].copy()

    # -- tables -----------------------------------------------------------------------------
    def table(self, keys: list[str], times: list[str], num: np.ndarray, cat: np.ndarray, labels: list[str | None] | None):
        import pyarrow as pa

        cols: dict[str, Any] = {"example_id": pa.array(keys, pa.string()), "event_time": pa.array(times, pa.string())}
        for j in range(self.spec.n_num):
            cols[f"n{j}"] = pa.array(num[:, j], pa.float64(), from_pandas=True)  # NaN -> null: an empty CSV field
        for j in range(self.spec.n_cat):
            cols[f"c{j}"] = pa.array(cat[:, j].tolist(), pa.string())
        if labels is not None:
            cols["label"] = pa.array(labels, pa.string())
        return pa.table(cols)

    def eval_table(self):
        idx = self.eval_idx()
        num, cat = self.features(idx, self.spec.n_batches)
        return self.table([f"e{i}" for i in range(len(idx))], ["2026-01-01T00:00:00Z"] * len(idx), num, cat,
                          [str(int(v)) for v in self.y[idx]])

    def traffic_rows(self, level: int) -> list[dict[str, Any]]:
        idx = self.traffic_idx()
        num, cat = self.features(idx, level)
        out = []
        for n, i in enumerate(idx):
            row: dict[str, Any] = {f"n{j}": (None if np.isnan(num[n, j]) else float(num[n, j])) for j in range(self.spec.n_num)}
            row.update({f"c{j}": str(cat[n, j]) for j in range(self.spec.n_cat)})
            row["example_id"] = f"u{n}"
            row["label"] = str(int(self.y[i]))
            out.append(row)
        return out


@dataclass
class Delivery:
    path: Path
    kind: str  # examples | labels
    source: str
    batch: int  # the data batch (1-based) it belongs to
    faulty: bool
    poisoned: int
    rows: int


def batch_frame(w: World, b: int, s: int, *, fault: bool, new_keys: bool = False) -> dict[str, Any]:
    """Source ``s``'s rows of batch ``b`` as the upstream sends them (``fault``: the broken upstream)."""
    spec = w.spec
    idx = w.rows_of(b)
    idx = idx[w.source[idx] == s]
    keys = [f"s{spec.seed}-b{b}-{i}" for i in idx]
    kind, p = spec.kind if fault else None, spec.params
    poisoned = np.zeros(len(idx), bool)
    if kind == "replayed_batch" and b > 2 and (s == spec.fault_source):
        old = w.rows_of(b - 2)
        old = old[w.source[old] == s]
        keys = [f"s{spec.seed}-b{b}-r{i}" for i in old]  # the old rows under new ids
        idx = old
        poisoned = np.ones(len(idx), bool)
    num, cat = w.features(idx, b if kind != "replayed_batch" or not poisoned.any() else b - 2)
    y = w.y[idx].astype(int).copy()
    base = T0 + timedelta(days=b - 1)
    times = [(base + timedelta(seconds=60 * (i % 1400) + s)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(len(idx))]
    labelled = np.ones(len(idx), bool)
    one = s == spec.fault_source
    frng = np.random.default_rng([spec.seed, b, s, 19])
    if kind == "label_flip" and one:
        poisoned = (y == p["from"]) & (frng.random(len(y)) < p["share"])
        y[poisoned] = p["to"]
    elif kind == "label_inversion":
        poisoned[:] = True
        y = (y + 1) % spec.n_classes
    elif kind == "class_unlabelled":
        poisoned = y == p["class"]
        labelled &= ~poisoned
    elif kind == "partial_labels":
        keep = int(round(p["share"] * len(y)))
        poisoned[keep:] = True
        labelled[keep:] = False
    elif kind == "unit_change" and one:
        num[:, p["feature"]] *= p["factor"]
        poisoned[:] = True
    elif kind == "nan_burst" and one:
        poisoned = frng.random(len(y)) < p["share"]
        num[poisoned, p["feature"]] = np.nan
    elif kind == "stuck_feature" and one and len(y):
        num[:, p["feature"]] = num[0, p["feature"]] if not np.isnan(num[0, p["feature"]]) else 0.0
        poisoned[:] = True
    elif kind == "swapped_columns" and one:
        a, c = p["features"]
        num[:, [a, c]] = num[:, [c, a]]
        poisoned[:] = True
    elif kind == "category_remap" and one:
        j = p["feature"]
        vals = w.cat_values[j]
        m = {v: vals[(k + p["shift"]) % len(vals)] for k, v in enumerate(vals)}
        cat[:, j] = [m[v] for v in cat[:, j]]
        poisoned[:] = True
    return {"keys": keys, "times": times, "num": num, "cat": cat, "y": y, "labelled": labelled, "poisoned": poisoned,
            "label_fault": kind in LABEL_KINDS}


# ---------------------------------------------------------------------------------------------
# one stream through the CLI


class Stream:
    def __init__(self, root: Path, spec: Spec, world: World, *, faulty: bool, name: str) -> None:
        self.spec, self.w, self.faulty, self.name = spec, world, faulty, name
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.ws = self.dir / "ws"
        self.ws.mkdir()
        self.files = self.dir / "files"
        self.files.mkdir()
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
        self.env.update(CANARY_ENV, LLCTL_ACTOR="scenarios", LLCTL_ADMIN_TOKEN=secrets.token_hex(12))
        self.server: subprocess.Popen | None = None
        self.pending_labels: list[tuple[int, int, dict[str, Any], bool]] = []  # late labels: (batch, source, frame, faulty)
        # what happened
        self.events: list[dict[str, Any]] = []
        self.commands = 0
        self.timing: dict[str, tuple[int, float]] = {}  # verb -> (calls, wall seconds)
        self.fixed = False  # the upstream was fixed (after detection)
        self.detected: dict[str, Any] | None = None
        self.faulty_cycles: list[int] = []
        self.fault_batches: set[int] = set()  # data batches with faulty files
        self.faulty_held: list[int] = []  # llctl batch ids
        self.fault_accepted = False  # faulty rows became part of the store (accepted, not held or rejected whole)
        self.fault_trainable = False
        self.examples_fault_waiting: set[int] = set()  # late mode: faulty examples whose labels have not come
        self.contaminated: set[int] = set()
        self.versions: dict[int, dict[str, Any]] = {}
        self.reached_100: list[int] = []  # contaminated versions made stable
        self.clean_files = 0
        self.clean_files_before_fault = 0
        self.false_holds: list[dict[str, Any]] = []
        self.clean_blocks: list[dict[str, Any]] = []
        self.check_violated: set[str] = set()
        self.check_alarms: list[dict[str, Any]] = []
        self.drift_flags = 0
        self.traffic = None

    # -- plumbing -------------------------------------------------------------------------------
    def llctl(self, *args: str, timeout: float = 600) -> tuple[int, Any]:
        self.commands += 1
        t0 = time.monotonic()
        verb = " ".join(a for a in args[:2] if not a.startswith("-") and "/" not in a and not a[:1].isdigit())
        p = subprocess.run([*llctl_cmd(), *args], cwd=self.ws, env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        try:
            doc = json.loads(p.stdout) if p.stdout.strip() else None
        except json.JSONDecodeError:
            doc = None
        n, secs = self.timing.get(verb, (0, 0.0))
        self.timing[verb] = (n + 1, round(secs + time.monotonic() - t0, 2))
        if p.returncode not in (0, 3) or doc is None:
            self.log(f"llctl {' '.join(args)} -> {p.returncode}: {(doc or {}).get('error', {}).get('message') if isinstance(doc, dict) else p.stderr.strip()[-300:]}")
        return p.returncode, doc

    def log(self, msg: str) -> None:
        say(f"  [{self.name}] {msg}")

    def event(self, cycle: int, what: str, **kw: Any) -> None:
        self.events.append({"cycle": cycle, "what": what, **kw})

    def setup(self) -> None:
        s, w = self.spec, self.w
        features: list[dict[str, Any]] = [{"name": f"n{j}", "type": "float", **({"nullable": True} if j == s.nullable else {})}
                                          for j in range(s.n_num)]
        features += [{"name": f"c{j}", "type": "category", "categories": w.cat_values[j]} for j in range(s.n_cat)]
        # only the data schema (and the model's name); every other key keeps llctl's default
        cfg = {"model": {"name": "scen"},
               "data": {"label_categories": [str(c) for c in range(s.n_classes)], "features": features},
               "training": {"fallback_lookup_key": "c0"}}  # the default names `segment`, absent from this schema
        (self.ws / "llctl.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        code, _ = self.llctl("init", ".", "--json")
        if code != 0:
            raise RuntimeError(f"{self.name}: llctl init failed ({code})")
        code, doc = self.llctl("status", "--json")
        if code not in (0, 3):
            raise RuntimeError(f"{self.name}: the workspace does not load: {doc}")

    def start_server(self) -> None:
        import httpx

        log = (self.dir / "serve.log").open("ab")
        self.server = subprocess.Popen([*llctl_cmd(), "serve", "--port", str(self.port)], cwd=self.ws, env=self.env,
                                       stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"{self.name}: llctl serve exited with {self.server.returncode}; see {self.dir / 'serve.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: llctl serve not ready in 60 s")

    def traffic_on(self, cycle: int) -> None:
        from lifelong_cli.serving.loadgen import Traffic

        s = self.spec
        feats = [f"n{j}" for j in range(s.n_num)] + [f"c{j}" for j in range(s.n_cat)]
        self.traffic = Traffic(f"http://127.0.0.1:{self.port}", self.w.traffic_rows(min(cycle, s.n_batches)), features=feats,
                               label="label", key="example_id", threads=TRAFFIC_THREADS, keep_timeline=False).start()

    def traffic_off(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None

    def stop(self) -> None:
        self.traffic_off()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    # -- deliveries -----------------------------------------------------------------------------
    def fault_live(self, cycle: int) -> bool:
        return self.faulty and self.spec.kind is not None and cycle >= self.spec.fault_cycle and not self.fixed

    def deliveries(self, cycle: int) -> list[Delivery]:
        import pyarrow.csv as pcsv

        s, w = self.spec, self.w
        live = self.fault_live(cycle)
        out: list[Delivery] = []
        if s.labels_late:  # the labels of the previous batch, produced now (a broken labeller breaks them now)
            for b, src, fr, _ in self.pending_labels:
                if self.faulty and s.kind in LABEL_KINDS:  # labelled now: by the broken labeller while the fault is live
                    fr = batch_frame(w, b, src, fault=live)
                keep = fr["labelled"]
                keys = [k for k, m in zip(fr["keys"], keep, strict=True) if m]
                if not keys:
                    continue
                tbl = w.table(keys, [t for t, m in zip(fr["times"], keep, strict=True) if m], fr["num"][keep], fr["cat"][keep],
                              [str(int(v)) for v in fr["y"][keep]]).select(["example_id", "event_time", "label"])
                path = self.files / f"labels-b{b}-s{src}-c{cycle}.csv"
                pcsv.write_csv(tbl, path)
                pois = int(fr["poisoned"].sum()) if fr["label_fault"] else 0
                out.append(Delivery(path, "labels", f"src{src}", b, pois > 0, pois, len(keys)))
            self.pending_labels = []
        if cycle <= s.n_batches:
            b = cycle
            for src in range(s.n_sources):
                fr = batch_frame(w, b, src, fault=live)
                if not fr["keys"]:
                    continue
                inline = not s.labels_late
                labels = ([str(int(v)) if m else None for v, m in zip(fr["y"], fr["labelled"], strict=True)] if inline else None)
                tbl = w.table(fr["keys"], fr["times"], fr["num"], fr["cat"], labels)
                path = self.files / f"examples-b{b}-s{src}.csv"
                pcsv.write_csv(tbl, path)
                pois = int(fr["poisoned"].sum()) if (inline or not fr["label_fault"]) else 0
                out.append(Delivery(path, "examples", f"src{src}", b, pois > 0, pois, len(fr["keys"])))
                if s.labels_late:
                    self.pending_labels.append((b, src, fr, live))
        return out

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        self.setup()
        for cycle in range(1, self.spec.cycles + 1):
            self.cycle(cycle)
        self.traffic_off()

    def cycle(self, c: int) -> None:
        files = self.deliveries(c)
        if any(d.faulty for d in files):
            self.faulty_cycles.append(c)
        for d in files:
            self.ingest(c, d)
        if self.detected and self.detected["cycle"] == c and self.detected["how"] in ("hold", "reject"):
            self.recover(c)
        code, tr = self.llctl("train", "--if-due", "--json")
        if code == 0 and tr and tr.get("status") == "trained":
            self.release(c, tr)
        self.check(c)

    def ingest(self, c: int, d: Delivery) -> None:
        args = ["ingest", str(d.path), "--source", d.source, "--json"] + (["--kind", "labels"] if d.kind == "labels" else [])
        code, r = self.llctl(*args)
        r = r or {}
        status = r.get("status", f"exit {code}")
        quar = int(r.get("rows_quarantined") or 0)
        if (r.get("drift") or {}).get("drifted"):
            self.drift_flags += 1
        self.event(c, "ingest", file=d.path.name, batch=r.get("batch"), status=status, exit=code, faulty=d.faulty,
                   poisoned=d.poisoned, quarantined=quar, drift=bool((r.get("drift") or {}).get("drifted")),
                   **({"why": r.get("message")} if status in ("held", "rejected") else {}))
        if d.faulty:
            self.fault_batches.add(d.batch)
            how = None
            if status == "held":
                how = "hold"
                self.faulty_held.append(r["batch"])
            elif status == "rejected" or (self.spec.kind not in MISSING_KINDS and quar >= 0.5 * d.poisoned):
                how = "reject"
            if status == "accepted" and quar < d.poisoned:
                self.fault_accepted = True
                if d.kind == "labels" or not self.spec.labels_late or d.poisoned == 0:
                    self.fault_trainable = True
                else:
                    self.examples_fault_waiting.add(d.batch)
            if how:
                self.detect(c, how, f"{d.kind} batch {r.get('batch')} ({d.path.name}): {status}, {quar} quarantined: "
                                    f"{r.get('message')}")
        else:
            self.clean_files += 1
            if not self.faulty_cycles:
                self.clean_files_before_fault += 1
            if status in ("held", "rejected"):
                self.false_holds.append({"cycle": c, "file": d.path.name, "status": status, "batch": r.get("batch"),
                                         "why": r.get("message")})
                if status == "held":  # on-call reviews it, finds nothing wrong, and releases it
                    self.llctl("data", "release", str(r["batch"]), "--reason", "reviewed: clean", "--json")
            if d.kind == "labels" and d.batch in self.examples_fault_waiting and status == "accepted":
                self.fault_trainable = True

    def detect(self, c: int, how: str, detail: str, policies: list[str] | None = None) -> None:
        if self.detected is not None or not self.faulty:
            return
        before = not self.reached_100
        self.detected = {"cycle": c, "how": how, "detail": detail, "before_100": before,
                         "batches_to_detect": len(self.faulty_cycles), "policies": policies or []}
        self.log(f"fault detected at cycle {c} by {how}{'' if before else ' (late: already at 100%)'}: {detail}")

    def release(self, c: int, tr: dict[str, Any]) -> None:
        v, parent = int(tr["version"]), tr.get("parent")
        bad = self.fault_trainable or (parent in self.contaminated)
        if bad:
            self.contaminated.add(v)
        self.versions[v] = {"cycle": c, "parent": parent, "contaminated": bad}
        code, val = self.llctl("validate", str(v), "--json")
        verdict = (val or {}).get("verdict", f"exit {code}")
        self.versions[v]["verdict"] = verdict
        if verdict != "passed":
            self.event(c, "validate", version=v, verdict=verdict, failed=(val or {}).get("failed"))
            if bad and self.detected is None:
                self.detect(c, "validate", f"v{v} rejected: {', '.join((val or {}).get('failed') or [])}")
                self.recover(c)
            elif not bad:
                self.clean_blocks.append({"cycle": c, "version": v, "by": "validate", "failed": (val or {}).get("failed")})
            return
        code, _ = self.llctl("push", str(v), "--json")
        if code == 0:
            code, st = self.llctl("canary", "start", str(v), "--json")
        if code != 0:  # not a verdict on the version: say so and go on
            self.event(c, "release failed", version=v, exit=code)
            return
        st = st or {}
        if st.get("state") == "promoted" and st.get("stable") == v:  # the first launch
            self.promoted(c, v)
            if self.server is None:
                self.start_server()
            return
        self.traffic_on(c)
        try:
            code, wt = self.llctl("canary", "watch", "--timeout", str(WATCH_TIMEOUT), "--interval", str(WATCH_INTERVAL), "--json")
        finally:
            self.traffic_off()
        wt = wt or {}
        if code == 0:
            self.promoted(c, v)
            return
        _, cs = self.llctl("canary", "status", "--json")
        if (cs or {}).get("state") == "running":
            self.llctl("canary", "abort", "--reason", "scenarios: canary did not pass", "--json")
        self.event(c, "canary", version=v, outcome=wt.get("state") or f"exit {code}", message=wt.get("message"))
        if bad and self.detected is None:
            self.detect(c, "canary", f"v{v} canary {wt.get('state')}: {wt.get('message')}")
            self.recover(c)
        elif not bad:
            self.clean_blocks.append({"cycle": c, "version": v, "by": "canary", "message": wt.get("message")})

    def promoted(self, c: int, v: int) -> None:
        self.event(c, "stable", version=v, contaminated=v in self.contaminated)
        if v in self.contaminated:
            self.reached_100.append(v)

    def check(self, c: int) -> None:
        code, r = self.llctl("check", "--json")
        violated = set((r or {}).get("violated") or [])
        new = violated - self.check_violated
        self.check_violated = violated
        if not new:
            return
        self.check_alarms.append({"cycle": c, "new": sorted(new), "fault_live": bool(self.faulty_cycles) and not self.fixed})
        if self.faulty and self.faulty_cycles and self.detected is None:
            self.detect(c, "check", f"check: {', '.join(sorted(new))} violated", policies=sorted(new))
            self.recover(c)

    # -- recovery -------------------------------------------------------------------------------
    def recover(self, c: int) -> None:
        s = self.spec
        self.fixed = True  # the upstream is told and fixed: later deliveries are clean
        for bid in self.faulty_held:
            self.llctl("data", "reject", str(bid), "--reason", "scenarios: faulty upstream batch", "--json")
        steps: list[str] = [f"rejected held batch(es) {self.faulty_held}"] if self.faulty_held else []
        if self.fault_accepted:
            first, last = min(self.fault_batches), max(self.fault_batches)
            start = (T0 + timedelta(days=first - 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            end = (T0 + timedelta(days=last)).strftime("%Y-%m-%dT%H:%M:%SZ")
            one_source = s.kind not in ("label_inversion", "class_unlabelled", "partial_labels")
            scope = ["--source", f"src{s.fault_source}"] if one_source else []
            if self.contaminated:
                params = ["--param", f"from={start}", "--param", f"to={end}", "--param", "reason=scenarios: faulty upstream",
                          "--param", f"canary_timeout={WATCH_TIMEOUT}", "--param", f"canary_interval={WATCH_INTERVAL}"]
                if one_source:
                    params += ["--param", f"source=src{s.fault_source}"]
                if self.server is not None:
                    self.traffic_on(c)
                try:
                    code, pb = self.llctl("playbook", "run", "bad-data", *params, "--yes", "--json")
                finally:
                    self.traffic_off()
                pb = pb or {}
                steps.append(f"playbook bad-data: {'finished' if pb.get('ok') else 'stopped: ' + str(pb.get('message'))}")
                for st in pb.get("steps") or []:
                    if st.get("name") in ("watch",) and st.get("status") == "ok":
                        ver = (st.get("result") or {}).get("version")
                        if ver is not None:
                            self.promoted(c, int(ver))
                _, status = self.llctl("status", "--json")
                if ((status or {}).get("training") or {}).get("stopped"):
                    self.llctl("resume", "--reason", "scenarios: continue after the bad-data playbook", "--json")
                    steps.append("resumed training")
                _, cs = self.llctl("canary", "status", "--json")
                if (cs or {}).get("state") == "running":
                    self.llctl("canary", "abort", "--reason", "scenarios: playbook canary left running", "--json")
            else:
                self.llctl("purge-data", "--from", start, "--to", end, *scope, "--reason", "scenarios: faulty upstream", "--yes", "--json")
                steps.append("purge-data over the fault window")
            self.fault_trainable = False
            self.examples_fault_waiting.clear()
        self.event(c, "recover", steps=steps)
        self.log("; ".join(steps) or "nothing to undo")

    # -- analysis -------------------------------------------------------------------------------
    def final_accuracy(self) -> tuple[int | None, float | None]:
        from lifelong_cli.context import AppContext
        from lifelong_cli.registry.base import open_registry
        from lifelong_cli.release import gates as g
        from lifelong_cli.store import deployment, versions

        ctx = AppContext(cwd=self.ws, env=self.env, actor="scenarios")
        try:
            with ctx.store.tx(write=False) as t:
                stable = deployment.get(t, ctx.model)["stable_version"]
                row = versions.require(t, ctx.model, stable) if stable else None
            if row is None:
                return None, None
            m = g.load(open_registry(ctx), row, ctx.config.settings)
            tbl = self.w.eval_table()
            return stable, g.metrics(m, g.scores_onnx(m, tbl), tbl, "label")["accuracy"]
        finally:
            ctx.close()

    def summary(self) -> dict[str, Any]:
        stable, acc = self.final_accuracy()
        return {"name": self.name, "seed": self.spec.seed, "kind": self.spec.kind if self.faulty else None,
                "faulty": self.faulty, "spec": self.spec.describe(), "params": self.spec.params,
                "fault_cycle": self.spec.fault_cycle if self.faulty else None, "faulty_cycles": self.faulty_cycles,
                "detected": self.detected, "reached_100": self.reached_100, "contaminated": sorted(self.contaminated),
                "clean_files": self.clean_files, "clean_files_before_fault": self.clean_files_before_fault,
                "false_holds": self.false_holds, "clean_blocks": self.clean_blocks, "check_alarms": self.check_alarms,
                "drift_flags": self.drift_flags, "final_stable": stable, "final_golden": acc, "commands": self.commands,
                "timing": self.timing,
                "versions": self.versions, "events": self.events}


def run_stream(root: Path, spec: Spec, *, faulty: bool) -> dict[str, Any]:
    name = f"{'fault' if faulty else 'clean'}-{spec.seed}" + (f"-{spec.kind}" if faulty else "")
    t0 = time.monotonic()
    world = World(spec)
    st = Stream(root, spec, world, faulty=faulty, name=name)
    say(f"[{name}] start: {spec.describe()}" + (f"; {spec.kind} {spec.params} from cycle {spec.fault_cycle}" if faulty else ""))
    error = None
    try:
        st.run()
    except Exception as exc:  # a stream that breaks is reported as such, and the rest go on
        error = f"{type(exc).__name__}: {exc}"
        st.log(f"ERROR {error}")
    finally:
        st.stop()
    try:
        out = st.summary()
    except Exception as exc:  # the analysis of a broken workspace
        out = {"name": name, "seed": spec.seed, "kind": spec.kind if faulty else None, "faulty": faulty,
               "final_golden": None, "detected": st.detected, "false_holds": st.false_holds,
               "clean_files": st.clean_files, "clean_files_before_fault": st.clean_files_before_fault,
               "reached_100": st.reached_100, "clean_blocks": st.clean_blocks, "check_alarms": st.check_alarms}
        error = error or f"analysis: {type(exc).__name__}: {exc}"
    out["error"] = error
    out["seconds"] = round(time.monotonic() - t0, 1)
    d = out.get("detected")
    say(f"[{name}] done in {out['seconds']:.0f} s: "
        + ("" if not faulty else (f"detected by {d['how']} after {d['batches_to_detect']} batch(es)"
                                 f"{'' if d['before_100'] else ' (late)'}; " if d else "NOT detected; "))
        + f"final golden {out.get('final_golden')}" + (f"; error {error}" if error else ""))
    return out


# ---------------------------------------------------------------------------------------------
# report


def attributed(r: dict[str, Any], cf: dict[str, Any] | None) -> bool:
    """A detection that is the fault's: a check violation the clean counterfactual also raised by
    the same cycle (benign drift, say) does not count."""
    d = r.get("detected")
    if not d:
        return False
    if d["how"] != "check":
        return True
    seen = {p for a in (cf or {}).get("check_alarms", []) if a["cycle"] <= d["cycle"] for p in a["new"]}
    return not set(d.get("policies") or []) <= seen


def figures(results: list[dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
    faulty = [r for r in results if r["faulty"]]
    clean_by_seed = {r["seed"]: r for r in results if not r["faulty"]}
    for r in faulty:
        d = r.get("detected")
        r["counted"] = attributed(r, clean_by_seed.get(r["seed"])) and bool(d and d["before_100"])
    rows = []
    for k in kinds:
        rs = [r for r in faulty if r["kind"] == k]
        det = [r for r in rs if r["counted"]]
        late = [r for r in rs if r.get("detected") and not r["detected"]["before_100"] and attributed(r, clean_by_seed.get(r["seed"]))]
        how: dict[str, int] = {}
        for r in det:
            how[r["detected"]["how"]] = how.get(r["detected"]["how"], 0) + 1
        deltas_det, deltas_all = [], []
        for r in rs:
            cf = clean_by_seed.get(r["seed"])
            if cf and r.get("final_golden") is not None and cf.get("final_golden") is not None:
                dlt = r["final_golden"] - cf["final_golden"]
                deltas_all.append(dlt)
                if r in det:
                    deltas_det.append(dlt)
        rows.append({"kind": k, "streams": len(rs), "detected": len(det), "late": len(late),
                     "rate": len(det) / len(rs) if rs else None,
                     "median_batches": statistics.median([r["detected"]["batches_to_detect"] for r in det]) if det else None,
                     "how": how, "delta_detected": statistics.median(deltas_det) if deltas_det else None,
                     "delta_all": statistics.median(deltas_all) if deltas_all else None,
                     "errors": sum(1 for r in rs if r.get("error"))})
    n_f = len(faulty)
    n_det = sum(1 for r in faulty if r["counted"])
    clean_files = sum(r.get("clean_files", 0) if not r["faulty"] else r.get("clean_files_before_fault", 0) for r in results)
    held = sum(len([h for h in r.get("false_holds", []) if (not r["faulty"]) or _before_fault(r, h)]) for r in results)
    blocks = sum(len(r.get("clean_blocks", [])) for r in results if not r["faulty"])
    alarms = sum(len(r.get("check_alarms", [])) for r in results if not r["faulty"])
    dets = [x["delta_detected"] for x in rows if x["delta_detected"] is not None]
    return {"kinds": rows, "faults": n_f, "detected": n_det, "overall_rate": n_det / n_f if n_f else None,
            "clean_files": clean_files, "false_holds": held, "false_hold_share": held / clean_files if clean_files else None,
            "clean_streams": sum(1 for r in results if not r["faulty"]), "clean_blocks": blocks, "clean_check_alarms": alarms,
            "worst_recovery_delta": min(dets, key=lambda x: -abs(x)) if dets else None,
            "errors": sum(1 for r in results if r.get("error"))}


def _before_fault(r: dict[str, Any], h: dict[str, Any]) -> bool:
    fc = r.get("faulty_cycles") or []
    return not fc or h["cycle"] < fc[0]


def verdicts(f: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    worst_kind = min((x["rate"] for x in f["kinds"] if x["rate"] is not None), default=None)
    rec = f["worst_recovery_delta"]
    return [
        ("faults detected before 100 %", f"{f['detected']} of {f['faults']} ({(f['overall_rate'] or 0):.0%})",
         f"≥ {TARGET_OVERALL:.0%}", (f["overall_rate"] or 0) >= TARGET_OVERALL),
        ("worst kind's detection rate", "n/a" if worst_kind is None else f"{worst_kind:.0%}", f"≥ {TARGET_PER_KIND:.0%} each",
         worst_kind is not None and worst_kind >= TARGET_PER_KIND),
        ("clean batches held or rejected", f"{f['false_holds']} of {f['clean_files']}"
         + ("" if f["false_hold_share"] is None else f" ({f['false_hold_share']:.1%})"), f"≤ {TARGET_FALSE_HOLD:.0%}",
         f["false_hold_share"] is not None and f["false_hold_share"] <= TARGET_FALSE_HOLD),
        ("recovery Δ vs clean (worst kind median)", "n/a" if rec is None else f"{rec:+.3f}", f"|Δ| ≤ {TARGET_RECOVERY}",
         None if rec is None else abs(rec) <= TARGET_RECOVERY),
    ]


def print_table(f: dict[str, Any], results: list[dict[str, Any]], wall: str, jobs: int) -> None:
    print(f"scenarios through the llctl binary with the defaults: {f['faults']} faulty stream(s), {f['clean_streams']} clean "
          f"stream(s) (counterfactuals and controls); {jobs} job(s), {os.cpu_count()} cores, {wall}")
    print()
    print(f"{'kind':<18}{'streams':>8}{'detected<100%':>15}{'rate':>7}{'median batches':>16}  {'how':<28}"
          f"{'late':>5}{'Δ detected':>12}{'Δ all':>9}")
    for x in f["kinds"]:
        how = ", ".join(f"{k} {v}" for k, v in sorted(x["how"].items())) or "-"
        rate = "n/a" if x["rate"] is None else f"{x['rate']:.0%}"
        mb = "-" if x["median_batches"] is None else f"{x['median_batches']:g}"
        dd = "-" if x["delta_detected"] is None else f"{x['delta_detected']:+.3f}"
        da = "-" if x["delta_all"] is None else f"{x['delta_all']:+.3f}"
        print(f"{x['kind']:<18}{x['streams']:>8}{x['detected']:>15}{rate:>7}{mb:>16}  {how[:27]:<28}{x['late']:>5}{dd:>12}{da:>9}")
    print("(detected<100%: before any version trained on the fault was made stable; late: detected only after one was;"
          "\n Δ: median of final golden accuracy minus the clean counterfactual's, over the detected faults / all faults)")
    print()
    print(f"clean versions blocked in clean streams (validate or canary, information): {f['clean_blocks']}; "
          f"new `llctl check` violations in clean streams (information): {f['clean_check_alarms']}; streams with errors: {f['errors']}")
    for r in results:
        if r.get("error"):
            print(f"  {r['name']}: {r['error']}")
    print()
    print(f"{'figure':<42}{'value':>20}   {'target':<14}result")
    for name, value, target, good in verdicts(f):
        print(f"{name:<42}{value:>20}   {target:<14}{'' if good is None else ('met' if good else 'MISSED')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None,
                    help="faulty streams, kinds assigned in turn (default 30; 1 with --quick); each also runs its clean counterfactual")
    ap.add_argument("--controls", type=int, default=0, help="extra clean control streams (seeds 1000+)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated fault kinds (default all: {','.join(KINDS)})")
    ap.add_argument("--jobs", type=int, default=2, help="streams run at once (at most 2 on this machine)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 2 streams (one faulty, its counterfactual) of 4 batches")
    ap.add_argument("--table-from", metavar="RESULTS.jsonl",
                    help="print the table from the streams a run has finished so far (its workdir's results.jsonl)")
    ap.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write every stream's record and the figures here")
    ap.add_argument("--workdir", help="where the workspaces go (default a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces")
    a = ap.parse_args(argv)
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        ap.error(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(KINDS)}")
    if a.table_from:
        results = [json.loads(line) for line in Path(a.table_from).read_text(encoding="utf-8").splitlines() if line.strip()]
        results.sort(key=lambda r: (r["seed"], not r["faulty"]))
        f = figures(results, kinds)
        print_table(f, results, f"{sum(r.get('seconds', 0) for r in results) / 3600:.2f} stream-hours (from {a.table_from})", a.jobs)
        return 0 if all(g is not False for *_, g in verdicts(f)) else 1
    seeds = a.seeds if a.seeds is not None else (1 if a.quick else 30)
    if seeds < 1 or a.controls < 0 or not 1 <= a.jobs <= 4:
        ap.error("--seeds must be ≥ 1, --controls ≥ 0, --jobs 1..4")
    if a.workdir:
        root = Path(a.workdir).expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            ap.error(f"--workdir {root} is not empty: give a new or empty directory")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="llctl-scenarios-"))
    tasks: list[tuple[Spec, bool]] = []
    for i in range(seeds):
        kind = kinds[i % len(kinds)]
        tasks.append((make_spec(i, kind, quick=a.quick), True))
        tasks.append((make_spec(i, kind, quick=a.quick), False))
    tasks += [(make_spec(1000 + i, None, quick=a.quick), False) for i in range(a.controls)]
    t0 = time.monotonic()
    say(f"{len(tasks)} streams in {root}, {a.jobs} at a time")
    lock = threading.Lock()
    results: list[dict[str, Any]] = []

    def one(task: tuple[Spec, bool]) -> None:
        r = run_stream(root, task[0], faulty=task[1])
        with lock:
            results.append(r)
            with (root / "results.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(r, default=str) + "\n")

    try:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(one, tasks))
    finally:
        if a.keep or a.workdir:
            say(f"workspaces kept in {root} (results so far: {root / 'results.jsonl'})")
        else:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.monotonic() - t0
    results.sort(key=lambda r: (r["seed"], not r["faulty"]))
    f = figures(results, kinds)
    print_table(f, results, f"{wall:.0f} s wall", a.jobs)
    ok = all(g is not False for *_, g in verdicts(f))
    if a.json_out:
        doc = {"benchmark": "scenarios", "seeds": seeds, "controls": a.controls, "kinds": kinds, "jobs": a.jobs,
               "quick": a.quick, "cores": os.cpu_count(), "wall_seconds": round(wall, 1), "canary_env": CANARY_ENV,
               "figures": f, "verdicts": [{"figure": n, "value": v, "target": t, "met": g} for n, v, t, g in verdicts(f)],
               "streams": results, "ok": ok}
        Path(a.json_out).write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
        say(f"wrote {a.json_out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
